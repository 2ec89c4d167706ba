"""Every administrative action is one audit event, from the admin API and from the CLI: who
(principal), what (`admin.client.create`, ...), on what (`target`) and the outcome, refusals
included, and never a secret, hash or password in the stored row. A creation whose event cannot
be recorded is taken back. Subgraph reads are events too."""

from __future__ import annotations

import json
import secrets
from typing import Any

from sqlalchemy import select

from gateway.audit.models import AuditEvent
from gateway.identity.models import OAuthClient, User
from tests.identity.conftest import on_db
from tests.identity.test_audit_events import _rid, events, one


def _admin_token(demo_env: Any, scopes: list[str] | None = None, client_id: str = "ops-console") -> str:
    from gateway.identity.tokens import TokenService, load_signing_key

    svc = TokenService(
        load_signing_key(demo_env.settings.var_dir / "keys" / "token-es256.pem"), "http://testserver"
    )
    token, _ = svc.issue(client_id, None, scopes or ["admin"], subject="admin-li")
    return token


def _call(
    client: Any, method: str, path: str, token: str | None, body: Any = None, **kw: Any
) -> tuple[Any, str]:
    rid = _rid()
    headers = {"X-Request-ID": rid, **({"Authorization": f"Bearer {token}"} if token else {})}
    return client.request(method, path, headers=headers, json=body, **kw), rid


def test_client_events_through_the_admin_api(client: Any, demo_env: Any) -> None:
    admin = _admin_token(demo_env)
    cid = f"adm-{secrets.token_hex(3)}"
    r, rid = _call(client, "POST", "/admin/identity/clients", admin, {"department": "tax", "client_id": cid})
    assert r.status_code == 201
    secret = r.json()["client_secret"]
    row, d = one(demo_env, rid, secret, admin)
    assert (row["operation_name"], row["status"], row["principal_kind"]) == (
        "admin.client.create",
        201,
        "client",
    )
    assert (row["principal_id"], row["subject"], row["consumer"]) == ("ops-console", "admin-li", "tax")
    assert d["target"] == cid and d["client_id"] == cid and d["disabled"] is False

    async def secret_hash(engine: Any) -> str:
        async with engine.connect() as conn:
            return (
                await conn.execute(select(OAuthClient.secret_hash).where(OAuthClient.client_id == cid))
            ).scalar_one()

    one(demo_env, rid, on_db(demo_env, secret_hash))  # nor its hash

    for op in ("disable", "enable"):
        r, rid = _call(client, "POST", f"/admin/identity/clients/{cid}/{op}", admin)
        assert r.status_code == 201 and r.json()["disabled"] is (op == "disable")
        row, d = one(demo_env, rid, admin)
        assert row["operation_name"] == f"admin.client.{op}" and d["target"] == cid

    old_hash = on_db(demo_env, secret_hash)
    r, rid = _call(client, "POST", f"/admin/identity/clients/{cid}/rotate-secret", admin)
    assert r.status_code == 201
    new_secret = r.json()["client_secret"]
    row, d = one(demo_env, rid, new_secret, secret, old_hash, on_db(demo_env, secret_hash))
    assert row["operation_name"] == "admin.client.rotate_secret" and d["target"] == cid
    assert _token_status(client, cid, secret) == 401 and _token_status(client, cid, new_secret) == 200

    r, rid = _call(client, "POST", "/admin/identity/clients/no-such/disable", admin)
    assert r.status_code == 400
    row, d = one(demo_env, rid)
    assert row["operation_name"] == "admin.client.disable" and row["status"] == 400
    assert d["target"] == "no-such" and json.loads(row["error_codes"]) == ["bad_request"]


def _token_status(client: Any, cid: str, secret: str) -> int:
    return client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(cid, secret)
    ).status_code


