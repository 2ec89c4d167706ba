"""People's roles and the scopes each may be granted (DESIGN.md section 1)."""

from __future__ import annotations

from collections.abc import Iterable

API_SCOPES = ("share:read", "catalog:write", "grants:approve", "audit:read", "enterprise", "admin")
OIDC_SCOPES = ("openid", "profile")

ROLES: dict[str, tuple[str, frozenset[str]]] = {
    "developer": ("department developer 部门开发者", frozenset({"share:read"})),
    "steward": ("data steward 数据管理员", frozenset({"share:read", "catalog:write", "grants:approve"})),
    "security_officer": ("security officer 安全管理员", frozenset({"audit:read"})),
    # an enterprise's own keys, grants, usage and open-tier applications (gateway/enterprise)
    "enterprise_user": ("enterprise user 企业用户", frozenset({"enterprise"})),
    "admin": ("administrator 系统管理员", frozenset(API_SCOPES)),
}


class UnknownRole(ValueError):
    pass


def check_roles(roles: list[str]) -> list[str]:
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise UnknownRole(f"unknown roles: {', '.join(unknown)} (known: {', '.join(ROLES)})")
    return sorted(set(roles))


def scopes_for_roles(roles: Iterable[str]) -> frozenset[str]:
    out: set[str] = set(OIDC_SCOPES)
    for r in roles:
        out |= ROLES.get(r, ("", frozenset()))[1]
    return frozenset(out)


class InvalidScope(ValueError):
    """Nothing that was asked for may be granted (RFC 6749 `invalid_scope`)."""


def _split(scopes: str | Iterable[str] | None) -> set[str]:
    if scopes is None:
        return set()
    return set(scopes.split()) if isinstance(scopes, str) else set(scopes)


def token_scopes(
    asked: str | Iterable[str] | None,
    *,
    registered: str | Iterable[str],
    oidc: bool = False,
    roles: Iterable[str] | None = None,
    ceiling: str | Iterable[str] | None = None,
) -> frozenset[str]:
    """The scope a token may carry — the one rule for every grant and every external issuer.

    It is the intersection of
      - what was asked (nothing asked: everything the caller may have, less openid/profile,
        which OpenID Connect requires to be asked for),
      - what the client is registered for (`registered`, known API scopes only), plus
        openid/profile when `oidc` (a person signing in through an authorization-code client),
      - for a person, what their roles allow (`roles`; None: no person, e.g. client credentials),
      - `ceiling`, when there is one: the original grant on refresh, never wider.
    Raises InvalidScope when that leaves nothing."""
    may = _split(registered) & set(API_SCOPES)
    if oidc:
        may |= set(OIDC_SCOPES)
    if roles is not None:
        may &= scopes_for_roles(list(roles))
    if ceiling is not None:
        may &= _split(ceiling)
    wanted = _split(asked)
    granted = may & wanted if wanted else may - set(OIDC_SCOPES)
    if not granted:
        raise InvalidScope("none of the scopes asked for may be granted")
    return frozenset(granted)
