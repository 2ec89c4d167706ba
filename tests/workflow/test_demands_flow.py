"""Demands (需求清单) end to end on a fresh demo store: filed, answered, fulfilled through the CLI
and the admin API's types; department and steward checks; refusals that list what is valid;
every change an audit event, taken back if the event cannot be written. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from tests.workflow.kpi_support import admin_actor, cli, cli_json, identity_events, module_env, on_db, run_gql

env = module_env("demands")

CREATE = """mutation($provider: String!, $requester: String) {
  createDemand(provider: $provider, description: "企业注销信息", purpose: "清理参保单位",
               fieldsWanted: "credit_code", requester: $requester) { id requester provider state history }
}"""
ANSWER = """mutation($id: Int!, $answer: String!, $date: String, $reason: String) {
  answerDemand(id: $id, answer: $answer, promisedDate: $date, reason: $reason) {
    id state promisedDate reason
  }
}"""


def code(result: Any) -> str | None:
    return result.errors[0].extensions["code"] if result.errors else None


def sharing(env: Any) -> tuple[int, int]:
    from gateway.workflow.kpi import kpi_report

    report = on_db(env, kpi_report)
    k = next(k for k in report.kpis if k.definition.key == "sharing")
    return k.overall.numerator, k.overall.denominator


def test_the_cli_walks_a_demand_to_fulfilled_and_every_step_is_audited(env: Any) -> None:
    before = sharing(env)
    d = cli_json(
        env,
        "demand",
        "create",
        "--requester",
        "samr",
        "--provider",
        "eco",
        "--description",
        "排污许可证注销信息",
        "--purpose",
        "企业信用监管",
        "--fields",
        "permit_number, valid_to",
    )
    assert (d["requester"], d["provider"], d["state"]) == ("samr", "eco", "open")
    assert sharing(env) == (before[0], before[1] + 1)  # a new share demand, not met
    by = (date.today() + timedelta(days=20)).isoformat()
    answered = cli_json(env, "demand", "answer", str(d["id"]), "--by", by)
    assert answered["state"] == "will_provide" and answered["promised_date"] == by
    done = cli_json(env, "demand", "fulfil", str(d["id"]), "--dataset", "discharge_permit")
    assert done["state"] == "fulfilled" and done["dataset"] == "discharge_permit"
    assert [h["action"] for h in done["history"]] == ["create", "answer", "fulfil"]
    assert sharing(env) == (before[0] + 1, before[1] + 1)
    listed = cli_json(env, "demand", "list", "--department", "samr", "--role", "mine")
    assert [x["id"] for x in listed if x["id"] == d["id"]] == [d["id"]]
    assert all(x["requester"] == "samr" for x in listed)
    events = [e for e in identity_events(env, "demand.%") if e["identity"]["target"] == f"demand:{d['id']}"]
    assert [e["operation_name"] for e in events] == ["demand.create", "demand.answer", "demand.fulfil"]
    assert all(e["principal_kind"] == "operator" and e["consumer"] == "samr" for e in events)
    assert events[-1]["identity"]["dataset"] == "discharge_permit"
    assert "排污许可证注销信息" not in str(events)  # the free text stays with the demand


def test_refusals_say_what_is_valid(env: Any) -> None:
    r = cli(
        env,
        "demand",
        "create",
        "--requester",
        "samr",
        "--provider",
        "nosuch",
        "--description",
        "x",
        "--purpose",
        "y",
    )
    assert r.exit_code == 2 and "departments: eco, hrss, police, samr, tax" in r.stderr
    r = cli(
        env,
        "demand",
        "create",
        "--requester",
        "samr",
        "--provider",
        "samr",
        "--description",
        "x",
        "--purpose",
        "y",
    )
    assert r.exit_code == 2 and "cannot demand data from itself" in r.stderr
    d = cli_json(
        env,
        "demand",
        "create",
        "--requester",
        "tax",
        "--provider",
        "police",
        "--description",
        "x",
        "--purpose",
        "y",
    )
    r = cli(env, "demand", "answer", str(d["id"]), "--by", "2020-01-01")
    assert r.exit_code == 2 and "in the past" in r.stderr
    r = cli(env, "demand", "answer", str(d["id"]), "--by", "2030-01-01", "--cannot", "no")
    assert r.exit_code == 2 and "exactly one of" in r.stderr
    r = cli(env, "demand", "fulfil", str(d["id"]), "--dataset", "discharge_permit")  # eco's, not police's
    assert r.exit_code == 2 and "theirs: population" in r.stderr
    cannot = cli_json(env, "demand", "answer", str(d["id"]), "--cannot", "涉及国家秘密")
    assert cannot["state"] == "cannot_provide" and cannot["reason"] == "涉及国家秘密"
    r = cli(env, "demand", "fulfil", str(d["id"]), "--dataset", "population")
    assert r.exit_code == 2 and "cannot_provide" in r.stderr
    r = cli(env, "demand", "answer", "999999", "--cannot", "no")
    assert r.exit_code == 2 and "no demand 999999" in r.stderr


def test_department_and_steward_checks_on_the_admin_api(env: Any) -> None:
    hrss = admin_actor("demo-hrss", "hrss")
    result, _ = run_gql(env, CREATE, hrss, {"provider": "police", "requester": "samr"})
    assert code(result) == "FORBIDDEN"  # a department files for itself only
    result, ctx = run_gql(env, CREATE, hrss, {"provider": "police"})
    assert result.errors is None and ctx.rows == 1
    demand = result.data["createDemand"]
    assert (demand["requester"], demand["state"]) == ("hrss", "open")
    assert demand["history"][0]["by"] == "client:demo-hrss"
    variables = {"id": demand["id"], "answer": "cannot_provide", "reason": "暂无"}
    for who in (
        admin_actor("demo-police", "police"),  # police, but not a steward
        admin_actor("steward-samr", "samr", approve=True),  # a steward, of another department
        hrss,  # the requester
    ):
        result, _ = run_gql(env, ANSWER, who, variables)
        assert code(result) == "FORBIDDEN", who
    assert "police's data steward" in run_gql(env, ANSWER, hrss, variables)[0].errors[0].message
    result, _ = run_gql(
        env, ANSWER, admin_actor("steward-police", "police", approve=True), {**variables, "answer": "maybe"}
    )
    assert code(result) == "BAD_USER_INPUT" and "will_provide, cannot_provide" in result.errors[0].message
    promised = (date.today() + timedelta(days=9)).isoformat()
    result, _ = run_gql(
        env,
        ANSWER,
        admin_actor("steward-police", "police", approve=True),
        {"id": demand["id"], "answer": "will_provide", "date": promised},
    )
    assert result.errors is None and result.data["answerDemand"]["promisedDate"] == promised
    # who sees it: the requester and the provider, not a third department
    listing = "query($role: String!) { demands(role: $role) { id requester provider } }"
    mine = run_gql(env, listing, hrss, {"role": "mine"})[0].data["demands"]
    assert demand["id"] in [d["id"] for d in mine] and {d["requester"] for d in mine} == {"hrss"}
    addressed = run_gql(env, listing, admin_actor("demo-police", "police"), {"role": "addressed"})[0].data[
        "demands"
    ]
    assert demand["id"] in [d["id"] for d in addressed] and {d["provider"] for d in addressed} == {"police"}
    tax = run_gql(env, listing, admin_actor("demo-tax", "tax"), {"role": "all"})[0].data["demands"]
    assert demand["id"] not in [d["id"] for d in tax]
    one = "query($id: Int!) { demand(id: $id) { id } }"
    assert code(run_gql(env, one, admin_actor("demo-tax", "tax"), {"id": demand["id"]})[0]) == "NOT_FOUND"
    assert run_gql(env, one, admin_actor("root", None, admin=True), {"id": demand["id"]})[0].errors is None
    events = [
        e for e in identity_events(env, "demand.%") if e["identity"]["target"] == f"demand:{demand['id']}"
    ]
    assert [(e["operation_name"], e["principal_id"]) for e in events] == [
        ("demand.create", "demo-hrss"),
        ("demand.answer", "steward-police"),
    ]
    # an enterprise (no department) files nothing
    enterprise = admin_actor("demo-bank", None)
    assert code(run_gql(env, CREATE, enterprise, {"provider": "police"})[0]) == "FORBIDDEN"


def test_a_demand_whose_event_cannot_be_written_is_taken_back(env: Any) -> None:
    before = cli_json(env, "demand", "list")
    r = cli(
        env,
        "demand",
        "create",
        "--requester",
        "eco",
        "--provider",
        "tax",
        "--description",
        "审计不可用",
        "--purpose",
        "y",
        master_key_file=str(env.settings.var_dir / "no-such.key"),
    )
    assert r.exit_code == 3 and "audit log is unavailable" in r.stderr and "withdrawn again" in r.stderr
    assert cli_json(env, "demand", "list") == before
    d = before[0]
    r = cli(
        env,
        "demand",
        "answer",
        str(d["id"]),
        "--cannot",
        "x",
        master_key_file=str(env.settings.var_dir / "no.key"),
    )
    assert r.exit_code == 3
    assert next(x for x in cli_json(env, "demand", "list") if x["id"] == d["id"])["state"] == d["state"]


class _BrokenSink:
    async def record(self, event: Any) -> None:
        raise OSError("disk full")


def test_the_undo_when_the_event_fails_after_the_change(env: Any) -> None:
    """The sink opens but the write fails: the new demand is deleted, the answer restored."""
    import pytest

    from gateway.identity.audit import AuditUnavailable, IdentityAudit
    from gateway.workflow import recorded
    from gateway.workflow.common import operator_actor
    from gateway.workflow.demands import Demand

    broken, actor = IdentityAudit(_BrokenSink()), operator_actor("cli:test")

    async def go(engine: Any) -> tuple[list[int], str]:
        from sqlmodel import select
        from sqlmodel.ext.asyncio.session import AsyncSession

        async def ids() -> list[int]:
            async with AsyncSession(engine) as session:
                return list((await session.exec(select(Demand.id))).all())

        before = await ids()
        with pytest.raises(AuditUnavailable):
            await recorded.create_demand(
                engine, broken, actor, requester="eco", provider="tax", description="x", purpose="y"
            )
        after = await ids()
        row = await recorded.create_demand(
            engine, None, actor, requester="eco", provider="tax", description="x", purpose="y"
        )
        with pytest.raises(AuditUnavailable):
            await recorded.answer_demand(engine, broken, actor, row.id, answer="cannot_provide", reason="z")
        async with AsyncSession(engine) as session:
            state = (await session.get(Demand, row.id)).state
        return [x for x in after if x not in before], state

    added, state = on_db(env, go)
    assert added == [] and state == "open"


def test_through_the_admin_graphql_endpoint(env: Any) -> None:
    """POST /admin/graphql with real tokens: hrss's system files and reports, police's approvals
    system (client credentials, grants:approve) answers, samr's cannot; a report keyed by 身份证号
    is kept as its blind index (the endpoint hands the resolvers the pool keyring)."""
    from starlette.testclient import TestClient

    from gateway.app import create_app
    from gateway.identity.clients import create_client
    from gateway.secrets import SecretHasher, load_master_key

    hasher = SecretHasher(load_master_key(env.settings.master_key_file))
    police_id, police_secret = on_db(
        env, lambda e: create_client(e, hasher, "police", scopes=["share:read", "grants:approve"])
    )
    with TestClient(create_app(env.settings)) as client:

        def token(client_id: str, secret: str) -> str:
            r = client.post(
                "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
            )
            assert r.status_code == 200, r.text
            return r.json()["access_token"]

        clients = env.credentials["clients"]
        hrss = token(clients["hrss"]["client_id"], clients["hrss"]["client_secret"])
        samr = token(clients["samr"]["client_id"], clients["samr"]["client_secret"])
        police = token(police_id, police_secret or "")

        def call(bearer: str, query: str) -> Any:
            r = client.post(
                "/admin/graphql", json={"query": query}, headers={"Authorization": f"Bearer {bearer}"}
            )
            return r.json()

        made = call(
            hrss,
            'mutation { createDemand(provider: "police", description: "迁入登记", purpose: "参保") { id } }',
        )
        demand_id = made["data"]["createDemand"]["id"]
        answer = (
            f'mutation {{ answerDemand(id: {demand_id}, answer: "cannot_provide", reason: "暂无") '
            "{ state } }"
        )
        refused = call(samr, answer)
        assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert call(police, answer)["data"]["answerDemand"]["state"] == "cannot_provide"
        report = call(
            hrss,
            'mutation { reportQuality(dataset: "population", record: "610113199001011234", field: "name", '
            'description: "姓名有误") { recordRef provider } }',
        )
        assert report["data"]["reportQuality"]["recordRef"].startswith("bidx:")
        assert "610113199001011234" not in str(report)
        kpis = call(samr, '{ kpis(department: "police") { scope kpis { key figure { denominator } } } }')
        assert kpis["data"]["kpis"]["scope"] == "police"
    events = [e for e in identity_events(env, "demand.%") if e["identity"]["target"] == f"demand:{demand_id}"]
    assert [e["operation_name"] for e in events] == ["demand.create", "demand.answer"]
    assert events[-1]["principal_id"] == police_id