def test_user_and_issuer_events_through_the_admin_api(client: Any, demo_env: Any) -> None:
    admin = _admin_token(demo_env)
    username, password = f"adm-{secrets.token_hex(3)}", f"pw-{secrets.token_hex(8)}-long"
    body = {"username": username, "password": password, "roles": ["developer"], "department": "tax"}
    r, rid = _call(client, "POST", "/admin/identity/users", admin, body)
    assert r.status_code == 201
    row, d = one(demo_env, rid, password)

    async def password_hash(engine: Any) -> str:
        async with engine.connect() as conn:
            return (
                await conn.execute(select(User.password_hash).where(User.username == username))
            ).scalar_one()

    one(demo_env, rid, on_db(demo_env, password_hash))
    assert (
        row["operation_name"] == "admin.user.create"
        and d["target"] == username
        and d["roles"] == ["developer"]
    )

    r, rid = _call(client, "POST", f"/admin/identity/users/{username}/roles", admin, {"roles": ["steward"]})
    row, d = one(demo_env, rid)
    assert row["operation_name"] == "admin.user.roles" and d["roles"] == ["steward"]
    for op in ("disable", "enable", "unlock"):
        r, rid = _call(client, "POST", f"/admin/identity/users/{username}/{op}", admin)
        assert r.status_code == 201
        assert one(demo_env, rid)[0]["operation_name"] == f"admin.user.{op}"

    issuer = f"https://idp-{secrets.token_hex(3)}.example.gov.cn"
    body = {
        "issuer": issuer,
        "discovery_url": f"{issuer}/.well-known/openid-configuration",
        "audience": "shuqiao",
    }
    r, rid = _call(client, "POST", "/admin/identity/issuers", admin, body)
    assert r.status_code == 201
    row, d = one(demo_env, rid)
    assert row["operation_name"] == "admin.issuer.add" and d["target"] == issuer
    r, rid = _call(client, "DELETE", "/admin/identity/issuers", admin, params={"issuer": issuer})
    assert r.status_code == 200
    row, d = one(demo_env, rid)
    assert row["operation_name"] == "admin.issuer.remove" and d["target"] == issuer


def test_refused_admin_calls_are_events(client: Any, demo_env: Any) -> None:
    r, rid = _call(client, "POST", "/admin/identity/clients", None, {"department": "tax"})
    assert r.status_code == 401
    row, _ = one(demo_env, rid)
    assert (row["operation_name"], row["status"], row["principal_kind"]) == (
        "admin.client.create",
        401,
        "anonymous",
    )
    assert json.loads(row["error_codes"]) == ["invalid_token"]

    weak = _admin_token(demo_env, ["catalog:write"], client_id="demo-hrss")
    r, rid = _call(client, "POST", "/admin/identity/users", weak, {"username": "x", "password": "y"})
    assert r.status_code == 403
    row, _ = one(demo_env, rid, weak)
    assert (row["operation_name"], row["principal_id"]) == ("admin.user.create", "demo-hrss")
    assert json.loads(row["error_codes"]) == ["insufficient_scope"]

    r, rid = _call(client, "GET", "/admin/identity/clients", _admin_token(demo_env))
    assert r.status_code == 200 and events(demo_env, rid) == []  # a listing changes nothing
    assert client.head("/admin/identity/roles").status_code == 401


class _Broken:
    async def record(self, event: Any) -> None:
        raise RuntimeError("disk full")


def test_a_client_whose_creation_is_not_recorded_is_disabled(demo_env: Any) -> None:
    from starlette.testclient import TestClient

    from gateway.app import build_state, create_app

    settings = demo_env.settings
    cid = f"unrec-{secrets.token_hex(3)}"
    with TestClient(create_app(settings, state=build_state(settings, access_log=_Broken()))) as broken:
        r, _ = _call(
            broken,
            "POST",
            "/admin/identity/clients",
            _admin_token(demo_env),
            {"department": "tax", "client_id": cid},
        )
    assert r.status_code == 503 and "client_secret" not in r.text and r.headers["retry-after"]

    async def disabled(engine: Any) -> bool:
        async with engine.connect() as conn:
            return (
                await conn.execute(select(OAuthClient.disabled).where(OAuthClient.client_id == cid))
            ).scalar_one()

    assert on_db(demo_env, disabled) is True


