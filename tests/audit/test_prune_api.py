"""After a prune, the officer JSON API (GET /audit/api/verify) and GraphQL (`verify { prunedThrough }`)
report the chain verified from the anchor, and a tampered event after it at its seq; migration 0009
upgrades a 0008 database with a chain in it, is the only head, and downgrades. SQLite and PostgreSQL;
a demo gateway of this module's own, so pruning does not touch the session's shared one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select, update

from gateway.audit import verify_chain
from gateway.audit.checkpoints import write_checkpoint
from gateway.audit.models import AuditEvent
from gateway.audit.retention import archive_and_prune, archive_dir
from gateway.crypto.signing import open_signing_store
from gateway.db import alembic_config, upgrade
from tests.audit import chain_helpers
from tests.audit.chain_helpers import run_with_engine as on_db
from tests.audit.test_audit_chain import make_event
from tests.audit.test_officer_api import officer  # noqa: F401  (the module fixture)
from tests.conftest import BACKENDS, DemoEnv, create_database, fresh_demo_env, gql

EVENTS = AuditEvent.__table__
VERIFY = "{ verify { ok eventsChecked firstBadSeq reason prunedThrough } }"


@pytest.fixture(scope="module", params=BACKENDS)
def demo_env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoEnv]:
    yield from fresh_demo_env(request.param, tmp_path_factory, "prune")


@pytest.fixture(scope="module")
def client(demo_env: DemoEnv) -> Iterator[Any]:
    from starlette.testclient import TestClient

    from gateway.app import create_app

    with TestClient(create_app(demo_env.settings)) as c:
        yield c


def test_json_api_and_graphql_verify_after_a_prune(
    client: Any,
    demo_env: DemoEnv,
    officer: str,  # noqa: F811
) -> None:
    auth = {"Authorization": f"Bearer {officer}"}
    before = client.get("/audit/api/verify", headers=auth).json()
    assert before["ok"] is True and "pruned_through" not in before, before
    for _ in range(3):
        assert gql(client, "open", "{ enterpriseRegistration(first: 1) { totalCount } }").status_code == 200
    store = open_signing_store(demo_env.settings.var_dir)
    directory = archive_dir(demo_env.settings.var_dir)

    async def prune(engine: Any) -> int:
        checkpoint = await write_checkpoint(engine, store)
        assert checkpoint is not None
        assert await archive_and_prune(engine, store, directory, through_seq=checkpoint.seq) is not None
        return checkpoint.seq

    k = on_db(demo_env.settings.database_url, prune)
    report = client.get("/audit/api/verify", headers=auth).json()
    assert (report["ok"], report["first_bad_seq"], report["pruned_through"]) == (True, None, k), report
    r = client.post("/audit/graphql", json={"query": VERIFY}, headers=auth)
    verify = r.json()["data"]["verify"]
    assert (verify["ok"], verify["prunedThrough"], verify["firstBadSeq"]) == (True, k, None), verify

    async def tamper(engine: Any) -> None:
        async with engine.begin() as conn:
            await conn.execute(update(EVENTS).where(EVENTS.c.seq == k + 1).values(status=599))

    on_db(demo_env.settings.database_url, tamper)
    report = client.get("/audit/api/verify", headers=auth).json()
    assert (report["ok"], report["first_bad_seq"], report["pruned_through"]) == (False, k + 1, k), report
    verify = client.post("/audit/graphql", json={"query": VERIFY}, headers=auth).json()["data"]["verify"]
    assert (verify["ok"], verify["firstBadSeq"], verify["prunedThrough"]) == (False, k + 1, k), verify


@pytest.mark.parametrize("backend", BACKENDS)
def test_migration_0009_upgrades_from_0008(backend: str, tmp_path: Path) -> None:
    from alembic import command
    from alembic.script import ScriptDirectory

    url, drop = create_database(backend, tmp_path)
    try:
        assert ScriptDirectory.from_config(alembic_config(url)).get_revision("0009").down_revision == "0008"
        upgrade(url, "0008")
        events = [make_event(i) for i in range(1, 4)]
        on_db(url, lambda engine: chain_helpers.append(engine, events, legacy_index=True))
        upgrade(url, "0009")

        async def check(engine: Any) -> None:
            async with engine.connect() as conn:
                columns = await conn.run_sync(
                    lambda c: {col["name"] for col in inspect(c).get_columns("audit_prune_anchor")}
                )
                assert columns == {"through_seq", "from_seq", "hash", "archive", "archive_sm3", "pruned_at"}
                assert (await conn.execute(select(EVENTS.c.seq))).scalars().all() == [1, 2, 3]
            report = await verify_chain(engine)
            assert (report.ok, report.events_checked, report.pruned_through) == (True, 3, None), report

        on_db(url, check)
        command.downgrade(alembic_config(url), "0008")

        async def gone(engine: Any) -> bool:
            async with engine.connect() as conn:
                return await conn.run_sync(lambda c: inspect(c).has_table("audit_prune_anchor"))

        assert on_db(url, gone) is False
        upgrade(url, "0009")
        assert on_db(url, gone) is True
    finally:
        drop()
