"""Grants as a managed set (issue 15, item 2), through the CLI and HTTP, on SQLite and PostgreSQL:
grants add up (never "the newest replaces"), the open tier honours a grant's fields, unknown
consumers / datasets / fields are refused with the valid ones listed, and list / revoke / renew
work, are audited, and a revocation is honoured by the next request."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from alembic import command
from sqlalchemy import select
from typer.testing import CliRunner

from gateway.cli import app
from tests.conftest import gql
from tests.support import on_db, serve

POP = "{ population(first: 2) { edges { node { name birthDate idNumber } } } }"
TAX = "{ taxCreditRating(first: 2) { edges { node { creditCode rating taxpayerName } } } }"


def _codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


def cli(demo_env: Any, *args: str) -> Any:
    s = demo_env.settings
    env = {
        "SHUQIAO_DATABASE_URL": s.database_url,
        "SHUQIAO_VAR_DIR": str(s.var_dir),
        "SHUQIAO_MASTER_KEY_FILE": str(s.master_key_file),
    }
    return CliRunner().invoke(app, list(args), env=env)


def create(demo_env: Any, *args: str) -> dict[str, Any]:
    r = cli(demo_env, "grant", "create", *args, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def revoke(demo_env: Any, gid: int, reason: str = "test over") -> dict[str, Any]:
    r = cli(demo_env, "grant", "revoke", str(gid), "--reason", reason, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


@pytest.fixture
def cleanup(demo_env: Any) -> Iterator[list[int]]:
    """Grant ids a test made; revoked afterwards so other modules see only the demo's grants."""
    made: list[int] = []
    yield made
    for gid in made:
        cli(demo_env, "grant", "revoke", str(gid), "--reason", "test cleanup")


# ------------------------------------------------------------------ grants add up


