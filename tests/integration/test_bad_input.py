"""Bad input gets a clear error, the right status, and changes nothing."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import gql
from tests.support import fan_out


def _code(r: Any) -> str:
    return r.json()["errors"][0]["extensions"]["code"]


def test_malformed_json(client: Any) -> None:
    r = client.post("/open/graphql", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and _code(r) == "BAD_REQUEST"


def test_wrong_content_type_and_method(client: Any) -> None:
    r = client.post("/open/graphql", content=b"query", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    r = client.put("/open/graphql", json={"query": "{ __typename }"})
    assert r.status_code == 405 and "POST" in r.headers["allow"]
    r = client.get("/share/graphql", params={"query": "{ __typename }"})
    assert r.status_code == 405


def test_unacceptable_accept_header(client: Any) -> None:
    r = client.post("/open/graphql", json={"query": "{ __typename }"}, headers={"Accept": "text/html"})
    assert r.status_code == 406


def test_get_query_on_open_tier(client: Any) -> None:
    r = client.get("/open/graphql", params={"query": "{ enterpriseRegistration(first: 1) { totalCount } }"})
    assert r.status_code == 200 and r.json()["data"]["enterpriseRegistration"]["totalCount"] > 0


def test_unknown_field_is_a_validation_error(client: Any) -> None:
    r = gql(client, "open", "{ enterpriseRegistration { edges { node { nope } } } }")
    assert r.status_code == 400 and _code(r) == "GRAPHQL_VALIDATION_FAILED"
    legacy = gql(client, "open", "{ nope }", accept="application/json")
    # no data → 4xx under application/json too (GraphQL over HTTP, draft of 2026, "Status Codes")
    assert legacy.status_code == 400 and "data" not in legacy.json()


def test_depth_bomb(client: Any, tokens: dict[str, str]) -> None:
    inner = "creditCode"
    for _ in range(12):
        inner = "employer { enterpriseRegistration { creditCode } creditCode } employerCreditCode"
    q = "{ socialInsurance { edges { node { " + "employer { " * 0 + inner + " } } } }"
    deep = "{ a: enterpriseRegistration { edges { node { " + "creditCode " + "} } } }"
    assert gql(client, "open", deep).status_code == 200
    bomb = "{ __schema { types { fields { type { " + "ofType { " * 30 + "name" + " }" * 30 + " } } } } }"
    r = gql(client, "open", bomb)
    assert r.status_code == 400 and _code(r) == "QUERY_TOO_DEEP"
    r = gql(client, "share", q, token=tokens["hrss"])
    assert r.status_code in (200, 400)  # well-formed; depth of this one is within limits or refused cleanly


def test_five_hundred_aliases_refused_quickly(client: Any) -> None:
    q = "{ " + " ".join(f"a{i}: __typename" for i in range(500)) + " }"
    started = time.perf_counter()
    r = gql(client, "open", q)
    assert r.status_code == 400 and _code(r) == "TOO_MANY_ALIASES"
    assert time.perf_counter() - started < 2


def _count_collection(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the selections the planner's field collection visits (resolvers/selection.py)."""
    import resolvers.selection as selection

    count = [0]
    included = selection._included

    def counting(node: Any, variables: Any) -> bool:
        count[0] += 1
        return included(node, variables)

    monkeypatch.setattr(selection, "_included", counting)
    return count


