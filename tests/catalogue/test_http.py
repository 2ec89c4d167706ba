"""The machine twin: POST /admin/catalogue/apply and GET /admin/catalogue/export behind the one
bearer check (catalog:write or admin; a steward only their own department), errors in the one
problem shape with every file error in `extensions.errors`, one audit event per call; and the
applied dataset served on both tiers with its policy (the README's walkthrough)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, text

from gateway.audit.models import AuditEvent
from tests.catalogue.conftest import EXAMPLE, catalogue_file, dataset_yaml, field_yaml, on_store

YAML = {"Content-Type": "application/yaml"}


@pytest.fixture(scope="module")
def http(store: Any) -> Iterator[Any]:
    from starlette.testclient import TestClient

    from gateway.app import create_app

    with TestClient(create_app(store.settings)) as c:
        yield c


def token(store: Any, scopes: list[str], department: str | None = None, client_id: str = "cat-ops") -> str:
    from gateway.identity.tokens import TokenService, load_signing_key

    svc = TokenService(
        load_signing_key(store.settings.var_dir / "keys" / "token-es256.pem"), "http://testserver"
    )
    issued, _ = svc.issue(client_id, department, scopes, subject=f"{client_id}-person")
    return issued


def call(http: Any, method: str, path: str, tok: str | None, body: str | None = None, **headers: str) -> Any:
    rid = f"cat-{uuid.uuid4().hex}"
    h = {"X-Request-ID": rid, **YAML, **headers, **({"Authorization": f"Bearer {tok}"} if tok else {})}
    r = http.request(method, path, headers=h, content=body.encode() if body is not None else None)
    r.rid = rid
    return r


def event(store: Any, rid: str) -> tuple[dict[str, Any], dict[str, Any]]:
    async def go(engine: Any) -> list[dict[str, Any]]:
        async with engine.connect() as conn:
            rows = await conn.execute(select(AuditEvent.__table__).where(AuditEvent.request_id == rid))
            return [dict(r._mapping) for r in rows]

    rows = on_store(store, go)
    assert len(rows) == 1, rows
    return rows[0], json.loads(rows[0]["detail"])["reads"][0]["identity"]


def test_admin_applies_and_exports(http: Any, store: Any) -> None:
    admin = token(store, ["admin"])
    body = EXAMPLE.read_text(encoding="utf-8")
    dry = call(http, "POST", "/admin/catalogue/apply?dry_run=1", admin, body)
    assert dry.status_code == 200, dry.text
    assert dry.json()["applied"] is False and dry.json()["changes"][1]["target"] == "public_toilet"
    row, d = event(store, dry.rid)
    assert row["operation_name"] == "catalogue.apply" and d["dry_run"] is True and d["applied"] is False

    done = call(http, "POST", "/admin/catalogue/apply", admin, body)
    assert done.status_code == 200 and done.json()["applied"] is True
    row, d = event(store, done.rid)
    assert (row["principal_kind"], row["principal_id"], row["status"]) == ("client", "cat-ops", 200)
    assert d["target"] == "xa_cgj" and d["added"] == ["public_toilet"] and len(d["sha256"]) == 64

    exported = call(http, "GET", "/admin/catalogue/export?department=xa_cgj", admin)
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("application/yaml")
    assert "resource_code: 610100-XA_CGJ-000001" in exported.text
    as_json = call(http, "GET", "/admin/catalogue/export", admin, Accept="application/json")
    assert [d["code"] for d in as_json.json()["datasets"]] == ["public_toilet"]
    row, d = event(store, as_json.rid)
    assert row["operation_name"] == "catalogue.export" and d["target"] == "*" and d["format"] == "json"

    # the export, applied as JSON, changes nothing
    again = call(
        http, "POST", "/admin/catalogue/apply", admin, as_json.text, **{"Content-Type": "application/json"}
    )
    assert again.status_code == 200 and again.json()["changes"] == []


def test_errors_come_in_the_one_problem_shape_with_lines(http: Any, store: Any) -> None:
    admin = token(store, ["admin"])
    bad = EXAMPLE.read_text(encoding="utf-8").replace("level: L3", "level: L5")
    r = call(http, "POST", "/admin/catalogue/apply", admin, bad)
    assert r.status_code == 400
    [err] = r.json()["errors"]
    assert err["extensions"]["code"] == "INVALID_CATALOGUE" and "2 error(s)" in err["message"]
    first = err["extensions"]["errors"][0]
    assert first["message"] == "level must be one of L1, L2, L3, L4 (got 'L5')"
    assert first["line"] == bad.split("\n").index("        level: L5") + 1 and first["column"] == 16
    row, d = event(store, r.rid)
    assert (
        row["status"] == 400 and d["errors"] == 2 and json.loads(row["error_codes"]) == ["invalid_catalogue"]
    )


def test_destructive_is_409_with_the_plan(http: Any, store: Any) -> None:
    admin = token(store, ["admin"])
    two = catalogue_file("hx", dataset_yaml("hx", "hx_a", 1, field_yaml("a") + field_yaml("b")))
    assert call(http, "POST", "/admin/catalogue/apply", admin, two).status_code == 200
    one = catalogue_file("hx", dataset_yaml("hx", "hx_a", 1, field_yaml("a")))
    r = call(http, "POST", "/admin/catalogue/apply", admin, one)
    assert r.status_code == 409
    ext = r.json()["errors"][0]["extensions"]
    assert ext["code"] == "DESTRUCTIVE_CHANGE" and ext["plan"]["destructive"] == 1
    assert call(http, "POST", "/admin/catalogue/apply?allow_destructive=1", admin, one).status_code == 200


def test_a_steward_acts_on_their_own_department_only(http: Any, store: Any) -> None:
    mine = catalogue_file("hs", dataset_yaml("hs", "hs_a", 1, field_yaml("a")))
    theirs = catalogue_file("ht", dataset_yaml("ht", "ht_a", 1, field_yaml("a")))
    steward = token(store, ["catalog:write"], department="hs", client_id="hs-steward")
    assert call(http, "POST", "/admin/catalogue/apply", steward, mine).status_code == 200
    r = call(http, "POST", "/admin/catalogue/apply", steward, theirs)
    assert r.status_code == 403 and r.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    row, _ = event(store, r.rid)
    assert row["status"] == 403 and row["principal_id"] == "hs-steward"

    exported = call(http, "GET", "/admin/catalogue/export", steward, Accept="application/json")
    assert {d["code"] for d in exported.json()["departments"]} == {"hs"}
    other = call(http, "GET", "/admin/catalogue/export?department=xa_cgj", steward)
    assert other.status_code == 403

    no_dept = token(store, ["catalog:write"])
    assert call(http, "POST", "/admin/catalogue/apply?dry_run=1", no_dept, mine).status_code == 403


def test_no_token_or_the_wrong_scope_is_refused_and_recorded(http: Any, store: Any) -> None:
    mine = catalogue_file("hu", dataset_yaml("hu", "hu_a", 1, field_yaml("a")))
    r = call(http, "POST", "/admin/catalogue/apply", None, mine)
    assert r.status_code == 401 and r.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    row, _ = event(store, r.rid)
    assert row["principal_kind"] == "anonymous" and row["status"] == 401
    reader = token(store, ["share:read"], department="hu", client_id="hu-reader")
    r = call(http, "POST", "/admin/catalogue/apply", reader, mine)
    assert r.status_code in (401, 403)  # a share token is not for the admin audience
    assert "hu_a" not in call(http, "GET", "/admin/catalogue/export", token(store, ["admin"])).text


def test_the_applied_dataset_is_served_on_both_tiers(http: Any, store: Any) -> None:
    admin = token(store, ["admin"])
    assert (
        call(http, "POST", "/admin/catalogue/apply", admin, EXAMPLE.read_text(encoding="utf-8")).status_code
        == 200
    )

    async def rows(engine: Any) -> None:
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM pool_public_toilet"))
            await conn.execute(
                text(
                    "INSERT INTO pool_public_toilet (toilet_code, name, district, opening_hours, accessible, "
                    "keeper_name, keeper_phone) VALUES ('T1', '钟楼公厕', '碑林区', '00:00-24:00', true, "
                    "'王小明', '13912345678')"
                )
            )

    on_store(store, rows)
    query = "{ publicToilet(first: 3) { edges { node { name district openingHours accessible } } } }"
    r = http.post("/open/graphql", json={"query": query})
    assert r.status_code == 200, r.text
    node = r.json()["data"]["publicToilet"]["edges"][0]["node"]
    assert node == {
        "name": "钟楼公厕",
        "district": "碑林区",
        "openingHours": "00:00-24:00",
        "accessible": True,
    }
    hidden = http.post(
        "/open/graphql", json={"query": "{ publicToilet(first: 1) { edges { node { keeperName } } } }"}
    )
    assert "errors" in hidden.json()  # open: none — not in the open schema

    share = token(store, ["share:read"], department="hrss", client_id="hrss-system")
    r = http.post(
        "/share/graphql",
        json={"query": "{ publicToilet(first: 1) { edges { node { name keeperName keeperPhone } } } }"},
        headers={"Authorization": f"Bearer {share}"},
    )
    assert r.status_code == 200, r.text
    node = r.json()["data"]["publicToilet"]["edges"][0]["node"]
    assert node["name"] == "钟楼公厕"
    assert node["keeperName"] != "王小明" and node["keeperName"].startswith("王")  # masked: L3 personal
    assert node["keeperPhone"] != "13912345678" and node["keeperPhone"].startswith("139")
