"""Enterprise API keys (rotation with overlap, revocation, expiry, secret never shown
again) and rate limits: 429 with Retry-After and RateLimit headers, one combined limit
across two worker processes through Redis, per-process without it."""

from __future__ import annotations

import logging
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gateway.identity.apikeys import create_api_key, revoke_api_key, rotate_api_key
from tests.identity.conftest import free_port, hasher, on_db, serve

Q = {"query": "{ airQualityDaily(first: 1) { totalCount } }"}


def _key(demo_env: Any, **kw: Any) -> tuple[str, str]:
    key, row = on_db(demo_env, lambda e: create_api_key(e, hasher(demo_env), "demo-bank", "test", **kw))
    return key, row.prefix


def _open(client: Any, key: str | None = None) -> Any:
    return client.post("/open/graphql", json=Q, headers={"X-API-Key": key} if key else {})


def test_key_rate_limit_429_with_headers(client: Any, demo_env: Any) -> None:
    key, _ = _key(demo_env, rate_per_minute=3)
    ok = [_open(client, key) for _ in range(3)]
    assert all(r.status_code == 200 for r in ok)
    assert ok[0].headers["ratelimit-policy"].startswith('"burst";q=3;w=60')
    assert '"burst";r=2;' in ok[0].headers["ratelimit"] and '"burst";r=0;' in ok[2].headers["ratelimit"]
    refused = _open(client, key)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["ratelimit"].startswith('"burst";r=0;')
    assert refused.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    other, _ = _key(demo_env, rate_per_minute=3)  # limits are per key
    assert _open(client, other).status_code == 200


def test_daily_quota(client: Any, demo_env: Any) -> None:
    key, _ = _key(demo_env, rate_per_minute=100, daily_quota=2)
    assert [_open(client, key).status_code for _ in range(3)] == [200, 200, 429]
    r = _open(client, key)
    assert '"daily";r=0;' in r.headers["ratelimit"] and int(r.headers["retry-after"]) > 0


