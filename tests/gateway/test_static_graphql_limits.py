"""The static GraphQL endpoints (/audit/graphql for officers, /admin/graphql for the workflow)
refuse what the tiers refuse, with the same codes and before anything executes: a body over
SHUQIAO_MAX_BODY_BYTES (413), too many aliases, a fragment fan-out that expands past the field
limit, a document over the token budget; the refusal is still the call's own audit event."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from sqlalchemy import select

from tests.audit.test_officer_api import officer  # noqa: F401  (the module fixture)
from tests.support import on_db
from tests.workflow.test_admin_graphql import people  # noqa: F401  (the module fixture)

ALIASES = "{ " + " ".join(f"a{i}: __typename" for i in range(31)) + " }"


def fan(depth: int) -> str:
    """`F{i}` spreads `F{i-1}` twice: ~2 KB that expands to 2**depth fields."""
    frags = ["fragment F0 on Query { __typename }"]
    frags += [f"fragment F{i} on Query {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, depth + 1)]
    return " ".join([f"{{ ...F{depth} }}", *frags])


@pytest.fixture
def endpoints(officer: str, people: dict[str, str]) -> dict[str, str]:  # noqa: F811
    return {"/audit/graphql": officer, "/admin/graphql": people["hrss_dev"]}


@pytest.mark.parametrize(
    ("query", "code"),
    [
        (ALIASES, "TOO_MANY_ALIASES"),
        (fan(40), "QUERY_TOO_COMPLEX"),
        ("{ " + "a " * 15_000 + "}", "GRAPHQL_PARSE_FAILED"),  # over the token budget
    ],
    ids=["aliases", "fan-out", "tokens"],
)
@pytest.mark.parametrize("path", ["/audit/graphql", "/admin/graphql"])
def test_refused_before_execution(
    client: Any, endpoints: dict[str, str], path: str, query: str, code: str
) -> None:
    r = client.post(path, json={"query": query}, headers={"Authorization": f"Bearer {endpoints[path]}"})
    assert r.status_code == 400, r.text
    body = r.json()
    assert "data" not in body
    assert [e["extensions"]["code"] for e in body["errors"]] == [code]


@pytest.mark.parametrize("path", ["/audit/graphql", "/admin/graphql"])
def test_a_body_over_the_limit_is_413_and_recorded(
    client: Any, demo_env: Any, endpoints: dict[str, str], path: str
) -> None:
    limit = demo_env.settings.limits.max_body_bytes
    rid = f"big-{secrets.token_hex(6)}"
    r = client.post(
        path,
        json={"query": "{ __typename }", "variables": {"pad": "x" * limit}},
        headers={"Authorization": f"Bearer {endpoints[path]}", "X-Request-ID": rid},
    )
    assert r.status_code == 413, r.text
    assert r.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    assert "x" * 100 not in r.text

    from gateway.audit.models import AuditEvent

    async def go(engine: Any) -> list[Any]:
        async with engine.connect() as conn:
            q = select(AuditEvent.status, AuditEvent.error_codes).where(AuditEvent.request_id == rid)
            return list((await conn.execute(q)).all())

    (row,) = on_db(demo_env, go)
    assert row[0] == 413 and "PAYLOAD_TOO_LARGE" in (row[1] or "")


# graphql-http's reference audits (tests/conformance) found these: the static endpoints now follow
# GraphQL over HTTP as the tiers do (gateway.graphql_media, gateway.static_graphql.typed_params).


@pytest.mark.parametrize("path", ["/audit/graphql", "/admin/graphql"])
def test_the_response_type_is_negotiated(client: Any, endpoints: dict[str, str], path: str) -> None:
    """Audit 22EB: application/graphql-response+json when the client asks for it; 406 when it
    accepts no GraphQL response type."""
    auth = {"Authorization": f"Bearer {endpoints[path]}"}
    gql = "application/graphql-response+json"
    r = client.post(path, json={"query": "{ __typename }"}, headers={**auth, "Accept": gql})
    assert r.status_code == 200 and r.headers["content-type"].startswith(gql)
    r = client.post(path, json={"query": "{ __typename }"}, headers={**auth, "Accept": "text/html"})
    assert r.status_code == 406 and r.json()["errors"][0]["extensions"]["code"] == "NOT_ACCEPTABLE"


@pytest.mark.parametrize("path", ["/audit/graphql", "/admin/graphql"])
def test_a_post_not_declared_json_is_415(client: Any, endpoints: dict[str, str], path: str) -> None:
    """Audit 9ABE: a POST without Content-Type is refused, not guessed at."""
    r = client.post(
        path, content=b'{"query": "{ __typename }"}', headers={"Authorization": f"Bearer {endpoints[path]}"}
    )
    assert r.status_code == 415 and r.json()["errors"][0]["extensions"]["code"] == "UNSUPPORTED_MEDIA_TYPE"


@pytest.mark.parametrize(
    "body", [{"variables": 0}, {"variables": True}, {"extensions": "x"}, {"extensions": []}]
)
@pytest.mark.parametrize("path", ["/audit/graphql", "/admin/graphql"])
def test_parameters_of_the_wrong_type_are_400(
    client: Any, endpoints: dict[str, str], path: str, body: dict[str, Any]
) -> None:
    """Audits 4761, 4762, 58B0–58B3: `variables` and `extensions` are objects or absent."""
    r = client.post(
        path, json={"query": "{ __typename }", **body}, headers={"Authorization": f"Bearer {endpoints[path]}"}
    )
    assert r.status_code == 400 and r.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


@pytest.mark.parametrize("method", ["GET", "PATCH"])
@pytest.mark.parametrize("path", ["/audit/graphql", "/admin/graphql"])
def test_a_get_is_405_and_recorded(
    client: Any, demo_env: Any, endpoints: dict[str, str], path: str, method: str
) -> None:
    """The audits' GET requests (5A70, D6D5, 6A70) found the router answering 405 before the
    endpoint, so no audit event; the endpoint answers it now, with `Allow`, and records it. A
    method the router did not list (PATCH) reaches the endpoint too."""
    from gateway.audit.models import AuditEvent

    rid = f"get-{secrets.token_hex(6)}"
    r = client.request(
        method,
        path,
        params={"query": "{ __typename }"},
        headers={"Authorization": f"Bearer {endpoints[path]}", "X-Request-ID": rid},
    )
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert r.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"

    async def go(engine: Any) -> list[Any]:
        async with engine.connect() as conn:
            q = select(AuditEvent.status).where(AuditEvent.request_id == rid)
            return list((await conn.execute(q)).scalars())

    assert on_db(demo_env, go) == [405]
