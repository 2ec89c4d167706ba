"""Issue 13 item 4: one bearer check (gateway.identity.bearer) serves every endpoint that takes
an access token, and a token that is revoked, or whose client or person is disabled, is refused
on every one of them — on every process serving the same database, within a second.

Two gateways are served on one database (two processes, as two uvicorn workers would be); a
change made through one is observed on the other with a bounded poll, never a fixed sleep."""

from __future__ import annotations

import ast
import math
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client

from gateway.identity.bearer import BearerProtector, BearerRefused
from gateway.identity.clients import create_client
from tests.identity.conftest import ROOT, free_port, hasher, on_db, serve
from tests.identity.test_scope_escalation import _code_flow, _person

Q = {"query": "{ enterpriseRegistration(first: 1) { totalCount } }"}


# ------------------------------------------------------------------ RFC 6750 parsing


def _parse(header: str | None) -> str | BearerRefused:
    protector = BearerProtector(None, realm="r")  # type: ignore[arg-type]  # parsing needs no identity
    try:
        return protector.parse(header)
    except BearerRefused as refused:
        return refused


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc.DEF-_~+/x==", "abc.DEF-_~+/x=="), ("bearer t", "t"), ("BEARER   t", "t")],
)
def test_parse_accepts_one_bearer_b64token(header: str, token: str) -> None:
    assert _parse(header) == token


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer ",
        "Basic Zm9vOmJhcg==",
        "Bearer a b",
        "Bearer a, Basic b",
        "Bearer =a",
        "Bearer a\u00e9",
    ],
)
def test_parse_refuses_malformed(header: str) -> None:
    refused = _parse(header)
    assert isinstance(refused, BearerRefused) and refused.status == 401
    assert refused.headers["WWW-Authenticate"] == 'Bearer realm="r", error="invalid_request"'


def test_parse_missing_has_no_error_code() -> None:
    refused = _parse(None)
    assert isinstance(refused, BearerRefused) and refused.headers["WWW-Authenticate"] == 'Bearer realm="r"'


# ------------------------------------------------------------------ structure