def test_readme_example_adds_a_grant_and_hrss_keeps_its_other_fields(
    client: Any, tokens: dict[str, str], demo_env: Any, cleanup: list[int]
) -> None:
    r = cli(
        demo_env,
        "grant", "create", "--dataset", "population", "--consumer", "hrss",
        "--field", "name", "--clear", "name", "--purpose", "待遇发放核验",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "added to hrss's grants on population" in r.stdout and "replaces none" in r.stdout
    new_id = int(r.stdout.split()[1])
    cleanup.append(new_id)
    body = gql(client, "share", POP, token=tokens["hrss"]).json()
    assert "errors" not in body, body
    for e in body["data"]["population"]["edges"]:
        n = e["node"]
        assert n["name"] and "*" not in n["name"]
        assert len(n["birthDate"]) == 10  # still in clear, from the demo grant
        assert n["idNumber"].startswith("SM2-SM4-GCM.")  # still granted (encrypted), from the demo grant
    # the audit event names both grants the read was under, and per field the one that decided it
    event = _last_share_event(demo_env, "hrss")
    read = json.loads(event["detail"])["reads"][0]
    assert new_id in read["grant_ids"] and len(read["grant_ids"]) == 2
    fields = {f["field"]: f["grant_id"] for f in json.loads(event["detail"])["fields"]}
    assert (
        fields["name"] == fields["id_number"] == min(read["grant_ids"])
    )  # both give name in clear: the oldest


def test_create_notes_when_an_overlapping_grant_keeps_a_field_masked(
    client: Any, tokens: dict[str, str], demo_env: Any, cleanup: list[int]
) -> None:
    masked = create(
        demo_env, "--dataset", "population", "--consumer", "samr", "--field", "name", "--purpose", "核验"
    )
    cleanup.append(masked["id"])
    clear = create(
        demo_env, "--dataset", "population", "--consumer", "samr",
        "--field", "name", "--clear", "name", "--field", "gender", "--clear", "gender", "--purpose", "核验",
    )  # fmt: skip
    cleanup.append(clear["id"])
    assert clear["adds_to"] == [masked["id"]]
    assert clear["combined"] == {
        "grant_ids": [masked["id"], clear["id"]],
        "fields": ["gender", "name"],
        "clear_fields": ["gender"],
    }
    assert clear["notes"] and f"revoke {masked['id']}" in clear["notes"][0]
    body = gql(
        client, "share", "{ population(first: 2) { edges { node { name gender } } } }", token=tokens["samr"]
    )
    nodes = [e["node"] for e in body.json()["data"]["population"]["edges"]]
    assert all("*" in n["name"] and n["gender"] for n in nodes)


# ------------------------------------------------------------------ open tier honours a grant's fields


@pytest.fixture
def enterprise_key(demo_env: Any) -> str:
    from gateway.identity.apikeys import create_api_key
    from gateway.identity.clients import ensure_enterprise
    from gateway.secrets import SecretHasher, load_master_key

    hasher = SecretHasher(load_master_key(demo_env.settings.master_key_file))

    async def go(e: Any) -> str:
        await ensure_enterprise(e, "grant-test-co", "测试企业")
        key, _ = await create_api_key(e, hasher, "grant-test-co", name="grants test")
        return key

    return on_db(demo_env, go)


def test_open_tier_serves_only_the_granted_fields(
    client: Any, demo_env: Any, enterprise_key: str, cleanup: list[int]
) -> None:
    g = create(
        demo_env, "--tier", "open", "--dataset", "tax_credit_rating", "--consumer", "grant-test-co",
        "--field", "creditCode", "--field", "rating", "--purpose", "授信审查",
    )  # fmt: skip
    cleanup.append(g["id"])
    assert g["fields"] == ["credit_code", "rating"]  # camelCase accepted, stored snake_case
    body = gql(client, "open", TAX, headers={"X-API-Key": enterprise_key}).json()
    nodes = [e["node"] for e in body["data"]["taxCreditRating"]["edges"]]
    assert len(nodes) == 2 and all(
        n["creditCode"] and n["rating"] and n["taxpayerName"] is None for n in nodes
    )
    assert set(_codes(body)) == {"FORBIDDEN_FIELD"}
    assert {e["path"][-1] for e in body["errors"]} == {"taxpayerName"}
    assert "not in an approved grant" in body["errors"][0]["extensions"]["reason"]
    # a grant with no field listed is the whole open view (the demo bank's)
    bank = gql(
        client, "open", TAX, headers={"X-API-Key": demo_env.credentials["api_keys"]["demo-bank"]}
    ).json()
    assert "errors" not in bank and bank["data"]["taxCreditRating"]["edges"][0]["node"]["taxpayerName"]


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("args", "message", "lists"),
    [
        (["--consumer", "nosuchdept", "--field", "name"], "no department 'nosuchdept'", "hrss"),
        (["--consumer", "demo-bank", "--field", "name"], "no department 'demo-bank'", "samr"),
        (["--consumer", "hrss", "--field", "nosuchfield"], "nosuchfield not grantable", "birth_date"),
        (["--consumer", "hrss", "--field", "name", "--clear", "gender"], "gender are not granted", "name"),
        (
            ["--consumer", "hrss", "--field", "idNumber", "--clear", "idNumber"],
            "always delivered encrypted",
            "",
        ),
        (["--consumer", "hrss"], "lists the fields it grants", "id_number"),
        (["--tier", "open", "--consumer", "hrss"], "no enterprise (API-key holder) 'hrss'", "demo-bank"),
    ],
)
def test_create_refuses_unknown_names_and_lists_the_valid_ones(
    demo_env: Any, args: list[str], message: str, lists: str
) -> None:
    r = cli(demo_env, "grant", "create", "--dataset", "population", "--purpose", "p", *args)
    assert r.exit_code == 2, r.output
    assert message in r.stderr and lists in r.stderr and r.stdout == ""


def test_create_refuses_unknown_and_unshareable_datasets(demo_env: Any) -> None:
    r = cli(
        demo_env,
        "grant",
        "create",
        "--dataset",
        "nosuch",
        "--consumer",
        "hrss",
        "--field",
        "a",
        "--purpose",
        "p",
    )
    assert r.exit_code == 2 and "no dataset 'nosuch'" in r.stderr and "population" in r.stderr
    r = cli(demo_env, "grant", "create", "--tier", "open", "--dataset", "population",
            "--consumer", "demo-bank", "--purpose", "p")  # fmt: skip
    assert r.exit_code == 2 and "不予开放" in r.stderr and "tax_credit_rating" in r.stderr


