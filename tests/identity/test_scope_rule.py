"""The one scope rule (gateway.identity.roles.token_scopes), checked over every combination of
registered scopes, asked scopes and roles, and for the external-issuer mapping that uses it."""

from __future__ import annotations

from itertools import chain, combinations
from typing import Any

import pytest

from gateway.identity.external import ExternalIssuers
from gateway.identity.models import TrustedIssuer
from gateway.identity.roles import (
    API_SCOPES,
    OIDC_SCOPES,
    ROLES,
    InvalidScope,
    scopes_for_roles,
    token_scopes,
)
from gateway.identity.tokens import InvalidToken

ALL = (*API_SCOPES, *OIDC_SCOPES)
PRIVILEGED = ("admin", "audit:read", "catalog:write", "grants:approve")


def subsets(items: tuple[str, ...]) -> list[frozenset[str]]:
    return [frozenset(c) for c in chain.from_iterable(combinations(items, n) for n in range(len(items) + 1))]


def _rule(asked: frozenset[str], registered: frozenset[str], oidc: bool, roles: frozenset[str] | None) -> Any:
    try:
        return token_scopes(" ".join(sorted(asked)), registered=registered, oidc=oidc, roles=roles)
    except InvalidScope:
        return None


@pytest.mark.parametrize("oidc", [False, True])
@pytest.mark.parametrize("person", [False, True])
def test_every_combination(oidc: bool, person: bool) -> None:
    """Never more than asked, registered (plus OIDC for an authorization-code client) and, for a
    person, their roles allow; exactly that intersection; refused exactly when it is empty."""
    role_sets: list[frozenset[str] | None] = subsets(tuple(ROLES)) if person else [None]
    for registered in subsets(API_SCOPES):
        for roles in role_sets:
            may = set(registered) | (set(OIDC_SCOPES) if oidc else set())
            if roles is not None:
                may &= scopes_for_roles(roles)
            for asked in subsets(ALL):
                want = (may & asked) if asked else (may - set(OIDC_SCOPES))
                got = _rule(asked, registered, oidc, roles)
                assert got == (frozenset(want) if want else None), (asked, registered, oidc, roles)
                if got:
                    assert got <= registered | (set(OIDC_SCOPES) if oidc else set())
                    assert not asked or got <= asked
                    assert roles is None or got <= scopes_for_roles(roles)


def test_ceiling_never_widens() -> None:
    for ceiling in subsets(API_SCOPES):
        for asked in subsets(API_SCOPES):
            try:
                got = token_scopes(asked, registered=API_SCOPES, roles=["admin"], ceiling=ceiling)
            except InvalidScope:
                assert not (ceiling & asked if asked else ceiling)
                continue
            assert got <= ceiling


@pytest.mark.parametrize("scope", PRIVILEGED)
def test_the_reproducer(scope: str) -> None:
    """demo-hrss is registered for share:read: asking a privileged scope gets nothing, not it."""
    with pytest.raises(InvalidScope):
        token_scopes(scope, registered=["share:read"])
    assert token_scopes(f"share:read {scope}", registered=["share:read"]) == {"share:read"}
    assert token_scopes(None, registered=["share:read"]) == {"share:read"}
    # a developer through a client registered for everything gets no more than a developer may
    with pytest.raises(InvalidScope):
        token_scopes(scope, registered=API_SCOPES, oidc=True, roles=["developer"])
    # an administrator through a client registered for share:read only gets no more than the client
    with pytest.raises(InvalidScope):
        token_scopes(scope, registered=["share:read"], oidc=True, roles=["admin"])


def test_openid_only_for_people_and_only_when_asked() -> None:
    assert token_scopes(None, registered=["share:read"], oidc=True, roles=["developer"]) == {"share:read"}
    assert token_scopes("openid profile", registered=["share:read"], oidc=True, roles=["developer"]) == {
        "openid",
        "profile",
    }
    with pytest.raises(InvalidScope):
        token_scopes("openid", registered=["share:read"])  # client credentials: no person
    assert token_scopes("share:read", registered=["share:read", "not-a-scope"]) == {"share:read"}


def _issuer(scopes: str = "share:read") -> TrustedIssuer:
    return TrustedIssuer(
        issuer="https://op.test",
        discovery_url="https://op.test/.well-known/openid-configuration",
        audience="aud",
        department_claim="org",
        department_map='{"hrss-org": "hrss"}',
        roles_claim="roles",
        scopes=scopes,
    )


def _claims(**over: Any) -> dict[str, Any]:
    return {"iss": "https://op.test", "sub": "s-1", "exp": 2_000_000_000, "org": "hrss-org", **over}


@pytest.mark.parametrize("scope", PRIVILEGED)
def test_external_map_intersects_issuer_and_roles(scope: str) -> None:
    everything = " ".join(API_SCOPES)
    # the issuer is configured for share:read: a token claiming more gets share:read at most
    c = ExternalIssuers._map(_issuer(), _claims(scope=f"share:read {scope}", roles=["admin"]))
    assert c.scopes == {"share:read"}
    assert ExternalIssuers._map(_issuer(), _claims(scope=scope)).scopes == frozenset()
    # the issuer is configured for everything, but the token's roles allow only what they allow
    dev = ExternalIssuers._map(_issuer(everything), _claims(scope=f"share:read {scope}", roles=["developer"]))
    assert dev.scopes == {"share:read"}
    unknown = ExternalIssuers._map(_issuer(everything), _claims(scope=scope, roles=["root"]))
    assert unknown.scopes == frozenset()
    # no roles claim: the issuer's configuration alone
    assert ExternalIssuers._map(_issuer(everything), _claims(scope=scope)).scopes == {scope}
    # roles that do allow it
    officer = ExternalIssuers._map(_issuer(everything), _claims(roles=["security_officer", "steward"]))
    assert officer.scopes == {"audit:read", "share:read", "catalog:write", "grants:approve"}


def test_external_map_refuses_unmapped_department() -> None:
    with pytest.raises(InvalidToken):
        ExternalIssuers._map(_issuer(), _claims(org="elsewhere"))
