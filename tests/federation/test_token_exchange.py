"""RFC 8693 token exchange for routers: a client registered for the grant trades a caller's
token for a short delegated one (`act` names the router); subgraphs apply the caller's
policies to it and record the router as the authenticated actor."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from gateway.audit.models import AuditEvent
from gateway.identity.tokens import peek_claims
from tests.conftest import DemoEnv
from tests.federation.conftest import compose_for, post, router
from tests.federation.test_router import LEGAL_ENTITY, _normal
from tests.support import free_port, on_db

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"


@pytest.fixture(scope="module")
def router_client(demo_env: DemoEnv) -> tuple[str, str]:
    from gateway.identity.clients import create_client
    from gateway.secrets import SecretHasher, load_master_key

    hasher = SecretHasher(load_master_key(demo_env.settings.master_key_file))
    cid = f"province-router-{free_port()}"
    _, secret = on_db(
        demo_env, lambda e: create_client(e, hasher, "eco", client_id=cid, grant_types=[EXCHANGE])
    )
    return cid, secret or ""


def _exchange(base: str, auth: tuple[str, str], subject: str) -> httpx.Response:
    return httpx.post(
        f"{base}/oauth/token",
        data={"grant_type": EXCHANGE, "subject_token": subject, "subject_token_type": ACCESS},
        auth=auth,
        timeout=30,
    )


def test_exchange_names_the_caller_as_subject_and_the_router_as_actor(
    gateway: str, router_client: tuple[str, str], tokens: dict[str, str], demo_env: DemoEnv
) -> None:
    r = _exchange(gateway, router_client, tokens["hrss"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["issued_token_type"] == ACCESS and body["expires_in"] <= 300
    claims, subject = peek_claims(body["access_token"]), peek_claims(tokens["hrss"])
    assert claims["act"] == {"sub": router_client[0]}
    assert (claims["client_id"], claims["dept"], claims["sub"]) == ("demo-hrss", "hrss", subject["sub"])
    assert claims["exp"] <= subject["exp"] and claims["scope"] == "share:read"
    # a delegated token reads what its caller may read, on the share tier too
    q = "{ population(first: 1) { edges { node { name } } } }"
    assert (
        post(f"{gateway}/share/graphql", q, body["access_token"]).json()
        == post(f"{gateway}/share/graphql", q, tokens["hrss"]).json()
    )
    # not exchanged again; not for a client registered without the grant; not a dead token
    again = _exchange(gateway, router_client, body["access_token"])
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    samr = demo_env.credentials["clients"]["samr"]
    other = _exchange(gateway, (samr["client_id"], samr["client_secret"]), tokens["hrss"])
    assert other.status_code == 400 and other.json()["error"] == "unauthorized_client"
    forged = _exchange(gateway, router_client, tokens["hrss"][:-4] + "AAAA")
    assert forged.status_code == 400 and forged.json()["error"] == "invalid_grant"


@pytest.fixture(scope="module")
def exchanging(
    gateway: str,
    tokens: dict[str, str],
    node_modules: Path,
    router_client: tuple[str, str],
    tmp_path_factory: Any,
) -> Iterator[str]:
    composed = compose_for(node_modules, gateway, tokens["hrss"])
    cid, secret = router_client
    spec = f"{cid}:{secret}@{gateway}/oauth/token"
    with router(composed["supergraphSdl"], tmp_path_factory.mktemp("exchange"), "--exchange", spec) as url:
        yield url


def test_a_router_with_delegated_tokens_answers_as_the_share_tier(
    gateway: str, exchanging: str, tokens: dict[str, str], demo_env: DemoEnv, router_client: tuple[str, str]
) -> None:
    code = post(
        f"{gateway}/share/graphql",
        "{ dischargePermit(first: 1) { edges { node { creditCode } } } }",
        tokens["eco"],
    ).json()["data"]["dischargePermit"]["edges"][0]["node"]["creditCode"]
    for caller in ("hrss", "samr"):
        via = post(exchanging, LEGAL_ENTITY, tokens[caller], {"c": code}).json()
        direct = post(f"{gateway}/share/graphql", LEGAL_ENTITY, tokens[caller], {"c": code}).json()
        assert _normal(via, None) == _normal(direct, None), caller
    # without a caller token there is nothing to exchange, and nothing is sent
    anonymous = post(exchanging, LEGAL_ENTITY, None, {"c": code}).json()
    assert anonymous["data"]["legalEntity"] is None

    async def events(engine: Any) -> list[Any]:
        async with engine.connect() as conn:
            return list(await conn.execute(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(60)))

    actors: list[tuple[str, str | None]] = []
    for _ in range(50):
        actors = [
            (e.principal_id, r["subgraph"].get("actor"))
            for e in on_db(demo_env, events)
            for r in orjson.loads(e.detail)["reads"]
            if "subgraph" in r and r["subgraph"].get("actor")
        ]
        if ("demo-hrss", router_client[0]) in actors and ("demo-samr", router_client[0]) in actors:
            break
        time.sleep(0.1)
    assert ("demo-hrss", router_client[0]) in actors and ("demo-samr", router_client[0]) in actors


def test_a_delegated_token_dies_with_the_callers_token_and_with_the_router(
    gateway: str, demo_env: DemoEnv
) -> None:
    from gateway.identity.clients import create_client, set_client_disabled
    from gateway.secrets import SecretHasher, load_master_key

    hasher = SecretHasher(load_master_key(demo_env.settings.master_key_file))
    cid = f"short-lived-router-{free_port()}"
    _, secret = on_db(
        demo_env, lambda e: create_client(e, hasher, "eco", client_id=cid, grant_types=[EXCHANGE])
    )
    hrss = demo_env.credentials["clients"]["hrss"]
    hrss_auth = (hrss["client_id"], hrss["client_secret"])

    def caller_token() -> str:  # a fresh one: the session's tokens must stay live
        r = httpx.post(f"{gateway}/oauth/token", data={"grant_type": "client_credentials"}, auth=hrss_auth)
        return str(r.json()["access_token"])

    def status(token: str) -> int:
        q = {"query": "{ _service { sdl } }"}
        r = httpx.post(
            f"{gateway}/share/subgraphs/hrss/graphql", json=q, headers={"Authorization": f"Bearer {token}"}
        )
        return r.status_code

    def until_refused(token: str) -> int:
        for _ in range(50):  # every worker learns of a revocation within a second
            if (code := status(token)) == 401:
                return code
            time.sleep(0.1)
        return status(token)

    caller = caller_token()
    delegated = _exchange(gateway, (cid, secret or ""), caller).json()["access_token"]
    assert status(delegated) == 200
    revoked = httpx.post(
        f"{gateway}/oauth/revoke", data={"token": caller, "token_type_hint": "access_token"}, auth=hrss_auth
    )
    assert revoked.status_code == 200
    assert until_refused(delegated) == 401

    delegated = _exchange(gateway, (cid, secret or ""), caller_token()).json()["access_token"]
    assert status(delegated) == 200
    on_db(demo_env, lambda e: set_client_disabled(e, cid, True))
    assert until_refused(delegated) == 401