# ------------------------------------------------------------------ lifecycle


def test_revoke_is_honoured_by_the_next_request(
    client: Any, tokens: dict[str, str], demo_env: Any, cleanup: list[int]
) -> None:
    q = "{ population(first: 1) { edges { node { birthDate } } } }"
    assert _codes(gql(client, "share", q, token=tokens["samr"]).json()) == ["FORBIDDEN_FIELD"]
    g = create(
        demo_env, "--dataset", "population", "--consumer", "samr", "--field", "birthDate", "--purpose", "核验"
    )
    cleanup.append(g["id"])
    ok = gql(client, "share", q, token=tokens["samr"]).json()
    assert (
        "errors" not in ok and len(ok["data"]["population"]["edges"][0]["node"]["birthDate"]) == 4
    )  # masked
    done = revoke(demo_env, g["id"], "用途已结束")
    assert done["state"] == "revoked" and done["revoke_reason"] == "用途已结束" and done["revoked_by"]
    refused = gql(client, "share", q, token=tokens["samr"]).json()
    assert _codes(refused) == ["FORBIDDEN_FIELD"]
    again = cli(demo_env, "grant", "revoke", str(g["id"]), "--reason", "twice")
    assert again.exit_code == 2 and "already revoked" in again.stderr
    assert cli(demo_env, "grant", "revoke", str(g["id"]), "--reason", " ").exit_code == 2
    assert cli(demo_env, "grant", "revoke", "999999", "--reason", "x").exit_code == 2


def test_revoke_reaches_a_served_gateway_within_its_poll_interval(
    demo_env: Any, tokens: dict[str, str], cleanup: list[int]
) -> None:
    q = {"query": "{ population(first: 1) { edges { node { birthDate } } } }"}
    h = {"Authorization": f"Bearer {tokens['eco']}"}
    with serve(demo_env, issuer="http://testserver") as base:  # the tokens fixture's issuer

        def granted() -> bool:
            body = httpx.post(f"{base}/share/graphql", json=q, headers=h, timeout=10).json()
            return "errors" not in body

        assert not granted()
        g = create(
            demo_env,
            "--dataset",
            "population",
            "--consumer",
            "eco",
            "--field",
            "birth_date",
            "--purpose",
            "x",
        )
        cleanup.append(g["id"])
        assert _eventually(granted, True)
        revoke(demo_env, g["id"])
        # the poll interval is 1 s: bounded by 30 polls of 0.1 s (not a timing assertion)
        assert _eventually(granted, False)


def _eventually(check: Any, wanted: bool, tries: int = 30) -> bool:
    for _ in range(tries):
        if check() is wanted:
            return True
        time.sleep(0.1)
    return False


def test_list_states_and_renew(demo_env: Any, cleanup: list[int]) -> None:
    g = create(
        demo_env, "--dataset", "population", "--consumer", "tax", "--field", "gender",
        "--purpose", "p", "--expires-days", "10",
    )  # fmt: skip
    cleanup.append(g["id"])
    assert g["state"] == "expiring"

    def ids(*args: str) -> list[int]:
        r = cli(demo_env, "grant", "list", *args, "--json")
        assert r.exit_code == 0, r.output
        return [x["id"] for x in json.loads(r.stdout)]

    assert g["id"] in ids("--consumer", "tax", "--state", "expiring")
    assert g["id"] in ids("--consumer", "tax")  # active includes expiring
    assert g["id"] not in ids("--consumer", "hrss", "--state", "all")
    assert g["id"] in ids("--dataset", "population", "--state", "all")
    human = cli(demo_env, "grant", "list", "--consumer", "tax", "--state", "expiring")
    assert human.exit_code == 0 and "population" in human.stdout and "expiring" in human.stdout

    until = (datetime.now(UTC) + timedelta(days=400)).date().isoformat()
    r = cli(demo_env, "grant", "renew", str(g["id"]), "--until", until, "--json")
    assert r.exit_code == 0, r.output
    renewed = json.loads(r.stdout)
    assert renewed["state"] == "active" and renewed["renewed_by"] and renewed["expires_at"] > g["expires_at"]
    assert g["id"] not in ids("--consumer", "tax", "--state", "expiring")
    shorter = cli(
        demo_env,
        "grant",
        "renew",
        str(g["id"]),
        "--until",
        (datetime.now(UTC) + timedelta(days=5)).date().isoformat(),
    )
    assert shorter.exit_code == 2 and "revoke it" in shorter.stderr
    assert cli(demo_env, "grant", "renew", str(g["id"]), "--until", "soon").exit_code == 2
    assert cli(demo_env, "grant", "list", "--state", "sideways").exit_code == 2

    revoke(demo_env, g["id"])
    assert g["id"] in ids("--consumer", "tax", "--state", "revoked")
    assert g["id"] not in ids("--consumer", "tax")
    refused = cli(demo_env, "grant", "renew", str(g["id"]), "--until", until)
    assert refused.exit_code == 2 and "only an approved grant" in refused.stderr


