"""Data-quality reports (问题数据) end to end on a fresh demo store: a protected record key kept
only as its blind index, deadlines by the working-day calendar, provider-only resolution, who
sees what, the overdue filter, provisional deadlines recomputed, and the timeliness KPI moving.
SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from tests.workflow.kpi_support import admin_actor, cli, cli_json, identity_events, module_env, on_db, run_gql

env = module_env("quality")

REPORT = """mutation($dataset: String!, $record: String!, $field: String) {
  reportQuality(dataset: $dataset, record: $record, field: $field, description: "登记状态与实际不符") {
    id reporter provider dataset keyField recordRef field state deadline timeliness
  }
}"""
RESOLVE = """mutation($id: Int!, $resolution: String!) {
  resolveQuality(id: $id, resolution: $resolution, reason: "已核实更正") { id state timeliness resolvedAt }
}"""


def code(result: Any) -> str | None:
    return result.errors[0].extensions["code"] if result.errors else None


def first_person(env: Any) -> tuple[str, str]:
    """The clear ID number of population's first row and that row's stored blind index."""
    from sqlalchemy import select

    from catalogue.pool import ROW_ID, pool_table
    from catalogue.protection import load_keyring
    from catalogue.service import load_catalogue
    from gateway.secrets import load_master_key

    async def go(engine: Any) -> tuple[str, str]:
        catalogue = await load_catalogue(engine)
        spec = catalogue.datasets["population"]
        keyring = await load_keyring(
            engine, load_master_key(env.settings.master_key_file), catalogue.published()
        )
        table = pool_table(spec)
        async with engine.connect() as conn:
            sealed, blind = (
                await conn.execute(
                    select(table.c.id_number, table.c.id_number__bidx).order_by(table.c[ROW_ID]).limit(1)
                )
            ).one()
        return keyring.cipher("population").open("id_number", sealed), blind

    return on_db(env, go)


def test_a_protected_key_is_kept_only_as_its_blind_index(env: Any) -> None:
    id_number, blind = first_person(env)
    doc = cli_json(
        env,
        "quality",
        "report",
        "--reporter",
        "hrss",
        "--dataset",
        "population",
        "--record",
        id_number,
        "--field",
        "household_address",
        "--description",
        "户籍地址已迁出",
    )
    assert (
        doc["key_field"] == "id_number" and doc["record_ref"] == f"bidx:{blind}"
    )  # the provider finds the row
    assert doc["provider"] == "police" and doc["state"] == "open" and doc["timeliness"] == "open"
    from policies.workdays import add_working_days

    opened = datetime.fromisoformat(doc["opened_at"])
    assert datetime.fromisoformat(doc["deadline"]) == add_working_days(opened).due
    events = [
        e for e in identity_events(env, "quality.report") if e["identity"]["target"] == f"quality:{doc['id']}"
    ]
    assert len(events) == 1 and events[0]["consumer"] == "hrss"
    assert id_number not in json.dumps(doc) and id_number not in str(events)
    listed = cli(env, "quality", "list", "--department", "police", "--role", "addressed")
    assert listed.exit_code == 0 and id_number not in listed.stdout and "bidx:" in listed.stdout


def test_an_id_number_in_the_text_is_refused(env: Any) -> None:
    id_number, _ = first_person(env)
    r = cli(
        env,
        "quality",
        "report",
        "--reporter",
        "hrss",
        "--dataset",
        "population",
        "--record",
        id_number,
        "--description",
        f"应为 {id_number} 的户籍",
    )
    assert r.exit_code == 2 and "carries an ID number" in r.stderr and id_number not in r.stderr
    r = cli(
        env,
        "quality",
        "report",
        "--reporter",
        "hrss",
        "--dataset",
        "enterprise_registration",
        "--key-field",
        "name",
        "--record",
        id_number,
        "--description",
        "x",
    )
    assert r.exit_code == 2 and "carries an ID number" in r.stderr


def test_refusals_say_what_is_valid(env: Any) -> None:
    base = ["quality", "report", "--reporter", "hrss", "--record", "X", "--description", "d"]
    r = cli(env, *base, "--dataset", "nosuch")
    assert r.exit_code == 2 and "published: air_quality_daily, discharge_permit" in r.stderr
    r = cli(env, *base, "--dataset", "tax_credit_rating", "--field", "ratingYear")
    assert r.exit_code == 2 and "fields: " in r.stderr and "rating_year" in r.stderr
    r = cli(env, *base, "--dataset", "air_quality_daily")  # no entity key: name one
    assert r.exit_code == 2 and "--key-field" in r.stderr
    r = cli(env, "quality", "resolve", "1", "--fixed", "a", "--disputed", "b")
    assert r.exit_code == 2 and "exactly one of" in r.stderr


def test_only_the_providers_steward_resolves_and_only_once(env: Any) -> None:
    credit_code = cli_json(env, "quality", "list", "--role", "all")[0][
        "record_ref"
    ]  # the demo's, a credit code
    hrss = admin_actor("demo-hrss", "hrss")
    result, _ = run_gql(
        env, REPORT, hrss, {"dataset": "enterprise_registration", "record": credit_code, "field": "status"}
    )
    assert result.errors is None
    report = result.data["reportQuality"]
    assert (report["reporter"], report["provider"], report["recordRef"]) == ("hrss", "samr", credit_code)
    for who in (hrss, admin_actor("demo-samr", "samr"), admin_actor("steward-tax", "tax", approve=True)):
        assert code(run_gql(env, RESOLVE, who, {"id": report["id"], "resolution": "fixed"})[0]) == "FORBIDDEN"
    steward = admin_actor("steward-samr", "samr", approve=True)
    result, _ = run_gql(env, RESOLVE, steward, {"id": report["id"], "resolution": "wontfix"})
    assert code(result) == "BAD_USER_INPUT"
    result, _ = run_gql(env, RESOLVE, steward, {"id": report["id"], "resolution": "fixed"})
    assert result.errors is None and result.data["resolveQuality"]["timeliness"] == "fixed_in_time"
    result, _ = run_gql(env, RESOLVE, steward, {"id": report["id"], "resolution": "disputed"})
    assert code(result) == "BAD_USER_INPUT" and "already fixed" in result.errors[0].message
    listing = "query($role: String!) { qualityReports(role: $role) { id reporter provider } }"
    assert report["id"] in [
        r["id"] for r in run_gql(env, listing, hrss, {"role": "mine"})[0].data["qualityReports"]
    ]
    seen = run_gql(env, listing, admin_actor("demo-samr", "samr"), {"role": "addressed"})[0].data[
        "qualityReports"
    ]
    assert report["id"] in [r["id"] for r in seen] and {r["provider"] for r in seen} == {"samr"}
    eco = run_gql(env, listing, admin_actor("demo-eco", "eco"), {"role": "all"})[0].data["qualityReports"]
    assert eco == []
    one = "query($id: Int!) { qualityReport(id: $id) { id } }"
    assert code(run_gql(env, one, admin_actor("demo-eco", "eco"), {"id": report["id"]})[0]) == "NOT_FOUND"
    events = [
        e for e in identity_events(env, "quality.%") if e["identity"]["target"] == f"quality:{report['id']}"
    ]
    assert [(e["operation_name"], e["principal_id"]) for e in events] == [
        ("quality.report", "demo-hrss"),
        ("quality.resolve", "steward-samr"),
    ]


def test_the_overdue_filter_and_the_timeliness_kpi(env: Any) -> None:
    from gateway.workflow.kpi import kpi_report

    def timeliness() -> tuple[int, int]:
        k = next(k for k in on_db(env, kpi_report).kpis if k.definition.key == "quality_timeliness")
        return k.overall.numerator, k.overall.denominator

    overdue = cli_json(env, "quality", "list", "--state", "overdue")
    assert [r["dataset"] for r in overdue] == ["enterprise_registration"]  # the demo's overdue report
    assert overdue[0]["timeliness"] == "overdue"
    before = timeliness()
    late = cli_json(env, "quality", "resolve", str(overdue[0]["id"]), "--fixed", "已更正住所")
    assert late["timeliness"] == "fixed_late"
    assert timeliness() == before  # still counted, still not in time
    assert cli_json(env, "quality", "list", "--state", "overdue") == []


def test_a_provisional_deadline_is_recomputed_once_the_calendar_knows_the_year(env: Any) -> None:
    from sqlmodel.ext.asyncio.session import AsyncSession

    from gateway.workflow.quality import QualityReport, refresh_deadlines
    from policies.workdays import add_working_days

    opened = datetime(2025, 9, 30, 9, 0, tzinfo=UTC)  # before 国庆: due Oct 11, not Oct 3 (Mon-Fri)

    async def go(engine: Any) -> tuple[int, datetime, bool]:
        async with AsyncSession(engine) as session:
            row = QualityReport(
                reporter="hrss",
                provider="samr",
                dataset_code="enterprise_registration",
                key_field="credit_code",
                record_ref="X",
                description="d",
                opened_at=opened,
                deadline=datetime(2025, 10, 2, 16, tzinfo=UTC),
                deadline_provisional=True,
            )
            session.add(row)
            await session.commit()
            await session.refresh(row)
            report_id = row.id
        changed = await refresh_deadlines(engine)
        async with AsyncSession(engine) as session:
            row = await session.get(QualityReport, report_id)
            return changed, row.deadline, row.deadline_provisional

    changed, deadline, provisional = on_db(env, go)
    assert changed == 1 and provisional is False
    assert deadline.replace(tzinfo=deadline.tzinfo or UTC) == add_working_days(opened).due


def test_two_stewards_at_once_cannot_both_resolve(env: Any) -> None:
    """The second writer read the report before the first resolved it: its write is refused."""
    import pytest
    from sqlmodel.ext.asyncio.session import AsyncSession

    from gateway.workflow.common import WorkflowConflict, operator_actor, save_step
    from gateway.workflow.quality import QualityReport, report_quality, resolve_quality

    actor = operator_actor("cli:test")

    async def go(engine: Any) -> str:
        row = await report_quality(
            engine, actor, reporter="eco", dataset="enterprise_registration", record="X", description="d"
        )
        async with AsyncSession(engine) as late:
            stale = await late.get(QualityReport, row.id)
            seen = stale.history
            await resolve_quality(
                engine, actor, row.id, resolution="fixed", reason="first"
            )  # the other steward
            stale.state, stale.reason = "disputed", "second"
            with pytest.raises(WorkflowConflict):
                await save_step(late, stale, seen, f"report {row.id}")
        async with AsyncSession(engine) as session:
            return (await session.get(QualityReport, row.id)).reason

    assert on_db(env, go) == "first"