def test_a_secret_rotation_not_recorded_is_taken_back(client: Any, demo_env: Any) -> None:
    from starlette.testclient import TestClient

    from gateway.app import build_state, create_app

    admin = _admin_token(demo_env)
    cid = f"unrot-{secrets.token_hex(3)}"
    secret = _call(client, "POST", "/admin/identity/clients", admin, {"department": "tax", "client_id": cid})[
        0
    ].json()["client_secret"]
    settings = demo_env.settings
    with TestClient(create_app(settings, state=build_state(settings, access_log=_Broken()))) as broken:
        r, _ = _call(broken, "POST", f"/admin/identity/clients/{cid}/rotate-secret", admin)
    assert r.status_code == 503 and "client_secret" not in r.text
    assert _token_status(client, cid, secret) == 200  # the old secret works again


def test_cli_changes_are_events(demo_env: Any) -> None:
    from typer.testing import CliRunner

    from gateway.cli import app

    s = demo_env.settings
    env = {
        "SHUQIAO_DATABASE_URL": s.database_url,
        "SHUQIAO_VAR_DIR": str(s.var_dir),
        "SHUQIAO_MASTER_KEY_FILE": str(s.master_key_file),
    }

    def run(*args: str) -> Any:
        result = CliRunner().invoke(app, [*args, "--json"], env=env)
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    cid = f"cli-{secrets.token_hex(3)}"
    username, password = f"cli-{secrets.token_hex(3)}", f"pw-{secrets.token_hex(8)}-long"
    issuer = f"https://idp-{secrets.token_hex(3)}.example.gov.cn"
    made = run("client", "create", "--department", "tax", "--client-id", cid)
    rotated = run("client", "rotate-secret", cid)
    run("client", "disable", cid)
    run("client", "disable", cid, "--enable")
    run("user", "create", username, "--role", "developer", "--department", "tax", "--password", password)
    run("user", "set-roles", username, "--role", "steward")
    run("user", "disable", username)
    run(
        "issuer",
        "add",
        issuer,
        "--discovery-url",
        f"{issuer}/.well-known/openid-configuration",
        "--audience",
        "x",
    )
    run("issuer", "remove", issuer)

    async def go(engine: Any) -> list[dict[str, Any]]:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(AuditEvent.__table__)
                .where(AuditEvent.tier == "identity", AuditEvent.principal_kind == "operator")
                .order_by(AuditEvent.seq)  # type: ignore[arg-type]
            )
            return [dict(r._mapping) for r in rows]

    def target(row: dict[str, Any]) -> str:
        return json.loads(row["detail"])["reads"][0]["identity"].get("target")

    mine = [r for r in on_db(demo_env, go) if target(r) in (cid, username, issuer)]
    assert [r["operation_name"] for r in mine] == [
        "admin.client.create",
        "admin.client.rotate_secret",
        "admin.client.disable",
        "admin.client.enable",
        "admin.user.create",
        "admin.user.roles",
        "admin.user.disable",
        "admin.issuer.add",
        "admin.issuer.remove",
    ]
    assert all(r["principal_id"].startswith("cli") for r in mine)
    text = json.dumps(mine, default=str)
    assert made["client_secret"] not in text and rotated["client_secret"] not in text and password not in text


# ---------------------------------------------------------------------- subgraph reads


def test_subgraph_reads_are_events(client: Any, demo_env: Any, tokens: dict[str, str]) -> None:
    r, rid = _call(client, "GET", "/share/subgraphs/samr.graphql", tokens["samr"])
    assert r.status_code == 200
    (row,) = events(demo_env, rid)
    assert (row["tier"], row["operation_name"], row["status"]) == ("share", "subgraph.sdl", 200)
    assert (row["principal_kind"], row["consumer"]) == ("department", "samr")
    assert json.loads(row["detail"])["reads"] == [{"subgraph": {"department": "samr"}}]
    assert tokens["samr"] not in json.dumps(row, default=str)

    r, rid = _call(client, "GET", "/share/subgraphs/samr.graphql", tokens["tax"])
    assert r.status_code == 403
    (row,) = events(demo_env, rid)
    assert (row["consumer"], row["status"], json.loads(row["error_codes"])) == ("tax", 403, ["FORBIDDEN"])

    r, rid = _call(client, "GET", "/share/subgraphs/samr.graphql", None)
    assert r.status_code == 401
    (row,) = events(demo_env, rid)
    assert (row["principal_kind"], row["status"]) == ("anonymous", 401)
