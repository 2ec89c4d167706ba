"""Officers handle alerts over the JSON API, GraphQL and the CLI: acknowledge, assign to an officer,
comment, close with a reason; the history is kept; each action is an audit event with its body
sealed; a person without audit:read gets 403 (demo gateway, SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert
from typer.testing import CliRunner

from gateway.audit.alerts import ALERTS
from tests.audit.signin import make_user
from tests.audit.test_alerts import _officer_token
from tests.audit.test_officer_api import api
from tests.support import on_db


def new_alert(demo_env: Any, principal: str = "probe-client") -> int:
    async def go(engine: Any) -> int:
        now = datetime.now(UTC)
        async with engine.begin() as conn:
            result = await conn.execute(
                insert(ALERTS).values(
                    rule="forbidden_probing",
                    principal_id=principal,
                    consumer="samr",
                    seq=secrets.randbelow(10**12) + 10**9,  # (rule, seq) is unique
                    occurred_at=now,
                    raised_at=now,
                    summary="20 FORBIDDEN_FIELD denials",
                    detail="{}",
                )
            )
            return int(result.inserted_primary_key[0])

    return on_db(demo_env, go)


def test_an_alert_is_assigned_commented_and_closed_with_its_history(client: Any, demo_env: Any) -> None:
    token = _officer_token(client, demo_env)
    h = {"Authorization": f"Bearer {token}"}
    officer, _ = make_user(demo_env, ["security_officer"])
    steward, _ = make_user(demo_env, ["steward"], department="samr")
    alert_id = new_alert(demo_env)
    post = lambda action, body: client.post(f"/audit/api/alerts/{alert_id}/{action}", json=body, headers=h)  # noqa: E731

    names = [o["username"] for o in api(client, "officers", token).json()["officers"]]
    assert officer in names and steward not in names
    assert post("assign", {"assignee": steward}).status_code == 400  # not an officer
    r = post("assign", {"assignee": officer, "comment": "请核查 samr 的探测"})
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["assignee"]) == ("assigned", officer)
    assert r.json()["acknowledged_at"]  # the first handling stops it counting as unacknowledged
    assert post("assign", {"assignee": officer}).status_code == 409  # already theirs
    assert post("ack", {"comment": "x"}).status_code == 409
    assert post("comment", {"comment": ""}).status_code == 400
    assert post("comment", {"comment": "已联系 samr 的系统管理员"}).status_code == 200
    assert post("close", {"reason": "bored"}).status_code == 400
    assert post("close", {"reason": "other"}).status_code == 400  # other needs words
    r = post("close", {"reason": "authorised", "comment": "渗透测试，已报备"})
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["close_reason"]) == ("closed", "authorised")
    assert post("assign", {"assignee": officer}).status_code == 409  # closed: comments only
    assert post("comment", {"comment": "复盘完成"}).status_code == 200
    assert (
        client.post("/audit/api/alerts/999999999/close", json={"reason": "resolved"}, headers=h).status_code
        == 404
    )

    doc = api(client, f"alerts/{alert_id}", token).json()
    assert [(x["action"], x["from_state"], x["to_state"]) for x in doc["history"]] == [
        ("assign", "open", "assigned"),
        ("comment", "assigned", "assigned"),
        ("close", "assigned", "closed"),
        ("comment", "closed", "closed"),
    ]
    assert doc["history"][0]["assignee"] == officer and doc["history"][2]["reason"] == "authorised"
    closed = api(client, "alerts", token, state="closed").json()["alerts"]
    assert alert_id in [a["id"] for a in closed]
    assert alert_id not in [a["id"] for a in api(client, "alerts", token, state="active").json()["alerts"]]

    # each action is an audit event, its body sealed in the variables
    events = api(client, "events", token, tier="audit", limit=60).json()["events"]
    close = next(e for e in events if e["operation_name"] == "close-alert" and e["status"] == 200)
    assert close["operation_type"] == "mutation"
    sealed = api(client, f"events/{close['seq']}", token).json()["variables"]
    assert sealed == {"id": alert_id, "reason": "authorised", "comment": "渗透测试，已报备"}
    assert {"assign-alert", "comment-alert"} <= {e["operation_name"] for e in events}


def test_graphql_twin_handles_alerts(client: Any, demo_env: Any) -> None:
    token = _officer_token(client, demo_env)
    officer, _ = make_user(demo_env, ["security_officer"])
    alert_id = new_alert(demo_env)
    q = """mutation($id: Int!, $who: String!) {
      a: assignAlert(id: $id, assignee: $who) { state assignee }
      c: commentAlert(id: $id, comment: "看过了") { state }
      z: closeAlert(id: $id, reason: "false_positive") { state closeReason }
    }"""
    r = client.post(
        "/audit/graphql",
        json={"query": q, "variables": {"id": alert_id, "who": officer}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data == {
        "a": {"state": "assigned", "assignee": officer},
        "c": {"state": "assigned"},
        "z": {"state": "closed", "closeReason": "false_positive"},
    }
    again = client.post(
        "/audit/graphql",
        json={
            "query": 'mutation($id: Int!) { closeAlert(id: $id, reason: "resolved") { state } }',
            "variables": {"id": alert_id},
        },
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    assert again["errors"][0]["extensions"]["code"] == "CONFLICT"


def test_cli_lists_and_handles_alerts_as_an_operator_and_records_each_action(
    client: Any, demo_env: Any
) -> None:
    from gateway.audit.cli import audit_app

    officer, _ = make_user(demo_env, ["security_officer"])
    alert_id = new_alert(demo_env, principal="cli-probe")
    s = demo_env.settings
    env = {
        "SHUQIAO_DATABASE_URL": s.database_url,
        "SHUQIAO_VAR_DIR": str(s.var_dir),
        "SHUQIAO_MASTER_KEY_FILE": str(s.master_key_file),
    }
    run = lambda *args: CliRunner().invoke(audit_app, ["alerts", *args], env=env)  # noqa: E731

    listed = run("list", "--state", "open", "--json")
    assert listed.exit_code == 0, listed.output
    assert alert_id in [a["id"] for a in json.loads(listed.output)["alerts"]]
    r = run("assign", str(alert_id), "--to", officer, "--comment", "值班转交", "--as", "zhang.san", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["assignee"] == officer
    r = run("close", str(alert_id), "--reason", "resolved", "--as", "zhang.san", "--json")
    assert r.exit_code == 0 and json.loads(r.output)["state"] == "closed"
    refused = run("comment", str(alert_id), "--comment", "", "--as", "zhang.san")
    assert refused.exit_code == 2 and "needs a comment" in refused.output
    shown = json.loads(run("show", str(alert_id), "--json").output)
    from gateway.audit.cli import _cli_operator

    operator = _cli_operator()
    assert [x["by"] for x in shown["history"]] == [f"{operator}/zhang.san"] * 2

    token = _officer_token(client, demo_env)
    events = api(client, "events", token, tier="audit", principal=operator, limit=20).json()["events"]
    ops = [(e["operation_name"], e["principal_kind"], e["subject"], e["status"]) for e in events]
    assert ("close-alert", "operator", "zhang.san", 200) in ops
    assert ("assign-alert", "operator", "zhang.san", 200) in ops
    assert ("comment-alert", "operator", "zhang.san", 400) in ops  # refused actions are recorded too


def test_a_person_without_audit_read_gets_403_on_the_handling_api(demo_env: Any) -> None:
    from tests.audit.signin import sign_in
    from tests.support import serve

    username, password = make_user(demo_env, ["steward"], department="samr")
    alert_id = new_alert(demo_env)
    with serve(demo_env) as base:
        session, _ = sign_in(base, username, password, start="/console")
        csrf = session.get("/web/session").json()["csrf"]
        for path in (f"/audit/api/alerts/{alert_id}", "/audit/api/officers"):
            assert session.get(path).status_code == 403
        for action in ("ack", "assign", "comment", "close"):
            r = session.post(
                f"/audit/api/alerts/{alert_id}/{action}",
                json={"comment": "x", "assignee": "x", "reason": "resolved"},
                headers={"X-CSRF-Token": csrf},
            )
            assert r.status_code == 403, (action, r.status_code)
