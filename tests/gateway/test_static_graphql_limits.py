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