def test_fragment_fan_out_refused_before_planning_on_both_tiers(
    client: Any, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`F{i} { ...F{i-1} ...F{i-1} }` 21 and 29 deep: a kilobyte that expands to millions
    (billions) of fields is refused by arithmetic on the fragments, never expanded."""
    collected = _count_collection(monkeypatch)
    for depth in (21, 29):
        for tier, token in (("open", None), ("share", tokens["hrss"])):
            r = gql(client, tier, fan_out(depth), token=token)
            assert r.status_code == 400 and _code(r) == "QUERY_TOO_COMPLEX", r.text
            assert "data" not in r.json() and r.json()["errors"][0]["extensions"]["limit"] == 2000
    assert collected[0] == 0  # the planner never saw them
    assert client.get("/healthz").json() == {"status": "ok"}


def test_fragments_within_the_field_limit_still_work(
    client: Any, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = "{ enterpriseRegistration(first: 3) { edges { node { creditCode name industry } } } }"
    spread = (
        "{ enterpriseRegistration(first: 3) { edges { node { ...A ...B ...A ...C } } } }"
        " fragment A on EnterpriseRegistration { creditCode ...B }"
        " fragment B on EnterpriseRegistration { name } fragment C on EnterpriseRegistration { industry }"
    )
    for tier, token in (("open", None), ("share", tokens["samr"])):
        want = gql(client, tier, plain, token=token)
        got = gql(client, tier, spread, token=token)
        assert want.status_code == got.status_code == 200, got.text
        assert got.json()["data"] == want.json()["data"]
    collected = _count_collection(monkeypatch)
    r = gql(client, "open", fan_out(10))  # 1,027 fields: within the limit, one name in the answer
    assert r.status_code == 200, r.text
    assert 0 < collected[0] <= 2 * (4 + 2 * 10 + 1)  # planning visits each written selection about once
    assert r.json()["data"]["enterpriseRegistration"]["edges"][0]["node"].keys() == {"name"}


def test_page_size_above_cap(client: Any) -> None:
    r = gql(client, "open", "{ enterpriseRegistration(first: 100000) { totalCount } }")
    assert r.status_code == 400 and _code(r) == "PAGE_SIZE_EXCEEDED"
    assert "500" in r.json()["errors"][0]["message"]
    r = gql(client, "open", "{ enterpriseRegistration(first: -1) { totalCount } }")
    assert r.status_code == 400 and _code(r) == "BAD_USER_INPUT"


def test_sql_looking_strings_are_just_values(client: Any) -> None:
    count = "{ enterpriseRegistration { totalCount } }"
    before = gql(client, "open", count).json()["data"]["enterpriseRegistration"]["totalCount"]
    for evil in ["'; DROP TABLE pool_enterprise_registration; --", "x' OR '1'='1", "%", "_", "\\"]:
        r = gql(
            client,
            "open",
            "query($v: String) { enterpriseRegistration(where: {name: {eq: $v}}) { totalCount } "
            "p: enterpriseRegistration(where: {name: {prefix: $v}}) { totalCount } }",
            variables={"v": evil},
        )
        assert r.status_code == 200, r.text
        assert r.json()["data"]["enterpriseRegistration"]["totalCount"] == 0
        assert r.json()["data"]["p"]["totalCount"] == 0
    assert gql(client, "open", count).json()["data"]["enterpriseRegistration"]["totalCount"] == before


def test_bad_cursor(client: Any) -> None:
    r = gql(client, "open", '{ enterpriseRegistration(after: "bm90IGEgY3Vyc29y") { totalCount } }')
    assert r.status_code == 400 and _code(r) == "BAD_USER_INPUT"


def test_tampered_expired_and_missing_tokens(client: Any, tokens: dict[str, str], demo_env: Any) -> None:
    q = "{ enterpriseRegistration(first: 1) { totalCount } }"
    r = gql(client, "share", q)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer ")
    head, payload, sig = tokens["samr"].split(".")
    tampered = f"{head}.{payload[:-2]}AA.{sig}"
    r = gql(client, "share", q, token=tampered)
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
    assert "Signature" not in r.text  # reveals nothing about why

    from gateway.identity.tokens import TokenService, load_signing_key

    svc = TokenService(
        load_signing_key(demo_env.settings.var_dir / "keys" / "token-es256.pem"), "http://testserver", 60
    )
    expired, _ = svc.issue("demo-samr", "samr", ["share:read"], now=int(time.time()) - 3600)
    assert gql(client, "share", q, token=expired).status_code == 401
    none_alg = "eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0." + payload + "."
    assert gql(client, "share", q, token=none_alg).status_code == 401


def test_unknown_api_key(client: Any) -> None:
    r = gql(client, "open", "{ __typename }", headers={"X-API-Key": "sq_deadbeef_nope"})
    assert r.status_code == 401 and _code(r) == "UNAUTHENTICATED"
    assert "sq_deadbeef_nope" not in r.text


def test_oversized_body(client: Any) -> None:
    r = client.post(
        "/open/graphql", content=b"{" + b" " * 70_000 + b"}", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413


def test_batched_request_refused(client: Any) -> None:
    r = client.post("/open/graphql", json=[{"query": "{ __typename }"}] * 2)
    assert r.status_code == 400 and _code(r) == "BATCHING_NOT_SUPPORTED"


def test_token_endpoint_rejects_bad_client(client: Any, demo_env: Any) -> None:
    r = client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=("demo-samr", "wrong"))
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = client.post("/oauth/token", data={"grant_type": "password"}, auth=("demo-samr", "wrong"))
    assert r.status_code in (400, 401)


def test_health(client: Any) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["database"] == "ok"
    assert len(client.get("/healthz").headers["x-request-id"]) >= 8


def test_readiness_says_busy_when_the_pool_is_exhausted_and_unreachable_otherwise(
    client: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    engine = client.app.state.gateway.engine
    for err, said, retry in (
        (PoolTimeout("QueuePool limit reached"), "busy", "1"),
        (OSError("connection refused by 10.0.0.9 secret=s3cr3t"), "unreachable", "5"),
    ):

        def refuse(_engine: Any, err: Exception = err) -> Any:
            raise err

        monkeypatch.setattr(type(engine), "connect", refuse)  # AsyncEngine has slots
        r = client.get("/readyz")
        assert r.status_code == 503 and r.headers["retry-after"] == retry
        assert r.json()["status"] == "unavailable" and r.json()["database"] == said
        assert r.json()["audit"] == said  # the chained store lives in that database
        assert r.json()["signing"] == "ok" and "redis" not in r.json()  # no Redis configured
    assert "s3cr3t" not in caplog.text and "OSError" in caplog.text  # the type is logged, not the text


# -- Reproducers of issue 13 item 3: each was a plain-text 500 with no audit event.
OPEN_NAME = "query($v: [String!]) { enterpriseRegistration(where: {name: {in: $v}}) { totalCount } }"
SHARE_NAME = "query($v: [String!]) { enterpriseRegistration(where: {creditCode: {in: $v}}) { totalCount } }"


def _refused(r: Any, code: str, status: int = 400) -> None:
    """A clean refusal: the status, one GraphQL error with the code, and a request id."""
    assert r.status_code == status, r.text
    assert _code(r) == code, r.text
    assert "data" not in r.json()
    assert len(r.headers["x-request-id"]) >= 8


def test_in_list_over_the_limit_is_refused_on_both_tiers(client: Any, tokens: dict[str, str]) -> None:
    values = [f"v{i}" for i in range(1001)]
    r = gql(client, "open", OPEN_NAME, variables={"v": values})
    _refused(r, "FILTER_TOO_LARGE")
    assert r.json()["errors"][0]["extensions"]["limit"] == 1000
    _refused(
        gql(client, "share", SHARE_NAME, token=tokens["samr"], variables={"v": values}), "FILTER_TOO_LARGE"
    )
    ok = gql(client, "open", OPEN_NAME, variables={"v": values[:1000]})
    assert ok.status_code == 200 and ok.json()["data"]["enterpriseRegistration"]["totalCount"] == 0


def test_long_prefix_is_refused(client: Any) -> None:
    q = "query($v: String) { enterpriseRegistration(where: {name: {prefix: $v}}) { totalCount } }"
    _refused(gql(client, "open", q, variables={"v": "x" * 50_000}), "FILTER_TOO_LARGE")
    _refused(gql(client, "open", q, variables={"v": "x" * 1001}), "FILTER_TOO_LARGE")


@pytest.mark.parametrize("bad", ["sNaN", "NaN", "Infinity", "-Infinity"])
def test_non_finite_decimal_filter_is_bad_input(client: Any, bad: str) -> None:
    q = "query($v: Decimal) { enterpriseRegistration(where: {registeredCapital: {gt: $v}}) { totalCount } }"
    _refused(gql(client, "open", q, variables={"v": bad}), "BAD_USER_INPUT")
    literal = f'{{ enterpriseRegistration(where: {{registeredCapital: {{eq: "{bad}"}}}}) {{ totalCount }} }}'
    _refused(gql(client, "open", literal), "BAD_USER_INPUT")


@pytest.mark.parametrize("bad", ["sNaN", "NaN", "Infinity"])
def test_non_finite_decimal_in_a_cursor_is_bad_input(client: Any, bad: str) -> None:
    import base64

    import orjson

    after = base64.urlsafe_b64encode(orjson.dumps([bad, 1])).rstrip(b"=").decode()
    q = (
        "query($a: String) { enterpriseRegistration(orderBy: [{field: REGISTERED_CAPITAL}], after: $a) "
        "{ totalCount } }"
    )
    _refused(gql(client, "open", q, variables={"a": after}), "BAD_USER_INPUT")


def test_nul_byte_in_a_filter_or_entity_key_is_bad_input(client: Any, tokens: dict[str, str]) -> None:
    q = "query($v: String) { enterpriseRegistration(where: {name: {eq: $v}}) { totalCount } }"
    _refused(gql(client, "open", q, variables={"v": "a\x00b"}), "BAD_USER_INPUT")
    q = "query($v: [String!]) { enterpriseRegistration(where: {name: {in: $v}}) { totalCount } }"
    _refused(gql(client, "open", q, variables={"v": ["ok", "a\x00b"]}), "BAD_USER_INPUT")
    for field, arg in (("legalEntity", "creditCode"), ("person", "idNumber")):
        q = f"query($v: String!) {{ {field}({arg}: $v) {{ __typename }} }}"
        _refused(gql(client, "share", q, token=tokens["hrss"], variables={"v": "9\x00"}), "BAD_USER_INPUT")
    q = "query($v: String!) { legalEntity(creditCode: $v) { __typename } }"
    _refused(gql(client, "share", q, token=tokens["hrss"], variables={"v": "9" * 1001}), "FILTER_TOO_LARGE")