def test_expired_state_and_warning_period(demo_env: Any, cleanup: list[int]) -> None:
    from gateway.grants.service import list_grants

    g = create(demo_env, "--dataset", "population", "--consumer", "eco", "--field", "gender",
               "--purpose", "p", "--expires-days", "20")  # fmt: skip
    cleanup.append(g["id"])

    def states(**kw: Any) -> list[int]:
        return [r.id for r in on_db(demo_env, lambda e: list_grants(e, consumer="eco", **kw))]

    assert g["id"] in states(state="expiring")
    assert g["id"] not in states(state="expiring", warning_days=7)
    later = datetime.now(UTC) + timedelta(days=21)
    assert g["id"] in states(state="expired", now=later)
    assert g["id"] not in states(state="active", now=later)


# ------------------------------------------------------------------ every CLI action is an audit event


def test_grant_commands_are_audit_events(demo_env: Any, cleanup: list[int]) -> None:
    g = create(
        demo_env, "--dataset", "population", "--consumer", "tax", "--field", "gender", "--purpose", "审计"
    )
    cleanup.append(g["id"])
    assert cli(demo_env, "grant", "list", "--consumer", "tax").exit_code == 0
    until = (datetime.now(UTC) + timedelta(days=800)).date().isoformat()
    assert cli(demo_env, "grant", "renew", str(g["id"]), "--until", until).exit_code == 0
    revoke(demo_env, g["id"], "审计测试")
    cleanup.remove(g["id"])
    rows = _identity_events(demo_env, "grant.%")
    mine = [r for r in rows if _detail(r).get("grant_id") == g["id"]]
    assert [r["operation_name"] for r in mine] == ["grant.create", "grant.renew", "grant.revoke"]
    assert all(r["principal_kind"] == "operator" and r["consumer"] == "tax" for r in mine)
    assert _detail(mine[-1])["revoke_reason"] == "审计测试"
    listed = [
        r for r in rows if r["operation_name"] == "grant.list" and _detail(r)["filters"]["consumer"] == "tax"
    ]
    assert listed


# ------------------------------------------------------------------ helpers


def _detail(row: dict[str, Any]) -> dict[str, Any]:
    return json.loads(row["detail"])["reads"][0]["identity"]


def _identity_events(demo_env: Any, operation: str) -> list[dict[str, Any]]:
    from gateway.audit.models import AuditEvent

    async def go(engine: Any) -> list[dict[str, Any]]:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(AuditEvent.__table__)
                .where(AuditEvent.tier == "identity", AuditEvent.operation_name.like(operation))  # type: ignore[union-attr]
                .order_by(AuditEvent.seq)  # type: ignore[arg-type]
            )
            return [dict(r._mapping) for r in rows]

    return on_db(demo_env, go)


def _last_share_event(demo_env: Any, consumer: str) -> dict[str, Any]:
    from gateway.audit.models import AuditEvent

    async def go(engine: Any) -> dict[str, Any]:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    select(AuditEvent.__table__)
                    .where(AuditEvent.tier == "share", AuditEvent.consumer == consumer)
                    .order_by(AuditEvent.seq.desc())  # type: ignore[union-attr]
                    .limit(1)
                )
            ).first()
            assert row is not None
            return dict(row._mapping)

    return on_db(demo_env, go)