def test_no_endpoint_checks_a_token_its_own_way() -> None:
    """Only gateway/identity/bearer.py verifies access tokens: nothing else calls TokenService.verify
    (`….tokens.verify`), the external issuers' verify, or an `authenticate_bearer`."""
    offenders = []
    for package in ("gateway", "catalogue", "schema", "resolvers", "policies", "keys"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "gateway" / "identity" / "bearer.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Attribute):
                    continue
                owner = node.value
                owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
                if node.attr == "authenticate_bearer" or (
                    node.attr == "verify" and owner_name in ("tokens", "external", "TokenService")
                ):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


# ------------------------------------------------------------------ served, two processes


@pytest.fixture(scope="module")
def pair(demo_env: Any) -> Iterator[tuple[str, str]]:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"  # one issuer, as behind one address
    # The tests here poll refused tokens on purpose; the per-address failure limit (tested in
    # tests/identity/test_auth_failures.py) is raised so those polls do not turn into 429s.
    loose = {"SHUQIAO_AUTH_FAILURE_RATE": "10000/minute"}
    with serve(demo_env, port=port, **loose) as a, serve(demo_env, issuer=issuer, **loose) as b:
        yield a, b


def _client(demo_env: Any, department: str, scopes: list[str]) -> tuple[str, str]:
    cid = f"{department}-b-{secrets.token_hex(3)}"
    _, secret = on_db(
        demo_env, lambda e: create_client(e, hasher(demo_env), department, client_id=cid, scopes=scopes)
    )
    return cid, secret or ""


def _token(base: str, cid: str, secret: str) -> str:
    r = httpx.post(f"{base}/oauth/token", data={"grant_type": "client_credentials"}, auth=(cid, secret))
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# each endpoint that takes a bearer, and the call that reaches it
ENDPOINTS: dict[str, Callable[[str, str], httpx.Response]] = {
    "share": lambda base, t: httpx.post(f"{base}/share/graphql", json=Q, headers=_bearer(t)),
    "subgraph": lambda base, t: httpx.get(f"{base}/share/subgraphs/hrss.graphql", headers=_bearer(t)),
    "audit-api": lambda base, t: httpx.get(f"{base}/audit/api/events?limit=1", headers=_bearer(t)),
    "audit-graphql": lambda base, t: httpx.post(
        f"{base}/audit/graphql", json={"query": "{ verify { ok } }"}, headers=_bearer(t)
    ),
    "admin": lambda base, t: httpx.get(f"{base}/admin/identity/roles", headers=_bearer(t)),
    "userinfo": lambda base, t: httpx.get(f"{base}/oauth/userinfo", headers=_bearer(t)),
}


def _refused(r: httpx.Response) -> bool:
    return r.status_code == 401 and 'error="invalid_token"' in r.headers.get("www-authenticate", "")


def eventually(
    call: Callable[[], httpx.Response], done: Callable[[httpx.Response], bool] = _refused, tries: int = 50
) -> httpx.Response:
    """Poll until `done` (by default: refused), at most `tries` times (the guarantee is one second;
    the bound is generous for a loaded machine). The last answer, for the caller to assert on."""
    r = call()
    for _ in range(tries):
        if done(r):
            break
        time.sleep(0.1)
        r = call()
    return r


@pytest.fixture(scope="module")
def holders(pair: tuple[str, str], demo_env: Any) -> dict[str, tuple[str, str]]:
    """A client for each kind of token: share:read (hrss), audit:read (police), admin."""
    return {
        "share": _client(demo_env, "hrss", ["share:read"]),
        "audit": _client(demo_env, "police", ["audit:read"]),
        "admin": _client(demo_env, "tax", ["admin"]),
    }


USES = {"share": ("share", "subgraph"), "audit": ("audit-api", "audit-graphql"), "admin": ("admin",)}


@pytest.mark.parametrize("kind", ["share", "audit", "admin"])
def test_revoked_token_refused_everywhere(
    pair: tuple[str, str], holders: dict[str, tuple[str, str]], kind: str
) -> None:
    a, b = pair
    cid, secret = holders[kind]
    token = _token(a, cid, secret)
    for name in USES[kind]:
        assert ENDPOINTS[name](a, token).status_code == 200, name
        assert ENDPOINTS[name](b, token).status_code == 200, name
    with OAuth2Client(cid, secret) as oauth:
        assert oauth.revoke_token(f"{a}/oauth/revoke", token=token).status_code == 200
    for name in USES[kind]:
        assert _refused(ENDPOINTS[name](a, token)), name  # where it was revoked: at once
        r = eventually(lambda name=name: ENDPOINTS[name](b, token))
        assert _refused(r), (name, r.status_code, r.text)


def test_revoked_person_token_refused_at_userinfo(pair: tuple[str, str], demo_env: Any) -> None:
    a, b = pair
    person = _person(demo_env, ["developer"], ["share:read"])
    oauth, token = _code_flow(a, person, "openid share:read")
    assert isinstance(token, dict)
    access = token["access_token"]
    for base in pair:
        assert ENDPOINTS["userinfo"](base, access).status_code == 200
        assert ENDPOINTS["share"](base, access).status_code == 200
    assert oauth.revoke_token(f"{a}/oauth/revoke", token=access).status_code == 200
    assert _refused(ENDPOINTS["userinfo"](a, access))
    assert _refused(eventually(lambda: ENDPOINTS["userinfo"](b, access)))
    assert _refused(eventually(lambda: ENDPOINTS["share"](b, access)))


def test_disabled_client_cut_on_every_process(
    pair: tuple[str, str], holders: dict[str, tuple[str, str]], demo_env: Any
) -> None:
    a, b = pair
    cid, secret = _client(demo_env, "hrss", ["share:read"])
    victim = _token(a, cid, secret)
    admin = _token(a, *holders["admin"])
    for base in pair:
        assert ENDPOINTS["share"](base, victim).status_code == 200
        assert ENDPOINTS["subgraph"](base, victim).status_code == 200
    r = httpx.post(f"{a}/admin/identity/clients/{cid}/disable", headers=_bearer(admin))
    assert r.status_code in (200, 201) and r.json()["disabled"] is True, r.text
    # on the process that made the change at once; on the other within its next poll
    assert _refused(ENDPOINTS["share"](a, victim))
    for name in ("share", "subgraph"):
        assert _refused(eventually(lambda name=name: ENDPOINTS[name](b, victim))), name
    introspect = httpx.post(f"{a}/oauth/introspect", data={"token": victim}, auth=holders["admin"])
    assert introspect.json() == {"active": False}
    # and no new token for it
    assert httpx.post(
        f"{b}/oauth/token", data={"grant_type": "client_credentials"}, auth=(cid, secret)
    ).status_code in (400, 401)
    # the admin API is behind the same check: a share token cannot disable anyone
    share = _token(a, *holders["share"])
    assert httpx.post(f"{a}/admin/identity/clients/{cid}/enable", headers=_bearer(share)).status_code == 401
    # enabled again: its tokens from before the disable stay dead on both processes, and no
    # refresh token outlived it; a token issued now works (at the latest from the next second on)
    r = httpx.post(f"{a}/admin/identity/clients/{cid}/enable", headers=_bearer(admin))
    assert r.json()["disabled"] is False, r.text
    assert eventually(lambda: ENDPOINTS["share"](b, _token(a, cid, secret)), lambda r: r.status_code == 200)
    for base in pair:
        assert _refused(ENDPOINTS["share"](base, victim)), base


def test_disabled_user_cut_on_every_process_cli_and_api(
    pair: tuple[str, str], holders: dict[str, tuple[str, str]], demo_env: Any
) -> None:
    from typer.testing import CliRunner

    from gateway.cli import app

    a, b = pair
    s = demo_env.settings
    env = {
        "SHUQIAO_DATABASE_URL": s.database_url,
        "SHUQIAO_VAR_DIR": str(s.var_dir),
        "SHUQIAO_MASTER_KEY_FILE": str(s.master_key_file),
    }
    person = _person(demo_env, ["developer"], ["share:read"])
    _, token = _code_flow(a, person, "openid share:read")
    assert isinstance(token, dict)
    access = token["access_token"]
    for base in pair:
        assert ENDPOINTS["share"](base, access).status_code == 200
        assert ENDPOINTS["userinfo"](base, access).status_code == 200
    # the CLI: another process altogether; both gateways learn it from the database
    r = CliRunner().invoke(app, ["user", "disable", person["username"], "--json"], env=env)
    assert r.exit_code == 0, r.output
    disabled_at = time.time()  # the cutoff is at or before this
    for base in pair:
        for name in ("share", "userinfo"):
            assert _refused(eventually(lambda base=base, name=name: ENDPOINTS[name](base, access))), (
                base,
                name,
            )
    refresh = httpx.post(
        f"{b}/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
        auth=(person["client_id"], person["client_secret"]),
    )
    assert refresh.status_code == 400 and "access_token" not in refresh.text

    # the admin API: enable, a new token works; disable, it is cut on the other process
    admin = _token(a, *holders["admin"])
    assert (
        httpx.post(f"{a}/admin/identity/users/{person['username']}/enable", headers=_bearer(admin)).json()[
            "disabled"
        ]
        is False
    )
    # Tokens issued up to and including the cutoff's second stay dead (docs: re-enabling does not
    # revive them); a token works from the next second, so a fast run waits for it.
    time.sleep(max(0.0, math.floor(disabled_at) + 1.05 - time.time()))
    _, fresh = _code_flow(a, person, "openid share:read")
    assert isinstance(fresh, dict)
    again = eventually(lambda: ENDPOINTS["share"](b, fresh["access_token"]), lambda r: r.status_code == 200)
    assert again.status_code == 200  # enabling is learnt the same way
    assert _refused(ENDPOINTS["share"](b, access))  # but not for the tokens of before the disable
    r = httpx.post(f"{a}/admin/identity/users/{person['username']}/disable", headers=_bearer(admin))
    assert r.json()["disabled"] is True
    assert _refused(ENDPOINTS["userinfo"](a, fresh["access_token"]))
    assert _refused(eventually(lambda: ENDPOINTS["share"](b, fresh["access_token"])))


# ------------------------------------------------------------------ the liveness cache


class _Store:
    """A stand-in for IdentityStore.poll: counts polls, can fail."""

    def __init__(self) -> None:
        self.calls = 0
        self.fail = False
        self.revoked: list[tuple[int, str, int]] = []
        self.clients: frozenset[str] = frozenset()
        self.users: frozenset[str] = frozenset()
        self.cutoffs: dict[str, int] = {}

    async def poll(self, seq: int) -> Any:
        from gateway.identity.store import Polled

        self.calls += 1
        if self.fail:
            raise ConnectionError("database down")
        return Polled([r for r in self.revoked if r[0] > seq], self.clients, self.users, self.cutoffs, {})


def test_liveness_polls_once_per_interval_and_fails_closed() -> None:
    import asyncio

    from gateway.identity.store import RevocationList
    from gateway.identity.tokens import TokenClaims

    def claims(client: str = "c1", subject: str = "u1", jti: str = "j1") -> TokenClaims:
        return TokenClaims(client, "hrss", frozenset({"share:read"}), subject, 2_000_000_000, jti)

    async def scenario() -> None:
        store = _Store()
        live = RevocationList(store, interval=3600)  # type: ignore[arg-type]
        for _ in range(100):  # a hundred requests in one interval: one poll
            assert await live.refusal(claims()) is None
        assert store.calls == 1
        store.clients, store.users, store.revoked = frozenset({"c1"}), frozenset({"u2"}), [(1, "j3", 0)]
        assert await live.refusal(claims()) is None  # not yet learnt: the interval has not passed
        await live.refresh(force=True)  # what the admin API does on its own worker
        assert await live.refusal(claims()) == "client disabled"
        assert await live.refusal(claims("c2", "u2")) == "user disabled"
        assert await live.refusal(claims("c2", "u1", "j3")) == "revoked"
        assert await live.refusal(claims("c2", "u1", "j4")) is None
        # c1 enabled again after a disable at t=1000: its tokens of before (and of that second) stay dead
        store.clients, store.cutoffs = frozenset(), {"c1": 1000}
        await live.refresh(force=True)
        old, same, new = (replace(claims(), issued_at=t) for t in (999, 1000, 1001))
        assert await live.refusal(old) == "issued before its client was last disabled"
        assert await live.refusal(same) == "issued before its client was last disabled"
        assert await live.refusal(new) is None
        # the database fails: the request fails, and the next one polls again rather than trust the cache
        store.fail = True
        with pytest.raises(ConnectionError):
            await live.refresh(force=True)
        calls = store.calls
        with pytest.raises(ConnectionError):
            await live.refusal(claims("c2"))
        assert store.calls == calls + 1

    asyncio.run(scenario())


# ------------------------------------------------------------------ a token verified before


def test_verified_token_skips_decoding_but_not_expiry_audience_or_revocation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A token verified before is routed to our own checks without decoding it again; its
    expiry and audience are still checked, and its liveness on every request: revoked, it is
    refused on the very next one."""
    import asyncio
    from types import SimpleNamespace

    from joserfc.jwk import ECKey

    import gateway.identity.bearer as bearer
    from gateway.identity.store import RevocationList
    from gateway.identity.tokens import ADMIN_AUDIENCE, SHARE_AUDIENCE, InvalidToken, TokenService

    tokens = TokenService(ECKey.generate_key("P-256", auto_kid=True), "https://gw", 60)
    store = _Store()
    identity = SimpleNamespace(tokens=tokens, revocations=RevocationList(store, interval=3600))  # type: ignore[arg-type]
    protector = BearerProtector(identity, realm="r", audience=SHARE_AUDIENCE)  # type: ignore[arg-type]
    now = int(time.time())
    token, claims = tokens.issue_with_claims("c1", "hrss", ["share:read"], now=now)
    peeks: list[str] = []
    real_peek = bearer.peek_claims

    def counted_peek(t: str) -> dict[str, Any]:
        peeks.append(t)
        return real_peek(t)

    monkeypatch.setattr(bearer, "peek_claims", counted_peek)

    async def scenario() -> None:
        assert (await protector.authenticate_token(token)).jti == claims["jti"]
        assert peeks == [token] and tokens.verified_before(token)  # decoded once, to route it
        assert (await protector.authenticate_token(token)).jti == claims["jti"]
        assert peeks == [token]  # not again
        with pytest.raises(InvalidToken):  # the audience is checked on the cached claims too
            await bearer.verify_token(identity, token, ADMIN_AUDIENCE)  # type: ignore[arg-type]
        # a forged signature is another string: never a cache hit, refused by the full check
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        assert not tokens.verified_before(forged)
        with pytest.raises(BearerRefused):
            await protector.authenticate_token(forged)
        # revoked: refused on the next request, cached or not
        store.revoked = [(1, str(claims["jti"]), claims["exp"])]
        await identity.revocations.refresh(force=True)
        with pytest.raises(BearerRefused):
            await protector.authenticate_token(token)
        # expired: refused although it is cached
        assert tokens.verify(token, SHARE_AUDIENCE, now=now).jti == claims["jti"]
        with pytest.raises(InvalidToken):
            tokens.verify(token, SHARE_AUDIENCE, now=now + 60 + 31)

    asyncio.run(scenario())
