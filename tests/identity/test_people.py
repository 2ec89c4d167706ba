"""People: scrypt password hashes, lock-out after repeated failures without slowing anyone
else, roles limiting the scopes a person can be granted, and the admin API."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import pytest

from gateway.identity.passwords import hash_password, verify_password
from gateway.identity.roles import UnknownRole, scopes_for_roles
from gateway.identity.users import MAX_FAILURES, UserService
from tests.identity.conftest import on_db


def test_scrypt_hashes() -> None:
    h = hash_password("a long enough password", n=2**12)
    assert h.startswith("scrypt$4096$8$1$") and "a long enough password" not in h
    assert verify_password("a long enough password", h)
    assert not verify_password("a long enough passworD", h)
    assert hash_password("same password here", n=2**12) != hash_password("same password here", n=2**12)
    assert not verify_password("x", "md5$whatever")


def test_roles() -> None:
    assert "share:read" in scopes_for_roles(["developer"])
    assert "audit:read" not in scopes_for_roles(["developer"])
    assert "admin" in scopes_for_roles(["admin"])
    assert scopes_for_roles(["security_officer"]) >= {"audit:read", "openid"}


def test_hundred_wrong_passwords_lock_without_slowing_others(demo_env: Any) -> None:
    victim, bystander = f"victim-{secrets.token_hex(3)}", f"bystander-{secrets.token_hex(3)}"
    password = "the right password 123"

    async def scenario(engine: Any) -> tuple[list[bool], float, bool, bool]:
        users = UserService(engine)
        await users.create(victim, password, roles=["developer"], department="samr")
        await users.create(bystander, password, roles=["steward"], department="tax")
        locked_flags: list[bool] = []

        async def attacker() -> None:
            for i in range(100):
                res = await users.authenticate(victim, f"guess-{i}")
                assert res.user is None
                locked_flags.append(res.locked)

        async def timed_bystander() -> float:
            worst = 0.0
            for _ in range(5):
                t = time.perf_counter()
                assert (await users.authenticate(bystander, password)).user is not None
                worst = max(worst, time.perf_counter() - t)
            return worst

        _, worst = await asyncio.gather(attacker(), timed_bystander())
        right_now = (await users.authenticate(victim, password)).user is not None
        await users.update(victim, unlock=True)
        after_unlock = (await users.authenticate(victim, password)).user is not None
        return locked_flags, worst, right_now, after_unlock

    flags, worst, right_password_while_locked, after_unlock = on_db(demo_env, scenario)
    assert flags.index(True) == MAX_FAILURES - 1 and all(flags[MAX_FAILURES - 1 :])
    assert not right_password_while_locked  # even the right password waits out the lock
    assert after_unlock
    assert worst < 1.0, f"a bystander's sign-in took {worst:.2f}s"


def test_unknown_role_refused(demo_env: Any) -> None:
    with pytest.raises(UnknownRole):
        on_db(
            demo_env,
            lambda e: UserService(e).create("x" + secrets.token_hex(3), "long password 123", roles=["root"]),
        )


def test_admin_api(client: Any, demo_env: Any) -> None:
    from gateway.identity.tokens import TokenService, load_signing_key

    svc = TokenService(
        load_signing_key(demo_env.settings.var_dir / "keys" / "token-es256.pem"), "http://testserver"
    )
    admin, _ = svc.issue("ops", None, ["admin"])
    share_only, _ = svc.issue("ops", "samr", ["share:read"])
    h = {"Authorization": f"Bearer {admin}"}
    assert client.get("/admin/identity/roles").status_code == 401
    r = client.get("/admin/identity/roles", headers={"Authorization": f"Bearer {share_only}"})
    assert r.status_code == 401  # a share-tier token is not for the admin audience
    roles = client.get("/admin/identity/roles", headers=h).json()
    assert {r["role"] for r in roles} == {
        "developer",
        "steward",
        "security_officer",
        "enterprise_user",
        "admin",
    }
    name = f"officer-{secrets.token_hex(3)}"
    r = client.post(
        "/admin/identity/users",
        headers=h,
        json={"username": name, "password": "a long password 1", "roles": ["security_officer"]},
    )
    assert r.status_code == 201 and "password" not in r.text
    assert (
        client.post(
            "/admin/identity/users", headers=h, json={"username": "y", "password": "short", "roles": []}
        ).status_code
        == 400
    )
    r = client.post(
        "/admin/identity/apikeys",
        headers=h,
        json={"enterprise": "demo-bank", "daily_quota": 5, "datasets": ["tax_credit_rating"]},
    )
    created = r.json()
    assert r.status_code == 201 and created["api_key"].startswith(f"sq_{created['prefix']}_")
    listing = client.get("/admin/identity/apikeys?enterprise=demo-bank", headers=h).text
    assert created["prefix"] in listing and created["api_key"] not in listing
    rotated = client.post(f"/admin/identity/apikeys/{created['prefix']}/rotate", headers=h).json()
    assert rotated["previous"]["replaced_by"] == rotated["prefix"]
    assert (
        client.post(f"/admin/identity/apikeys/{rotated['prefix']}/revoke", headers=h).json()["state"]
        == "revoked"
    )
    r = client.post(
        "/admin/identity/clients", headers=h, json={"department": "eco", "scopes": ["share:read"]}
    )
    assert r.status_code == 201 and r.json()["client_secret"]
    assert r.json()["client_secret"] not in client.get("/admin/identity/clients", headers=h).text


def test_cli_json(demo_env: Any) -> None:
    import json

    from typer.testing import CliRunner

    from gateway.cli import app

    s = demo_env.settings
    env = {
        "SHUQIAO_DATABASE_URL": s.database_url,
        "SHUQIAO_VAR_DIR": str(s.var_dir),
        "SHUQIAO_MASTER_KEY_FILE": str(s.master_key_file),
    }
    run = CliRunner().invoke
    r = run(app, ["apikey", "create", "--enterprise", "demo-bank", "--daily-quota", "7", "--json"], env=env)
    assert r.exit_code == 0, r.output
    made = json.loads(r.output)
    listed = run(app, ["apikey", "list", "--enterprise", "demo-bank", "--json"], env=env)
    assert made["prefix"] in listed.output and made["api_key"] not in listed.output
    rotated = json.loads(run(app, ["apikey", "rotate", made["prefix"], "--json"], env=env).output)
    assert rotated["previous"]["replaced_by"] == rotated["prefix"]
    assert (
        json.loads(run(app, ["apikey", "revoke", rotated["prefix"], "--json"], env=env).output)["state"]
        == "revoked"
    )
    name = f"steward-{secrets.token_hex(3)}"
    r = run(
        app,
        [
            "user",
            "create",
            name,
            "--role",
            "steward",
            "--department",
            "tax",
            "--password",
            "a long password 42",
            "--json",
        ],
        env=env,
    )
    assert r.exit_code == 0 and json.loads(r.output)["roles"] == ["steward"]
    assert (
        run(
            app, ["user", "create", "z" + name, "--role", "root", "--password", "a long password 42"], env=env
        ).exit_code
        == 2
    )
    r = run(
        app,
        [
            "client",
            "create",
            "--department",
            "hrss",
            "--grant-type",
            "authorization_code",
            "--grant-type",
            "refresh_token",
            "--redirect-uri",
            "https://app.example/cb",
            "--json",
        ],
        env=env,
    )
    assert r.exit_code == 0 and json.loads(r.output)["client_secret"]
    assert name in run(app, ["user", "list", "--json"], env=env).output