# ------------------------------------------------------------------ migration 0012


SEED_0011 = (
    "INSERT INTO department (code, name, name_en) VALUES ('d', 'D', 'D')",
    "INSERT INTO dataset (code, resource_code, name, name_en, description, department_code, category,"
    " theme, update_cycle, format, share, share_conditions, open, open_conditions, published,"
    " created_at, updated_at) VALUES ('ds', 'R-1', 'n', 'n', '', 'd', 'base', '', 'daily', 'table',"
    " 'conditional', '', 'none', '', true, 'NOW', 'NOW')",
    'INSERT INTO "grant" (tier, dataset_code, consumer, fields, clear_fields, purpose, status, created_at)'
    " VALUES ('share', 'ds', 'c', 'a b', 'a', 'p', 'approved', 'NOW')",
)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migration_0012_keeps_existing_grants_and_goes_both_ways(backend: str, tmp_path: Any) -> None:
    from sqlalchemy import inspect, text

    from gateway.db import alembic_config, create_engine, upgrade
    from tests.conftest import create_database

    url, drop = create_database(backend, tmp_path)
    try:
        upgrade(url, "0011")
        now = "2026-12-01 00:00:00"

        async def seed(e: Any) -> None:
            async with e.begin() as conn:
                for sql in SEED_0011:
                    await conn.execute(text(sql.replace("NOW", now)))

        async def columns(e: Any) -> tuple[set[str], list[Any]]:
            async with e.connect() as conn:
                cols = await conn.run_sync(lambda c: {col["name"] for col in inspect(c).get_columns("grant")})
                rows = (await conn.execute(text('SELECT consumer, fields, status FROM "grant"'))).all()
                return cols, [tuple(r) for r in rows]

        async def run(job: Any) -> Any:
            engine = create_engine(url)
            try:
                return await job(engine)
            finally:
                await engine.dispose()

        asyncio.run(run(seed))
        upgrade(url, "0012")
        cols, rows = asyncio.run(run(columns))
        assert {"revoked_at", "revoked_by", "revoke_reason", "renewed_at", "renewed_by", "created_by"} <= cols
        assert rows == [("c", "a b", "approved")]
        command.downgrade(alembic_config(url), "0011")
        cols, rows = asyncio.run(run(columns))
        assert "revoked_at" not in cols and rows == [("c", "a b", "approved")]
    finally:
        drop()


def test_a_grant_whose_event_cannot_be_recorded_is_not_left_in_force(demo_env: Any) -> None:
    s = demo_env.settings
    env = {
        "SHUQIAO_DATABASE_URL": s.database_url,
        "SHUQIAO_VAR_DIR": str(s.var_dir),
        "SHUQIAO_MASTER_KEY_FILE": str(s.var_dir / "no-such-master.key"),  # the audit sink cannot open
    }
    args = ["grant", "create", "--dataset", "population", "--consumer", "eco", "--field", "name"]
    r = CliRunner().invoke(app, [*args, "--purpose", "审计不可用"], env=env)
    assert r.exit_code == 3 and r.stdout == ""
    assert "audit log is unavailable" in r.stderr and "revoked again" in r.stderr
    from gateway.grants.service import list_grants

    eco = on_db(demo_env, lambda e: list_grants(e, consumer="eco", dataset="population", state="all"))
    mine = [g for g in eco if g.purpose == "审计不可用"]
    assert mine and all(g.status == "revoked" for g in mine)


def test_renewal_never_shortens_a_grant(demo_env: Any, cleanup: list[int]) -> None:
    from gateway.grants.service import GrantError, create_grant, renew_grant
    from policies.model import Tier

    row = on_db(
        demo_env,
        lambda e: create_grant(
            e, tier=Tier.SHARE, dataset="population", consumer="eco", fields=["gender"], purpose="无期限"
        ),
    )
    cleanup.append(row.id)
    with pytest.raises(GrantError, match="never expires"):
        on_db(demo_env, lambda e: renew_grant(e, row.id, until=datetime.now(UTC) + timedelta(days=9)))
