"""The steward's endpoints through a signed-in person's session (gateway.web.session.SessionOrBearer),
as the console's "目录与数据" section calls them: /admin/catalogue/apply|export, GET /admin/data/datasets
and POST /admin/data/{dataset}/load. A steward acts on their own department only, checked by the
server; a developer, or another department's steward, gets 403 in the one problem shape; unsafe
methods need the session's CSRF token. A demo store of the module's own: police's catalogue changes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from gateway.audit.models import AuditEvent
from tests.audit.signin import make_user, sign_in
from tests.catalogue.conftest import dataset_yaml, field_yaml, fresh_demo, on_store
from tests.conftest import BACKENDS
from tests.support import serve

DATASET = "steward_session_fines"
FIELDS = (
    field_yaml("ticket_no", nullable="false")
    + field_yaml("issued_on", "date")
    + field_yaml("amount", "integer")
)
NEW = dataset_yaml("police", DATASET, 999001, FIELDS, update_cycle="monthly")
CSV = "ticket_no,issued_on,amount\nT-1,2026-01-05,200\nT-2,2026-01-06,abc\nT-3,2026-01-07,50\n"


@pytest.fixture(scope="module", params=BACKENDS)
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    store, drop = fresh_demo(request.param, tmp_path_factory.mktemp(f"steward-{request.param}"))
    yield store
    drop()


@pytest.fixture(scope="module")
def served(env: Any) -> Iterator[str]:
    with serve(env) as base:
        yield base


def person(served: str, username: str, password: str) -> tuple[httpx.Client, str]:
    client, page = sign_in(served, username, password, "/console")
    assert page.status_code == 200 and page.url.path == "/console", (page.status_code, page.text[:300])
    return client, client.get("/web/session").json()["csrf"]


def demo_person(env: Any, served: str, username: str) -> tuple[httpx.Client, str]:
    return person(served, username, env.credentials["users"][username]["password"])


def refused(r: httpx.Response, status: int = 403, code: str = "FORBIDDEN") -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert list(body) == ["errors"] and len(body["errors"]) == 1, body
    assert body["errors"][0]["extensions"]["code"] == code and body["errors"][0]["message"], body


def events(env: Any, operation: str) -> list[dict[str, Any]]:
    async def go(engine: Any) -> list[dict[str, Any]]:
        async with engine.connect() as conn:
            table = AuditEvent.__table__
            rows = await conn.execute(select(table).where(table.c.operation_name == operation))
            return [dict(r._mapping) for r in rows]

    return on_store(env, go)


def yaml(**headers: str) -> dict[str, str]:
    return {"Content-Type": "application/yaml", **headers}


def test_a_steward_changes_and_loads_their_own_department_through_the_session(env: Any, served: str) -> None:
    client, csrf = demo_person(env, served, "police-steward")
    with closing(client):
        listed = client.get("/admin/data/datasets")
        assert listed.status_code == 200, listed.text
        assert listed.json()["department"] == "police"
        before = listed.json()["datasets"]
        assert before and {d["department"] for d in before} == {"police"}
        assert all("row_count" in d and "last_load_at" in d and "columns" in d for d in before)

        live = client.get("/admin/catalogue/export")
        assert live.status_code == 200 and live.headers["content-type"].startswith("application/yaml")
        assert "code: police" in live.text and "code: samr" not in live.text
        text = live.text + NEW

        no_csrf = client.post("/admin/catalogue/apply?dry_run=1", content=text, headers=yaml())
        refused(no_csrf)  # no CSRF token: refused, and recorded against the steward who sent it
        (event,) = [
            e for e in events(env, "catalogue.apply") if e["request_id"] == no_csrf.headers["x-request-id"]
        ]
        assert event["status"] == 403 and event["principal_id"] == "police-steward", event
        dry = client.post(
            "/admin/catalogue/apply?dry_run=1", content=text, headers=yaml(**{"X-CSRF-Token": csrf})
        )
        assert dry.status_code == 200, dry.text
        plan = dry.json()
        assert plan["applied"] is False and plan["departments"] == ["police"] and plan["destructive"] == 0
        assert [(c["action"], c["kind"], c["target"]) for c in plan["changes"]] == [
            ("add", "dataset", DATASET)
        ]

        bad = client.post(
            "/admin/catalogue/apply?dry_run=1&filename=../my%20police.yaml",
            content=text.replace("update_cycle: monthly", "update_cycle: fortnightly"),
            headers=yaml(**{"X-CSRF-Token": csrf}),
        )
        refused(bad, 400, "INVALID_CATALOGUE")
        (error,) = bad.json()["errors"][0]["extensions"]["errors"]
        assert error["file"] == "my police.yaml" and error["line"] > 1 and "monthly" in error["message"]

        done = client.post("/admin/catalogue/apply", content=text, headers=yaml(**{"X-CSRF-Token": csrf}))
        assert done.status_code == 200 and done.json()["applied"] is True, done.text
        applied = [e for e in events(env, "catalogue.apply") if e["status"] == 200]
        assert applied and (applied[-1]["principal_kind"], applied[-1]["principal_id"]) == (
            "user",
            "police-steward",
        )

        path = f"/admin/data/{DATASET}/load"
        send = {"Content-Type": "text/csv", "X-CSRF-Token": csrf}
        refused(client.post(path, content=CSV.encode(), headers={"Content-Type": "text/csv"}))  # no CSRF
        all_or_nothing = client.post(path, content=CSV.encode(), headers=send)
        refused(all_or_nothing, 422, "ROWS_REJECTED")
        ext = all_or_nothing.json()["errors"][0]["extensions"]
        assert ext["rejected"] == 1 and ext["rejects_complete"] is True
        assert [(r["row"], r["column"]) for r in ext["rejects"]] == [(3, "amount")]

        loaded = client.post(path, params={"max_rejects": "1"}, content=CSV.encode(), headers=send)
        assert loaded.status_code == 200, loaded.text
        summary = loaded.json()
        assert (summary["read"], summary["loaded"], summary["rejected"], summary["row_count"]) == (3, 2, 1, 2)
        assert [r["row"] for r in summary["rejects"]] == [3] and summary["rejects_file"] is None

        mine = {d["code"]: d for d in client.get("/admin/data/datasets").json()["datasets"]}
        assert mine[DATASET]["row_count"] == 2 and mine[DATASET]["last_load_at"]
        assert mine[DATASET]["columns"] == ["ticket_no", "issued_on", "amount"]
    loads = [e for e in events(env, "data.load") if e["status"] == 200]
    assert loads and (loads[-1]["principal_kind"], loads[-1]["principal_id"]) == ("user", "police-steward")


def test_a_steward_may_not_reach_another_department(env: Any, served: str) -> None:
    client, csrf = demo_person(env, served, "police-steward")
    with closing(client):
        samr = next(d["code"] for d in _all_datasets(env) if d["department"] == "samr")
        refused(client.get("/admin/data/datasets", params={"department": "samr"}))
        refused(client.get("/admin/catalogue/export", params={"department": "samr"}))
        other = "departments:\n  - code: samr\n    name: 市场监管局\ndatasets: []\n"
        refused(
            client.post(
                "/admin/catalogue/apply?dry_run=1", content=other, headers=yaml(**{"X-CSRF-Token": csrf})
            )
        )
        r = client.post(
            f"/admin/data/{samr}/load",
            content=b"credit_code\n",
            headers={"Content-Type": "text/csv", "X-CSRF-Token": csrf},
        )
        refused(r)
        assert "samr" in r.json()["errors"][0]["message"]

    # a steward of samr may not load into police's dataset, nor see police's catalogue
    samr_steward = make_user(env, ["steward"], "samr")
    client, csrf = person(served, *samr_steward)
    with closing(client):
        listed = client.get("/admin/data/datasets").json()
        assert listed["department"] == "samr" and {d["department"] for d in listed["datasets"]} == {"samr"}
        refused(client.get("/admin/catalogue/export", params={"department": "police"}))
        refused(
            client.post(
                f"/admin/data/{DATASET}/load",
                content=CSV.encode(),
                headers={"Content-Type": "text/csv", "X-CSRF-Token": csrf},
            )
        )


def test_a_developer_gets_403_from_every_steward_endpoint(env: Any, served: str) -> None:
    client, csrf = demo_person(env, served, "hrss-developer")
    with closing(client):
        assert "catalog:write" not in client.get("/web/session").json()["scopes"]
        headers = {"X-CSRF-Token": csrf}
        refused(client.get("/admin/data/datasets"))
        refused(client.get("/admin/catalogue/export"))
        refused(
            client.post("/admin/catalogue/apply?dry_run=1", content="datasets: []\n", headers=yaml(**headers))
        )
        refused(
            client.post(
                "/admin/data/population/load", content=b"x\n", headers={"Content-Type": "text/csv", **headers}
            )
        )
    assert httpx.get(f"{served}/admin/data/datasets").status_code == 401  # no session, no token
    schema = httpx.get(f"{served}/console/static/catalogue.schema.json")  # the section's link for editors
    assert schema.status_code == 200 and "datasets" in schema.json()["properties"]


def _all_datasets(env: Any) -> list[dict[str, Any]]:
    from catalogue.service import load_catalogue

    async def go(engine: Any) -> list[dict[str, Any]]:
        cat = await load_catalogue(engine)
        return [{"code": d.code, "department": d.department} for d in cat.datasets.values()]

    return on_store(env, go)
