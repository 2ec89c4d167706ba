"""The sharing console's page and its API over real HTTP (gateway.workflow.console, and
POST /admin/graphql through gateway.web.session.SessionOrBearer): no session → sign in; a
person's session works on /admin/graphql with its CSRF token and not without it; a developer
cannot approve; a security officer (no workflow scope) gets 403; bearer tokens work as before."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from typing import Any

import httpx
import pytest

from tests.audit.signin import sign_in
from tests.support import on_db, serve

APP = "id state consumer provider dataset nextSteps"


@pytest.fixture(scope="module")
def served(demo_env: Any) -> Iterator[str]:
    with serve(demo_env) as base:
        yield base


def _person(demo_env: Any, served: str, username: str) -> tuple[httpx.Client, str]:
    client, page = sign_in(served, username, demo_env.credentials["users"][username]["password"], "/console")
    assert page.status_code == 200 and page.url.path == "/console", (page.status_code, page.text[:300])
    return client, client.get("/web/session").json()["csrf"]


def _gql(client: httpx.Client, query: str, variables: dict[str, Any] | None = None, **headers: str) -> Any:
    return client.post("/admin/graphql", json={"query": query, "variables": variables or {}}, headers=headers)


def _codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


def test_no_session_is_sent_to_sign_in_and_the_api_answers_401(served: str) -> None:
    r = httpx.get(f"{served}/console")
    assert r.status_code == 303 and r.headers["location"] == "/web/login?next=/console"
    assert httpx.get(f"{served}/console/static/console.js").status_code == 200
    assert httpx.get(f"{served}/console/static/nosuch.js").status_code == 404
    r = httpx.post(f"{served}/admin/graphql", json={"query": "{ myApplications { id } }"})
    assert r.status_code == 401 and r.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_a_developer_works_through_the_session_and_cannot_approve(demo_env: Any, served: str) -> None:
    client, csrf = _person(demo_env, served, "hrss-developer")
    with closing(client):
        page = client.get("/console")
        assert "工作台" in page.text and page.headers["Content-Security-Policy"].startswith(
            "default-src 'self'"
        )
        mine = _gql(
            client, f"{{ myApplications {{ {APP} }} pendingApprovals {{ id }} }}", **{"X-CSRF-Token": csrf}
        )
        assert mine.status_code == 200, mine.text
        data = mine.json()["data"]
        assert data["pendingApprovals"] == []  # a developer decides nothing
        assert all(a["consumer"] == "hrss" for a in data["myApplications"])
        submitted = next(a for a in data["myApplications"] if a["state"] == "submitted")
        assert "approve" not in submitted["nextSteps"] and "withdraw" in submitted["nextSteps"]
        r = _gql(
            client,
            "mutation($id: Int!) { approveApplication(id: $id) { id } }",
            {"id": submitted["id"]},
            **{"X-CSRF-Token": csrf},
        )
        assert _codes(r.json()) == ["FORBIDDEN"], r.text
        # the datasets hrss may apply for: not its own, each field with the treatments it allows
        r = _gql(
            client,
            "{ applicableDatasets { code provider fields { name graphqlName treatments } } }",
            **{"X-CSRF-Token": csrf},
        )
        datasets = {d["code"]: d for d in r.json()["data"]["applicableDatasets"]}
        assert "population" in datasets and all(d["provider"] != "hrss" for d in datasets.values())
        fields = {f["name"]: f for f in datasets["population"]["fields"]}
        assert (
            fields["phone"]["treatments"] == ["masked", "clear"] and fields["phone"]["graphqlName"] == "phone"
        )
        assert fields["id_number"]["treatments"] == ["encrypted"]


def test_session_calls_need_the_csrf_token_and_our_origin(demo_env: Any, served: str) -> None:
    from sqlalchemy import select

    from gateway.audit.models import AuditEvent

    client, csrf = _person(demo_env, served, "hrss-developer")
    with closing(client):
        user_id = client.get("/web/session").json()["user_id"]
        refused_ids = []
        for headers in (
            {},
            {"X-CSRF-Token": "wrong"},
            {"X-CSRF-Token": csrf, "Origin": "https://evil.example"},
        ):
            r = _gql(client, "{ myApplications { id } }", **headers)
            assert r.status_code == 403 and _codes(r.json()) == ["FORBIDDEN"], (headers, r.text)
            refused_ids.append(r.headers["x-request-id"])

        async def refusals(engine: Any) -> list[Any]:
            async with engine.connect() as conn:
                q = select(AuditEvent.principal_kind, AuditEvent.subject, AuditEvent.status).where(
                    AuditEvent.request_id.in_(refused_ids)
                )
                return list((await conn.execute(q)).all())

        # each refusal is recorded against the person whose session it was, not as anonymous
        assert sorted(on_db(demo_env, refusals)) == [("person", user_id, 403)] * 3
        r = _gql(
            client,
            'mutation { createDemand(provider: "police", description: "x", purpose: "y") { id } }',
        )
        assert r.status_code == 403, r.text  # a mutation without the token changes nothing
        assert _gql(client, "{ myApplications { id } }", **{"X-CSRF-Token": csrf}).status_code == 200


def test_a_person_without_a_workflow_scope_gets_403_and_page_views_are_audited(
    demo_env: Any, served: str
) -> None:
    developer, _ = _person(demo_env, served, "hrss-developer")
    with closing(developer):
        developer_id = developer.get("/web/session").json()["user_id"]
    password = demo_env.credentials["users"]["demo-officer"]["password"]
    client, page = sign_in(served, "demo-officer", password, "/console")
    with closing(client):
        assert page.status_code == 403 and page.url.path == "/console"
        me = client.get("/web/session").json()
        r = _gql(client, "{ myApplications { id } }", **{"X-CSRF-Token": me["csrf"]})
        assert r.status_code == 403 and _codes(r.json()) == ["FORBIDDEN"]
        # each view of the page is an event (tier admin, operation page), the person as subject
        events = client.get("/audit/api/events", params={"tier": "admin", "limit": 200}).json()["events"]
        views = [e for e in events if e["operation_name"] == "page"]
        assert any(e["status"] == 200 and e["subject"] == developer_id for e in views), views[:3]
        assert any(e["status"] == 403 and e["subject"] == me["user_id"] for e in views), views[:3]


def test_a_bearer_token_still_works_without_a_csrf_token(demo_env: Any, served: str) -> None:
    hrss = demo_env.credentials["clients"]["hrss"]
    r = httpx.post(
        f"{served}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(hrss["client_id"], hrss["client_secret"]),
    )
    token = r.json()["access_token"]
    r = httpx.post(
        f"{served}/admin/graphql",
        json={"query": "{ myApplications { consumer } }"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200 and all(a["consumer"] == "hrss" for a in r.json()["data"]["myApplications"])
