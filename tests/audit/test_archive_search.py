"""Searching the archives retention left, through the officer JSON API (GET /audit/api/archive/events)
and GraphQL (`archivedEvents`): 401 without a token, 403 without audit:read; an empty archive
directory answers an empty page; after a prune the pruned events are gone from the live search and
found in the archive, with the live search's filters, newest first, paged (before/next_before and
first/after alike), each naming its archive file; bad input is BAD_USER_INPUT; every call is itself
an audit event. SQLite and PostgreSQL, on a demo gateway of this module's own (pruning would
otherwise take the session's shared chain)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.audit.checkpoints import write_checkpoint
from gateway.audit.retention import archive_and_prune, archive_dir
from gateway.crypto.signing import open_signing_store
from tests.audit.chain_helpers import run_with_engine as on_db
from tests.audit.test_officer_api import officer  # noqa: F401  (the module fixture)
from tests.conftest import BACKENDS, DemoEnv, fresh_demo_env, gql

ARCHIVED = """
query Archived($f: EventFilter, $first: Int, $after: String) {
  archivedEvents(filter: $f, first: $first, after: $after) {
    totalCount totalExact archives missing
    pageInfo { hasNextPage endCursor }
    edges { cursor node { seq requestId tier department archive fields { dataset field action } } }
  }
}"""
POPULATION = "{ population(first: 1) { edges { node { idNumber name } } } }"


@pytest.fixture(scope="module", params=BACKENDS)
def demo_env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoEnv]:
    yield from fresh_demo_env(request.param, tmp_path_factory, "archive-search")


@pytest.fixture(scope="module")
def client(demo_env: DemoEnv) -> Iterator[Any]:
    from starlette.testclient import TestClient

    from gateway.app import create_app

    with TestClient(create_app(demo_env.settings)) as c:
        yield c


@pytest.fixture(scope="module")
def hrss(client: Any, demo_env: DemoEnv) -> str:
    """A share:read token: signed in, but without audit:read."""
    c = demo_env.credentials["clients"]["hrss"]
    r = client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(c["client_id"], c["client_secret"])
    )
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def archive_api(client: Any, token: str | None, **params: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get("/audit/api/archive/events", params=params, headers=headers)


def archived(client: Any, token: str | None, variables: dict[str, Any] | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {"query": ARCHIVED, "variables": variables or {}}
    return client.post("/audit/graphql", json=body, headers=headers)


def connection(r: Any) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    assert "errors" not in r.json(), r.json()
    return dict(r.json()["data"]["archivedEvents"])


def test_401_and_403_before_any_archive_is_read(client: Any, hrss: str) -> None:
    for token, status, code in (
        (None, 401, "UNAUTHENTICATED"),
        ("not-a-token", 401, "UNAUTHENTICATED"),
        (hrss, 403, "FORBIDDEN"),
    ):
        r = archive_api(client, token)
        assert r.status_code == status and "events" not in r.json(), r.text
        r = archived(client, token)
        assert r.status_code == status, r.text
        assert r.json()["errors"][0]["extensions"]["code"] == code and "data" not in r.json()


def test_an_empty_archive_directory_is_an_empty_page(client: Any, officer: str) -> None:  # noqa: F811
    doc = archive_api(client, officer).json()
    assert (doc["events"], doc["total"], doc["next_before"], doc["archives"]) == ([], 0, None, [])
    page = connection(archived(client, officer))
    assert (page["totalCount"], page["totalExact"], page["archives"], page["edges"]) == (0, True, [], [])
    assert page["pageInfo"] == {"hasNextPage": False, "endCursor": None}


def test_pruned_events_are_found_in_the_archive_with_the_same_filters_and_paging(
    client: Any,
    demo_env: DemoEnv,
    hrss: str,
    officer: str,  # noqa: F811
) -> None:
    auth = {"Authorization": f"Bearer {officer}"}
    start = datetime.now(UTC).isoformat()
    tag = uuid.uuid4().hex[:8]
    for i in range(5):
        r = gql(
            client,
            "open",
            "{ enterpriseRegistration(first: 1) { totalCount } }",
            headers={"X-Request-ID": f"arch-open-{tag}-{i}"},
        )
        assert r.status_code == 200, r.text
    r = gql(client, "share", POPULATION, token=hrss, headers={"X-Request-ID": f"arch-hrss-{tag}"})
    assert r.status_code == 200, r.text
    store = open_signing_store(demo_env.settings.var_dir)
    directory = archive_dir(demo_env.settings.var_dir)

    async def prune(engine: Any) -> str:
        checkpoint = await write_checkpoint(engine, store)
        assert checkpoint is not None
        path = await archive_and_prune(engine, store, directory, through_seq=checkpoint.seq)
        assert path is not None
        return path.name

    name = on_db(demo_env.settings.database_url, prune)

    # gone from the live chain, found in the archive, newest first, each naming its file
    live = client.get("/audit/api/events", params={"from": start, "tier": "open"}, headers=auth).json()
    assert live["events"] == [], live
    doc = archive_api(client, officer, **{"from": start, "tier": "open"}).json()
    assert [e["request_id"] for e in doc["events"]] == [f"arch-open-{tag}-{i}" for i in (4, 3, 2, 1, 0)]
    assert {e["archive"] for e in doc["events"]} == {name} and doc["archives"] == [name]
    assert (doc["total"], doc["next_before"]) == (5, None)
    seqs = [e["seq"] for e in doc["events"]]

    # the live search's filters: department and field (population.idNumber), decision
    share = archive_api(
        client, officer, **{"from": start, "department": "hrss", "field": "population.idNumber"}
    ).json()
    assert [e["request_id"] for e in share["events"]] == [f"arch-hrss-{tag}"]
    by_decision = archive_api(
        client, officer, **{"from": start, "dataset": "population", "decision": "allow"}
    ).json()
    assert [e["request_id"] for e in by_decision["events"]] == [f"arch-hrss-{tag}"]  # name is allowed
    assert archive_api(client, officer, **{"from": start, "department": "samr"}).json()["events"] == []

    # paging: limit/before → next_before (JSON), first/after → endCursor (GraphQL), the same seqs
    f = {"from": start, "tier": "open"}
    pages, totals, before = [], [], None
    while True:
        page = archive_api(client, officer, **f, limit=2, **({"before": before} if before else {})).json()
        pages.append([e["seq"] for e in page["events"]])
        totals.append(page["total"])
        before = page["next_before"]
        if before is None:
            break
    assert pages == [seqs[:2], seqs[2:4], seqs[4:]]
    assert totals == [len(seqs)] * 3  # every match, on every page, as the live search counts
    gpages, after = [], None
    while True:
        conn = connection(archived(client, officer, {"f": f, "first": 2, "after": after}))
        assert conn["totalCount"] == totals[len(gpages)] and conn["totalExact"] is True
        assert conn["archives"] == [name] and conn["missing"] == []
        gpages.append([e["node"]["seq"] for e in conn["edges"]])
        assert all(e["node"]["archive"] == name and e["node"]["tier"] == "open" for e in conn["edges"])
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    assert gpages == pages
    hrss_node = connection(archived(client, officer, {"f": {"from": start, "department": "hrss"}}))
    node = hrss_node["edges"][0]["node"]
    assert node["requestId"] == f"arch-hrss-{tag}" and node["department"] == "hrss"
    assert ("population", "id_number") in {(x["dataset"], x["field"]) for x in node["fields"]}

    # bad input, in the same words: 400 BAD_USER_INPUT (JSON), extensions.code (GraphQL)
    bad = archive_api(client, officer, decision="maybe")
    assert bad.status_code == 400 and bad.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    for variables in ({"f": {"decision": "maybe"}}, {"first": 0}, {"first": 501}, {"after": "nope"}):
        r = archived(client, officer, variables)
        assert r.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", (variables, r.text)

    # every call is itself an audit event (tier audit), with the archived rows handed out
    ops = client.get(
        "/audit/api/events", params={"from": start, "tier": "audit", "limit": 200}, headers=auth
    ).json()["events"]
    mine = [e for e in ops if e["operation_name"] == "graphql:Archived" and e["status"] == 200]
    assert mine and all(e["department"] == "police" for e in mine)
    assert any(e["reads"] == [{"dataset": "audit_event", "rows": 2}] for e in mine)
    json_calls = [e for e in ops if e["operation_name"] == "archive-search"]
    assert len(json_calls) >= 8 and any(e["status"] == 400 for e in json_calls)


def test_without_an_archive_directory_both_twins_say_not_found(db: str, tmp_path: Path) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.testclient import TestClient

    from gateway.access_log import LoggingAccessLog
    from gateway.audit.http import AuditAPI
    from gateway.db import create_engine

    someone = SimpleNamespace(client_id="officer", subject=None, department="police")

    async def bearer(request: Any) -> Any:
        return someone

    engine = create_engine(db)
    api = AuditAPI(engine, LoggingAccessLog(), bearer, None, 1000, archives=None)
    with TestClient(Starlette(routes=[Mount("/audit", routes=api.routes())])) as c:
        r = c.get("/audit/api/archive/events")
        assert r.status_code == 404 and r.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        r = c.post("/audit/graphql", json={"query": "{ archivedEvents { totalCount } }"})
        assert r.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND", r.text
    asyncio.run(engine.dispose())
