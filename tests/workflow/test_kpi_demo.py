"""The KPIs on the demo store match a hand computation from the demo's known content, through
GET /kpi.json and /kpi.csv (public: overall; with a bearer: per department), `shuqiao kpi`, the
admin API's `kpis`, and daily snapshots (the trend). SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.workflow.kpi_support import admin_actor, cli, cli_json, identity_events, module_env, on_db, run_gql

env = module_env("kpi")

# ---- the hand computation, from the demo's known content (DESIGN.md section 5, gateway/demo/) ----
# Six datasets, all published and loaded: samr enterprise_registration, tax tax_credit_rating,
# eco discharge_permit and air_quality_daily, hrss social_insurance, police population.
# The demo's demands: hrss → police (open), samr → tax (will_provide). Its share-tier applications
# (gateway.demo.principals.seed_applications): three to police (hrss's pending, samr's rejected,
# tax's returned) and one to hrss, approved (tax on social_insurance; its grant came from the
# application, so it is not counted twice). Grants made outside the workflow: hrss on police's
# population (an administrator's: one approved share demand); demo-bank's is on the open tier.
# Quality reports: hrss on samr's enterprise_registration, 20 days old and open (overdue);
# samr on tax's tax_credit_rating, fixed an hour after opening.
#
# 编目率: 6 published / (6 datasets + 1 promised demand, tax's) → tax 1/2, every other 1/1
# 归集率: 6 collected / 6 published
# 共享率: met 2 (the approval + the administrator's grant) / 7 (2 demands + 4 applications + 1 grant)
#   → police 1/5 (open demand, 3 applications, the grant), hrss 1/1, tax 0/1
# 开放率: fields in the open view / fields, of the 6 collected datasets:
#   enterprise_registration 11/13 (not legal_rep_id_number L4, contact_phone L3 personal)
#   tax_credit_rating 6/7 (not tax_paid_amount L3); discharge_permit 11/11; air_quality_daily 8/8
#   social_insurance 0/8 and population 0/9 (不予开放)
#   → 36/56; samr 11/13, tax 6/7, eco 19/19, hrss 0/8, police 0/9
# 及时整改率: 1 fixed in time / 2 due → samr 0/1, tax 1/1
HAND = {
    "cataloguing": ((6, 7), {"samr": (1, 1), "tax": (1, 2), "eco": (2, 2), "hrss": (1, 1), "police": (1, 1)}),
    "collection": ((6, 6), {"samr": (1, 1), "tax": (1, 1), "eco": (2, 2), "hrss": (1, 1), "police": (1, 1)}),
    "sharing": ((2, 7), {"samr": (0, 0), "tax": (0, 1), "eco": (0, 0), "hrss": (1, 1), "police": (1, 5)}),
    "opening": (
        (36, 56),
        {"samr": (11, 13), "tax": (6, 7), "eco": (19, 19), "hrss": (0, 8), "police": (0, 9)},
    ),
    "quality_timeliness": (
        (1, 2),
        {"samr": (0, 1), "tax": (1, 1), "eco": (0, 0), "hrss": (0, 0), "police": (0, 0)},
    ),
}


@pytest.fixture(scope="module")
def client(env: Any) -> Iterator[TestClient]:
    from gateway.app import create_app

    with TestClient(create_app(env.settings)) as c:
        yield c


@pytest.fixture(scope="module")
def token(client: TestClient, env: Any) -> str:
    c = env.credentials["clients"]["hrss"]
    r = client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(c["client_id"], c["client_secret"])
    )
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def pair(fig: dict[str, Any]) -> tuple[int, int]:
    return fig["numerator"], fig["denominator"]


def test_the_kpis_match_the_hand_computation(client: TestClient, token: str) -> None:
    r = client.get("/kpi.json", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    doc = r.json()
    got = {k["key"]: (pair(k), {d: pair(f) for d, f in k["departments"].items()}) for k in doc["kpis"]}
    assert got == HAND
    by_key = {k["key"]: k for k in doc["kpis"]}
    (met, demanded), _ = HAND["sharing"]
    assert by_key["sharing"]["value"] == pytest.approx(met / demanded) and by_key["sharing"]["met"] is False
    assert by_key["opening"]["met"] is True and by_key["opening"]["target"] == 0.25
    assert by_key["cataloguing"]["name"] == "编目率" and by_key["cataloguing"]["definition"]
    assert by_key["sharing"]["departments"]["eco"]["value"] is None  # nothing counted: no value
    assert doc["departments"]["police"] == "省公安厅"


def test_the_public_twin_has_the_overall_figures_only(client: TestClient) -> None:
    r = client.get("/kpi.json")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    doc = r.json()
    assert {k["key"]: pair(k) for k in doc["kpis"]} == {key: overall for key, (overall, _) in HAND.items()}
    assert "departments" not in doc and all("departments" not in k for k in doc["kpis"])


def test_one_department_needs_a_token(client: TestClient, token: str) -> None:
    r = client.get("/kpi.json?department=tax")
    assert r.status_code == 401 and r.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert r.headers["www-authenticate"].startswith('Bearer realm="shuqiao-kpi"')
    r = client.get("/kpi.json?department=tax", headers={"Authorization": f"Bearer {token}"})
    doc = r.json()
    assert doc["scope"] == "tax"
    assert {k["key"]: pair(k) for k in doc["kpis"]} == {key: depts["tax"] for key, (_, depts) in HAND.items()}
    r = client.get("/kpi.json?department=nosuch", headers={"Authorization": f"Bearer {token}"})
    assert (
        r.status_code == 400
        and "departments: eco, hrss, police, samr, tax" in r.json()["errors"][0]["message"]
    )


def test_a_bad_token_is_refused_not_served_the_public_view(client: TestClient) -> None:
    r = client.get("/kpi.json", headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 401 and "invalid_token" in r.headers["www-authenticate"]


def test_a_bad_date_is_a_problem_document(client: TestClient) -> None:
    r = client.get("/kpi.csv?since=yesterday")
    assert r.status_code == 400 and r.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


def test_the_csv_twin_has_the_same_figures(client: TestClient, token: str) -> None:
    r = client.get("/kpi.csv", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    live = {
        (row["kpi"], row["scope"]): (int(row["numerator"]), int(row["denominator"]))
        for row in rows
        if row["source"] == "live"
    }
    for key, (overall, depts) in HAND.items():
        assert live[(key, "*")] == overall
        assert all(live[(key, d)] == v for d, v in depts.items())
    public = list(csv.DictReader(io.StringIO(client.get("/kpi.csv").text)))
    assert {row["scope"] for row in public} == {"*"}


def test_the_cli_and_the_admin_api_say_the_same(env: Any) -> None:
    doc = cli_json(env, "kpi")
    assert {
        k["key"]: (pair(k), {d: pair(f) for d, f in k["departments"].items()}) for k in doc["kpis"]
    } == HAND
    r = cli(env, "kpi", "--department", "tax")
    assert r.exit_code == 0 and "编目率" in r.stdout and "1/2" in r.stdout
    r = cli(env, "kpi", "--csv")
    assert (
        r.exit_code == 0
        and r.stdout.splitlines()[0] == "as_of,source,scope,kpi,name,numerator,denominator,value,target,met"
    )
    figure = "figure { numerator denominator }"
    query = f"{{ kpis {{ scope kpis {{ key {figure} departments {{ department {figure} }} }} }} }}"
    result, _ = run_gql(env, query, admin_actor("demo-eco", "eco"))
    assert result.errors is None
    got = {
        k["key"]: (
            (k["figure"]["numerator"], k["figure"]["denominator"]),
            {
                d["department"]: (d["figure"]["numerator"], d["figure"]["denominator"])
                for d in k["departments"]
            },
        )
        for k in result.data["kpis"]["kpis"]
    }
    assert got == HAND
    result, _ = run_gql(env, '{ kpis(since: "soon") { scope } }', admin_actor("demo-eco", "eco"))
    assert result.errors[0].extensions["code"] == "BAD_USER_INPUT"


def test_snapshots_are_the_trend_one_per_day(env: Any, client: TestClient) -> None:
    from gateway.workflow.kpi import KpiSnapshot

    first = cli_json(env, "kpi", "snapshot")
    again = cli_json(env, "kpi", "snapshot")  # the same day: replaces, never a second point
    assert first["day"] == again["day"]
    overall, depts = HAND["sharing"]
    assert first["figures"]["sharing"]["*"] == list(overall)
    assert first["figures"]["sharing"]["police"] == list(depts["police"])

    async def count(engine: Any) -> int:
        from sqlmodel import func, select
        from sqlmodel.ext.asyncio.session import AsyncSession

        async with AsyncSession(engine) as session:
            return (await session.exec(select(func.count()).select_from(KpiSnapshot))).one()

    assert on_db(env, count) == 1
    doc = client.get("/kpi.json").json()
    sharing = next(k for k in doc["kpis"] if k["key"] == "sharing")
    assert [(p["day"], pair(p)) for p in sharing["trend"]] == [(first["day"], overall)]
    events = identity_events(env, "kpi.snapshot")
    assert len(events) == 2 and events[-1]["principal_kind"] == "operator"
    assert events[-1]["identity"]["target"] == f"kpi_snapshot:{first['day']}"
    # a trend window that ends before the snapshot has no points
    doc = client.get("/kpi.json?since=2020-01-01&until=2020-12-31").json()
    assert all(k["trend"] == [] for k in doc["kpis"])


def test_the_background_task_takes_the_days_snapshot_only_when_missing(env: Any) -> None:
    from gateway.workflow.kpi import KpiSnapshotTask, snapshot_if_missing

    async def go(engine: Any) -> tuple[int, Any]:
        task = KpiSnapshotTask(engine)
        await task.step()  # today's exists (the test above, or this one's first step)
        await task.step()
        return task.taken, await snapshot_if_missing(engine)

    taken, again = on_db(env, go)
    assert taken <= 1 and again is None


def test_the_background_task_is_off_by_default_and_on_with_the_setting(
    env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.app import create_app
    from gateway.settings import Settings
    from gateway.workflow.kpi import KpiSnapshotTask

    assert Settings().kpi_snapshots is False
    monkeypatch.setenv("SHUQIAO_KPI_SNAPSHOTS", "on")
    assert Settings.from_env().kpi_snapshots is True
    app = create_app(env.settings.with_(kpi_snapshots=True))
    with TestClient(app):
        assert any(isinstance(t, KpiSnapshotTask) for t in app.state.audit_tasks)


def test_the_demo_seeds_once(env: Any) -> None:
    from gateway.workflow.demo import seed_workflow_demo

    assert on_db(env, seed_workflow_demo) == {"demands": 0, "quality_reports": 0}
    states = sorted(d["state"] for d in cli_json(env, "demand", "list"))
    assert states == ["open", "will_provide"]
    reports = {r["dataset"]: r["timeliness"] for r in cli_json(env, "quality", "list")}
    assert reports == {"enterprise_registration": "overdue", "tax_credit_rating": "fixed_in_time"}


def test_the_page_shows_the_public_figures_and_the_trend(env: Any, client: TestClient) -> None:
    from datetime import UTC, datetime, timedelta

    from gateway.workflow.kpi import take_snapshot

    on_db(env, lambda e: take_snapshot(e, now=datetime.now(UTC) - timedelta(days=1)))
    on_db(env, take_snapshot)
    r = client.get("/kpi")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    page = r.text
    assert page.index("编目率") < page.index("归集率") < page.index("问题数据及时整改率")
    assert "85.7%" in page and "6 / 7" in page and "<script" not in page
    assert page.count('class="kpi-trend"') == 5  # two days of snapshots: a line per KPI
    assert "samr" not in page  # per-department figures are not on the public page


def test_anonymous_callers_are_rate_limited_like_the_open_tier(env: Any, token: str) -> None:
    from gateway.app import create_app

    with TestClient(create_app(env.settings.with_(anonymous_rate="2/minute"))) as limited:
        statuses = [limited.get(path).status_code for path in ("/kpi.json", "/kpi.csv", "/kpi")]
        assert statuses == [200, 200, 429]
        r = limited.get("/kpi.json")
        assert r.status_code == 429 and r.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        assert "retry-after" in r.headers
        # a department's token is not an anonymous caller
        assert limited.get("/kpi.json", headers={"Authorization": f"Bearer {token}"}).status_code == 200