def test_revoked_and_expired_keys_are_401(client: Any, demo_env: Any) -> None:
    key, prefix = _key(demo_env)
    assert _open(client, key).status_code == 200
    on_db(demo_env, lambda e: revoke_api_key(e, prefix))
    import time

    time.sleep(2.1)  # the verifier caches a good key for two seconds
    r = _open(client, key)
    assert r.status_code == 401 and r.json()["errors"][0]["message"] == "The API key is not valid."
    expired, _ = _key(demo_env, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert _open(client, expired).status_code == 401
    assert _open(client, "sq_nothere_" + secrets.token_urlsafe(32)).status_code == 401
    assert _open(client, "garbage").status_code == 401


def test_rotation_with_overlap(client: Any, demo_env: Any) -> None:
    key, prefix = _key(demo_env)
    new_key, new, old = on_db(demo_env, lambda e: rotate_api_key(e, hasher(demo_env), prefix))
    assert new_key != key and old.replaced_by == new.prefix
    assert _open(client, key).status_code == 200 and _open(client, new_key).status_code == 200
    key2, prefix2 = _key(demo_env)
    newer, *_ = on_db(demo_env, lambda e: rotate_api_key(e, hasher(demo_env), prefix2, timedelta(0)))
    assert _open(client, key2).status_code == 401 and _open(client, newer).status_code == 200


def test_key_secret_never_in_logs_or_later_responses(client: Any, demo_env: Any, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    key, prefix = _key(demo_env)
    secret = key.split("_", 2)[2]
    for _ in range(2):
        _open(client, key)
    _open(client, key[:-1] + ("A" if key[-1] != "A" else "B"))  # a wrong one too
    assert secret not in caplog.text
    from gateway.identity.apikeys import describe, list_api_keys

    listed = on_db(demo_env, lambda e: list_api_keys(e, "demo-bank"))
    shown = str([describe(r) for r in listed])
    assert prefix in shown and secret not in shown and "secret_hash" not in shown


def test_anonymous_limited_per_address(demo_env: Any) -> None:
    with serve(demo_env, SHUQIAO_ANONYMOUS_RATE="4/minute") as base:
        codes = [httpx.post(f"{base}/open/graphql", json=Q).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 200, 429]


def _combined(demo_env: Any, env: dict[str, str]) -> list[int]:
    key, _ = _key(demo_env, rate_per_minute=10)
    with serve(demo_env, port=free_port(), **env) as a, serve(demo_env, port=free_port(), **env) as b:
        return [
            httpx.post(f"{base}/open/graphql", json=Q, headers={"X-API-Key": key}).status_code
            for _ in range(10)
            for base in (a, b)
        ]


@pytest.mark.slow
def test_two_workers_share_one_limit_through_redis(demo_env: Any) -> None:
    ns = f"shuqiao-test-{uuid.uuid4().hex[:8]}"
    codes = _combined(
        demo_env, {"SHUQIAO_REDIS_URL": "redis://127.0.0.1:6379/0", "SHUQIAO_REDIS_NAMESPACE": ns}
    )
    assert codes.count(200) == 10 and codes.count(429) == 10
    # without Redis each process counts for itself: twice the traffic gets through
    codes = _combined(demo_env, {})
    assert codes.count(200) == 20


TAX_Q = {"query": "{ taxCreditRating(first: 1) { edges { node { creditCode rating } } } }"}


def test_key_scoped_to_one_dataset_is_refused_another_granted_one(client: Any, demo_env: Any) -> None:
    """demo-bank holds grants on tax_credit_rating and (here) air_quality_daily; a key scoped
    to air_quality_daily may not use the tax_credit_rating grant."""
    from gateway.grants.service import create_grant
    from policies.model import Tier

    grant = on_db(
        demo_env,
        lambda e: create_grant(
            e, tier=Tier.OPEN, dataset="air_quality_daily", consumer="demo-bank", purpose="环境风险评估"
        ),
    )
    try:
        _scoped_key_refused(client, demo_env)
    finally:
        on_db(demo_env, lambda e: _revoke_grant(e, grant.id))


async def _revoke_grant(engine: Any, grant_id: int) -> None:
    from sqlmodel.ext.asyncio.session import AsyncSession

    from catalogue.service import bump_version
    from gateway.grants.models import GrantRecord

    async with AsyncSession(engine) as session:
        row = await session.get(GrantRecord, grant_id)
        row.status = "revoked"
        await bump_version(session)
        await session.commit()


def _scoped_key_refused(client: Any, demo_env: Any) -> None:
    scoped_b, _ = _key(demo_env, datasets=["air_quality_daily"])
    scoped_a, _ = _key(demo_env, datasets=["tax_credit_rating"])
    unscoped, _ = _key(demo_env)
    for key in (scoped_a, unscoped):
        ok = client.post("/open/graphql", json=TAX_Q, headers={"X-API-Key": key}).json()
        assert "errors" not in ok and len(ok["data"]["taxCreditRating"]["edges"]) == 1
    # the same query text and enterprise, just answered from the plan cache for the other keys
    refused = client.post("/open/graphql", json=TAX_Q, headers={"X-API-Key": scoped_b}).json()
    assert refused["data"]["taxCreditRating"] is None, refused
    assert [e["extensions"]["code"] for e in refused["errors"]] == ["FORBIDDEN"]
    assert client.post("/open/graphql", json=Q, headers={"X-API-Key": scoped_b}).status_code == 200


SHARE_Q = {"query": "{ enterpriseRegistration(first: 1) { totalCount } }"}


def test_share_tier_limited_per_client(demo_env: Any) -> None:
    """SHUQIAO_SHARE_CLIENT_RATE: every token of one client counts against one limit."""
    creds = demo_env.credentials["clients"]
    with serve(demo_env, SHUQIAO_SHARE_CLIENT_RATE="3/minute") as base:

        def token(dept: str) -> str:
            c = creds[dept]
            r = httpx.post(
                f"{base}/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(c["client_id"], c["client_secret"]),
            )
            return r.json()["access_token"]

        def share(tok: str) -> httpx.Response:
            return httpx.post(
                f"{base}/share/graphql", json=SHARE_Q, headers={"Authorization": f"Bearer {tok}"}
            )

        first, second = token("tax"), token("tax")
        codes = [share(t).status_code for t in (first, second, first)]
        assert codes == [200, 200, 200]
        refused = share(second)  # another token of the same client: the same budget
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert refused.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        assert refused.headers["ratelimit-policy"] == '"client";q=3;w=60'
        assert share(token("samr")).status_code == 200  # other clients are not affected
