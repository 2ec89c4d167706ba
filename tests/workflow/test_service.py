"""gateway.workflow.applications on SQLite and PostgreSQL: validation that lists the valid values,
each step's history and audit event, approval creating a grant that combines, narrowing, the
demo's seeded applications, and the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from gateway.cli import app
from gateway.grants import service as grants
from gateway.identity.audit import AuditUnavailable, IdentityAudit
from gateway.workflow import applications as apps
from policies.workflow import Actor
from tests.support import on_db

HRSS = Actor("hrss-dev", department="hrss", apply=True)
POLICE = Actor("police-steward", department="police", apply=True, approve=True)
SAMR = Actor("samr-steward", department="samr", apply=True, approve=True)
ADMIN = Actor("root", admin=True)
YEAR = datetime.now(UTC) + timedelta(days=365)


class Sink:
    """An audit sink that keeps the events (or refuses them)."""

    def __init__(self, fail: bool = False) -> None:
        self.events: list[Any] = []
        self.fail = fail

    async def record(self, event: Any) -> None:
        if self.fail:
            raise OSError("audit store down")
        self.events.append(event)


def _apply(demo_env: Any, sink: Sink | None = None, **kw: Any) -> Any:
    args: dict[str, Any] = {
        "dataset": "population",
        "fields": {"phone": "clear", "gender": None},
        "purpose": "测试",
        "legal_basis": "测试依据",
        "period_end": YEAR,
        "submit_now": True,
        **kw,
    }
    audit = IdentityAudit(sink) if sink is not None else None
    actor = args.pop("actor", HRSS)
    return on_db(demo_env, lambda e: apps.create(e, audit, actor, **args))


def _refused(demo_env: Any, code: str, match: str, fn: Any) -> None:
    with pytest.raises(apps.WorkflowError, match=match) as err:
        on_db(demo_env, fn)
    assert err.value.code == code


def test_validation_lists_the_valid_values(demo_env: Any) -> None:
    _refused(
        demo_env,
        "BAD_USER_INPUT",
        r"no dataset 'nope'.*population",
        lambda e: apps.create(
            e, None, HRSS, dataset="nope", fields=["x"], purpose="p", legal_basis="b", period_end=YEAR
        ),
    )
    _refused(
        demo_env,
        "BAD_USER_INPUT",
        r"field\(s\) nosuch not grantable on population; valid: .*phone",
        lambda e: apps.create(
            e,
            None,
            HRSS,
            dataset="population",
            fields=["nosuch"],
            purpose="p",
            legal_basis="b",
            period_end=YEAR,
        ),
    )
    _refused(
        demo_env,
        "BAD_USER_INPUT",
        r"idNumber|id_number cannot be delivered clear: valid for it: encrypted",
        lambda e: apps.create(
            e,
            None,
            HRSS,
            dataset="population",
            fields=["idNumber:clear"],
            purpose="p",
            legal_basis="b",
            period_end=YEAR,
        ),
    )
    _refused(
        demo_env,
        "BAD_USER_INPUT",
        r"treatments: masked, encrypted, clear",
        lambda e: apps.create(
            e,
            None,
            HRSS,
            dataset="population",
            fields=["phone:plain"],
            purpose="p",
            legal_basis="b",
            period_end=YEAR,
        ),
    )
    _refused(
        demo_env,
        "BAD_USER_INPUT",
        r"row scope: no field 'nope'; fields: .*district",
        lambda e: apps.create(
            e,
            None,
            HRSS,
            dataset="population",
            fields=["phone"],
            purpose="p",
            legal_basis="b",
            period_end=YEAR,
            row_scope={"nope": {"eq": 1}},
        ),
    )
    _refused(
        demo_env,
        "BAD_USER_INPUT",
        "legal basis",
        lambda e: apps.create(
            e,
            None,
            HRSS,
            dataset="population",
            fields=["phone"],
            purpose="p",
            legal_basis=" ",
            period_end=YEAR,
        ),
    )
    _refused(
        demo_env,
        "FORBIDDEN",
        "may apply for hrss only",
        lambda e: apps.create(
            e,
            None,
            HRSS,
            dataset="population",
            fields=["phone"],
            purpose="p",
            legal_basis="b",
            period_end=YEAR,
            consumer="tax",
        ),
    )
    _refused(
        demo_env,
        "BAD_USER_INPUT",
        r"no department 'nosuch'; departments: .*hrss",
        lambda e: apps.create(
            e,
            None,
            ADMIN,
            dataset="population",
            fields=["phone"],
            purpose="p",
            legal_basis="b",
            period_end=YEAR,
            consumer="nosuch",
        ),
    )
    _refused(
        demo_env,
        "BAD_USER_INPUT",
        "provides this dataset",
        lambda e: apps.create(
            e,
            None,
            POLICE,
            dataset="population",
            fields=["phone"],
            purpose="p",
            legal_basis="b",
            period_end=YEAR,
        ),
    )


def test_camel_case_names_and_default_treatments(demo_env: Any) -> None:
    row = _apply(demo_env, fields=["householdAddress", "idNumber", "phone:clear"])
    assert json.loads(row.requested) == {
        "household_address": "masked",
        "id_number": "encrypted",
        "phone": "clear",
    }
    on_db(demo_env, lambda e: apps.withdraw(e, None, HRSS, row.id))


def test_approve_narrowed_creates_a_grant_that_adds(demo_env: Any) -> None:
    sink = Sink()
    row = _apply(demo_env, sink)
    assert row.state == "submitted"
    _refused(demo_env, "FORBIDDEN", "only a steward of police", lambda e: apps.approve(e, None, SAMR, row.id))
    _refused(demo_env, "FORBIDDEN", "only a steward of police", lambda e: apps.approve(e, None, HRSS, row.id))
    _refused(
        demo_env,
        "BAD_USER_INPUT",
        r"cannot add field\(s\) name; asked for: gender, phone",
        lambda e: apps.approve(e, None, POLICE, row.id, fields=["phone:clear", "name"]),
    )
    _refused(
        demo_env,
        "BAD_USER_INPUT",
        "ends no later",
        lambda e: apps.approve(e, None, POLICE, row.id, period_end=YEAR + timedelta(days=1)),
    )
    done = on_db(
        demo_env,
        lambda e: apps.approve(
            e, IdentityAudit(sink), POLICE, row.id, fields=["phone:masked"], reason="只需脱敏"
        ),
    )
    assert done.state == "approved" and done.grant_id and done.decided_by == "police-steward"
    grant = on_db(demo_env, lambda e: grants.get_grant(e, done.grant_id))
    assert grant.fields == "phone" and grant.clear_fields == "" and grant.application_id == row.id
    assert grant.consumer == "hrss" and grant.status == "approved"
    # it adds: hrss keeps its demo grant on population
    held = on_db(demo_env, lambda e: grants.list_grants(e, consumer="hrss", dataset="population"))
    assert len(held) >= 2
    _, events = on_db(demo_env, lambda e: apps.get(e, HRSS, row.id))
    assert [ev.step for ev in events] == ["create", "submit", "approve"]
    assert json.loads(events[-1].changes) == {"fields": {"phone": "masked"}}
    assert events[-1].reason == "只需脱敏"
    assert [e.operation_name for e in sink.events] == [
        "application.create",
        "application.submit",
        "application.approve",
    ]
    detail = sink.events[-1].reads[0]["identity"]
    assert detail["grant_id"] == done.grant_id and detail["application_id"] == row.id
    _refused(
        demo_env,
        "CONFLICT",
        "cannot approve an application that is approved",
        lambda e: apps.approve(e, None, POLICE, row.id),
    )
    on_db(demo_env, lambda e: grants.revoke_grant(e, done.grant_id, reason="test over"))


def test_reject_return_resubmit_withdraw(demo_env: Any) -> None:
    row = _apply(demo_env)
    _refused(
        demo_env,
        "BAD_USER_INPUT",
        "needs a reason",
        lambda e: apps.reject(e, None, POLICE, row.id, reason=""),
    )
    back = on_db(demo_env, lambda e: apps.return_(e, None, POLICE, row.id, reason="补充依据"))
    assert back.state == "returned" and back.decision_reason == "补充依据"
    again = on_db(demo_env, lambda e: apps.submit(e, None, HRSS, row.id, note="已补充"))
    assert again.state == "submitted"
    no = on_db(demo_env, lambda e: apps.reject(e, None, POLICE, row.id, reason="不符合最小必要"))
    assert no.state == "rejected" and no.grant_id is None
    _refused(demo_env, "CONFLICT", "withdraw applies to", lambda e: apps.withdraw(e, None, HRSS, row.id))
    _, events = on_db(demo_env, lambda e: apps.get(e, HRSS, row.id))
    assert [(ev.step, ev.to_state) for ev in events] == [
        ("create", "draft"),
        ("submit", "submitted"),
        ("return", "returned"),
        ("resubmit", "submitted"),
        ("reject", "rejected"),
    ]
    assert events[3].reason == "已补充"


def test_visibility_and_lists(demo_env: Any) -> None:
    draft = _apply(demo_env, submit_now=False)
    _refused(
        demo_env, "FORBIDDEN", "neither yours", lambda e: apps.get(e, POLICE, draft.id)
    )  # a draft is private
    _refused(demo_env, "FORBIDDEN", "neither yours", lambda e: apps.get(e, SAMR, draft.id))
    _refused(demo_env, "NOT_FOUND", "no application", lambda e: apps.get(e, ADMIN, 10**9))
    on_db(demo_env, lambda e: apps.submit(e, None, HRSS, draft.id))
    pending = on_db(demo_env, lambda e: apps.list_applications(e, POLICE, view="pending"))
    assert draft.id in [r.id for r in pending] and all(r.provider == "police" for r in pending)
    assert on_db(demo_env, lambda e: apps.list_applications(e, SAMR, view="pending")) == [] or all(
        r.provider == "samr"
        for r in on_db(demo_env, lambda e: apps.list_applications(e, SAMR, view="pending"))
    )
    samr_sees = on_db(
        demo_env, lambda e: apps.list_applications(e, Actor("samr-dev", department="samr", apply=True))
    )
    assert all(r.consumer == "samr" for r in samr_sees)
    _refused(
        demo_env, "BAD_USER_INPUT", "states: draft", lambda e: apps.list_applications(e, HRSS, state="nope")
    )
    on_db(demo_env, lambda e: apps.withdraw(e, None, HRSS, draft.id, reason="test"))


def test_a_step_whose_event_cannot_be_recorded_is_taken_back(demo_env: Any) -> None:
    row = _apply(demo_env)
    with pytest.raises(AuditUnavailable):
        on_db(demo_env, lambda e: apps.approve(e, IdentityAudit(Sink(fail=True)), POLICE, row.id))
    stored, events = on_db(demo_env, lambda e: apps.get(e, HRSS, row.id))
    assert stored.state == "submitted" and stored.grant_id is None
    assert [ev.step for ev in events] == ["create", "submit"]
    revoked = on_db(
        demo_env, lambda e: grants.list_grants(e, consumer="hrss", dataset="population", state="revoked")
    )
    assert any(g.application_id == row.id and "audit" in (g.revoke_reason or "") for g in revoked)
    with pytest.raises(AuditUnavailable):
        on_db(demo_env, lambda e: apps.reject(e, IdentityAudit(Sink(fail=True)), POLICE, row.id, reason="x"))
    assert on_db(demo_env, lambda e: apps.get(e, HRSS, row.id))[0].state == "submitted"
    on_db(demo_env, lambda e: apps.withdraw(e, None, HRSS, row.id))


def test_row_scope_validation_and_narrowing(demo_env: Any) -> None:
    row = _apply(demo_env, row_scope={"district": {"in": ["雁塔区", "碑林区"]}})
    assert json.loads(row.row_scope) == {"district": {"in": ["碑林区", "雁塔区"]}}
    _refused(
        demo_env,
        "BAD_USER_INPUT",
        "keeps every row-scope condition",
        lambda e: apps.approve(e, None, POLICE, row.id, row_scope={"district": {"in": ["未央区"]}}),
    )
    _refused(
        demo_env,
        "BAD_USER_INPUT",
        "keeps every row-scope condition",
        lambda e: apps.approve(e, None, POLICE, row.id, row_scope={}),  # dropping it opens every row
    )
    on_db(demo_env, lambda e: apps.withdraw(e, None, HRSS, row.id))
    _refused(
        demo_env,
        "BAD_USER_INPUT",
        r"row scope: no field 'idNumber'; fields: district, district_code,",  # stored encrypted
        lambda e: apps.create(
            e,
            None,
            HRSS,
            dataset="population",
            fields=["phone"],
            purpose="p",
            legal_basis="b",
            period_end=YEAR,
            row_scope={"idNumber": {"eq": "x"}},
        ),
    )
    _refused(
        demo_env,
        "BAD_USER_INPUT",
        "its values are text",
        lambda e: apps.create(
            e,
            None,
            HRSS,
            dataset="population",
            fields=["phone"],
            purpose="p",
            legal_basis="b",
            period_end=YEAR,
            row_scope={"districtCode": {"in": [610113]}},
        ),
    )


def test_demo_seeds_each_state(demo_env: Any) -> None:
    rows = on_db(demo_env, lambda e: apps.list_applications(e, ADMIN))
    by_state = {r.state: r for r in rows if r.applicant.startswith("demo-")}
    assert {"submitted", "rejected", "returned", "approved"} <= set(by_state)
    assert by_state["rejected"].decision_reason and by_state["returned"].decision_reason
    pending = by_state["submitted"]
    assert pending.consumer == "hrss" and pending.dataset_code == "population"
    grant = on_db(demo_env, lambda e: grants.get_grant(e, by_state["approved"].grant_id))
    assert grants.grant_state(grant, datetime.now(UTC)) == "expiring"
    assert 9 <= (grant.expires_at.replace(tzinfo=UTC) - datetime.now(UTC)).days <= 10
    users = demo_env.credentials["users"]
    assert users["police-steward"]["roles"] == ["steward"] and users["hrss-developer"]["department"] == "hrss"


# ------------------------------------------------------------------ CLI


def cli(demo_env: Any, *args: str) -> Any:
    s = demo_env.settings
    env = {
        "SHUQIAO_DATABASE_URL": s.database_url,
        "SHUQIAO_VAR_DIR": str(s.var_dir),
        "SHUQIAO_MASTER_KEY_FILE": str(s.master_key_file),
    }
    return CliRunner().invoke(app, list(args), env=env)


def test_cli_walk_and_audit(demo_env: Any) -> None:
    until = (datetime.now(UTC) + timedelta(days=90)).date().isoformat()
    r = cli(
        demo_env,
        "application",
        "create",
        "--as",
        "hrss",
        "--dataset",
        "population",
        "--field",
        "phone:clear",
        "--purpose",
        "测试",
        "--legal-basis",
        "依据",
        "--until",
        until,
        "--submit",
        "--json",
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["state"] == "submitted" and doc["fields"] == {"phone": "clear"}
    refused = cli(demo_env, "application", "approve", str(doc["id"]), "--as", "samr")
    assert refused.exit_code == 2 and "only a steward of police" in refused.output
    r = cli(
        demo_env,
        "application",
        "approve",
        str(doc["id"]),
        "--as",
        "police",
        "--field",
        "phone:masked",
        "--json",
    )
    assert r.exit_code == 0, r.output
    done = json.loads(r.stdout)
    assert done["state"] == "approved" and done["approved_fields"] == {"phone": "masked"}
    assert [h["step"] for h in done["history"]] == ["create", "submit", "approve"]
    human = cli(demo_env, "application", "show", str(doc["id"]), "--as", "hrss")
    assert human.exit_code == 0 and f"grant {done['grant_id']}" in human.stdout
    listed = json.loads(
        cli(demo_env, "application", "list", "--as", "police", "--view", "pending", "--json").stdout
    )
    assert doc["id"] not in [d["id"] for d in listed]
    bad = cli(demo_env, "application", "list", "--as", "nosuch")
    assert bad.exit_code == 2 and "no such department or enterprise" in bad.output
    assert cli(demo_env, "grant", "revoke", str(done["grant_id"]), "--reason", "test over").exit_code == 0

    from gateway.audit.models import AuditEvent

    async def ops(engine: Any) -> list[tuple[str, str]]:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(AuditEvent.operation_name, AuditEvent.principal_id).where(
                    AuditEvent.operation_name.like("application.%")  # type: ignore[union-attr]
                )
            )
            return [(r[0], r[1]) for r in rows]

    events = on_db(demo_env, ops)
    assert ("application.approve", next(p for o, p in events if o == "application.approve")) in events
    assert {
        "application.create",
        "application.submit",
        "application.approve",
        "application.show",
        "application.list",
    } <= {o for o, _ in events}
    assert any(p.endswith(" for police") for o, p in events if o == "application.approve")
    kinds = on_db(demo_env, lambda e: _kinds(e))
    assert kinds == {"operator"}


async def _kinds(engine: Any) -> set[str]:
    from gateway.audit.models import AuditEvent

    async with engine.connect() as conn:
        rows = await conn.execute(
            select(AuditEvent.principal_kind).where(
                AuditEvent.operation_name.like("application.%"),  # type: ignore[union-attr]
                AuditEvent.principal_id.like("cli:%"),  # type: ignore[union-attr]
            )
        )
        return {r[0] for r in rows}


def test_an_enterprise_applies_on_the_open_tier(demo_env: Any) -> None:
    until = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    r = cli(
        demo_env,
        "application",
        "create",
        "--as",
        "demo-bank",
        "--tier",
        "open",
        "--dataset",
        "tax_credit_rating",
        "--field",
        "rating",
        "--purpose",
        "授信审查",
        "--legal-basis",
        "授权运营协议",
        "--until",
        until,
        "--submit",
        "--json",
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["tier"] == "open" and doc["consumer"] == "demo-bank" and doc["provider"] == "tax"
    refused = cli(demo_env, "application", "approve", str(doc["id"]), "--as", "demo-bank")
    assert refused.exit_code == 2 and "only a steward of tax" in refused.output
    r = cli(demo_env, "application", "approve", str(doc["id"]), "--as", "tax", "--json")
    assert r.exit_code == 0, r.output
    grant = on_db(demo_env, lambda e: grants.get_grant(e, json.loads(r.stdout)["grant_id"]))
    assert grant.tier == "open" and grant.fields == "rating" and grant.consumer == "demo-bank"
    on_db(demo_env, lambda e: grants.revoke_grant(e, grant.id, reason="test over"))
    bad = cli(
        demo_env,
        "application",
        "create",
        "--as",
        "demo-bank",
        "--tier",
        "open",
        "--dataset",
        "population",
        "--field",
        "name",
        "--purpose",
        "p",
        "--legal-basis",
        "b",
        "--until",
        until,
    )
    assert bad.exit_code == 2 and "不予开放" in bad.output
