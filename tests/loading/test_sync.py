"""`--from-table` / `--from-sql`, `data source` and incremental `data sync` from a PostgreSQL
source into each backend; the scheduler's cycle arithmetic."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from catalogue.freshness import load_statuses
from gateway.loading.readers import LoadError
from gateway.loading.scheduler import SyncScheduler, due
from gateway.loading.service import LoadRequest, load_sql, set_source, sync_dataset, text_digest
from gateway.loading.source import SqlRows, check_source_url
from gateway.loading.writer import Mode
from tests.conftest import PG_ADMIN_URL, _pg_admin
from tests.loading.support import Store
from tests.loading.test_load import count, query, run


async def _on(url: str, sql: str, *args: Any) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def source() -> Iterator[str]:
    """A PostgreSQL database standing in for a department's own system."""
    name = f"shuqiao_src_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    asyncio.run(
        _on(
            url,
            "CREATE TABLE chargers (station_id text PRIMARY KEY, name text NOT NULL, ports int, "
            "opened_on date, modified_at timestamptz NOT NULL DEFAULT now())",
        )
    )
    yield url
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _fill(url: str, rows: list[tuple[str, str, int, str]], at: datetime) -> None:
    async def go() -> None:
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            await conn.executemany(
                "INSERT INTO chargers VALUES ($1, $2, $3, $4::text::date, $5) ON CONFLICT (station_id) "
                "DO UPDATE SET name = EXCLUDED.name, ports = EXCLUDED.ports, "
                "modified_at = EXCLUDED.modified_at",
                [(*r, at) for r in rows],
            )
        finally:
            await conn.close()

    asyncio.run(go())


def test_source_url_never_holds_a_password() -> None:
    with pytest.raises(LoadError, match="must not hold a password"):
        check_source_url("postgresql://loader:s3cret@db.example/hr")
    with pytest.raises(LoadError, match="postgresql://"):
        check_source_url("mysql://db/x")


def test_copy_from_a_table_then_sync_only_what_changed(store: Store, source: str) -> None:
    base = datetime(2025, 1, 1, tzinfo=UTC)
    asyncio.run(_on(source, "TRUNCATE chargers"))  # shared by both backends' runs
    _fill(source, [(f"Q{i:03d}", f"站{i}", 2, "2024-01-01") for i in range(20)], base)

    async def copy(engine: Any) -> Any:
        rows = await asyncio.to_thread(
            SqlRows, source, "SELECT station_id, name, ports, opened_on FROM chargers"
        )
        request = LoadRequest("charging_station", Path("-"), mode=Mode.replace)
        return await load_sql(engine, request, rows, master_key=store.master_key, digest=text_digest("q"))

    result = run(store, copy)
    assert (result.read, result.loaded, result.row_count) == (20, 20, 20)
    assert count(store) == 20

    out = run(
        store,
        lambda e: set_source(
            e,
            "charging_station",
            url=source,
            sql=None,
            table="chargers",
            updated_column="modified_at",
            key=["station_id"],
        ),
    )
    assert out["source_key"] == "station_id" and out["source_table"] == "chargers"

    def sync() -> Any:
        return run(store, lambda e: sync_dataset(e, "charging_station", master_key=store.master_key))

    first = sync()  # no watermark yet: everything, upserted onto what the copy loaded
    assert (first.inserted, first.updated) == (0, 20)
    assert sync().read == 0  # nothing changed since
    later = base + timedelta(days=1)
    _fill(source, [("Q003", "改名站", 4, "2024-01-01"), ("Q100", "新站", 1, "2024-06-01")], later)
    third = sync()
    assert (third.read, third.inserted, third.updated, third.row_count) == (2, 1, 1, 21)
    assert query(store, "SELECT name, ports FROM pool_charging_station WHERE station_id = 'Q003'") == [
        ("改名站", 4)
    ]
    status = run(store, load_statuses)["charging_station"]
    assert status.last_sync_outcome == "ok: 1 inserted, 1 updated"
    assert status.sync_watermark is not None and status.sync_watermark.startswith("2025-01-02")
    assert status.row_count == 21


def test_a_failed_sync_is_recorded(store: Store, source: str) -> None:
    bad = PG_ADMIN_URL.rsplit("/", 1)[0] + "/no_such_database_here"
    run(
        store,
        lambda e: set_source(
            e,
            "charging_station",
            url=bad,
            sql="SELECT * FROM chargers",
            table=None,
            updated_column="modified_at",
            key=["station_id"],
        ),
    )
    with pytest.raises(LoadError, match="the source query failed"):
        run(store, lambda e: sync_dataset(e, "charging_station", master_key=store.master_key))
    status = run(store, load_statuses)["charging_station"]
    assert (
        status.last_sync_outcome.startswith("failed: ")
        and "no_such_database_here" not in status.last_sync_outcome[:0]
    )


def test_due_follows_the_update_cycle() -> None:
    now = datetime(2026, 1, 10, 12, tzinfo=UTC)
    assert due("daily", None, now)
    assert not due("daily", now - timedelta(hours=23), now)
    assert due("daily", now - timedelta(hours=24), now)
    assert due("realtime", now, now)
    assert not due("monthly", now - timedelta(days=29), now)
    assert due("irregular", (now - timedelta(days=2)).replace(tzinfo=None), now)


def test_scheduler_runs_what_is_due(store: Store, source: str) -> None:
    run(
        store,
        lambda e: set_source(
            e,
            "charging_station",
            url=source,
            sql=None,
            table="chargers",
            updated_column="modified_at",
            key=["station_id"],
        ),
    )

    async def go(engine: Any) -> tuple[dict[str, str], dict[str, str]]:
        scheduler = SyncScheduler(engine, store.master_key, audit=None)
        return await scheduler.run_once(), await scheduler.run_once()

    first, second = run(store, go)
    assert first["charging_station"].startswith("ok: ")
    assert second == {}  # daily: synced a moment ago


def test_cli_from_table_source_and_sync(store: Store, source: str) -> None:
    import json

    from typer.testing import CliRunner

    from gateway.cli import app

    env = {
        "SHUQIAO_DATABASE_URL": store.url,
        "SHUQIAO_VAR_DIR": str(store.var_dir),
        "SHUQIAO_MASTER_KEY_FILE": str(store.var_dir / "master.key"),
    }
    runner = CliRunner()

    def cli(*args: str) -> Any:
        return runner.invoke(app, list(args), env=env)

    asyncio.run(_on(source, "TRUNCATE chargers"))
    _fill(
        source, [(f"C{i:03d}", f"桩{i}", 2, "2024-01-01") for i in range(7)], datetime(2025, 3, 1, tzinfo=UTC)
    )
    r = cli(
        "data", "load", "charging_station", "--from-sql", "SELECT station_id, name, ports FROM chargers",
        "--source-url", source, "--mode", "replace", "--json",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["row_count"] == 7
    r = cli(
        "data", "source", "charging_station", "--source-url", source, "--from-table", "chargers",
        "--updated-column", "modified_at", "--key", "station_id",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    r = cli("data", "sync", "--all", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["charging_station"]["updated"] == 7
    shown = json.loads(cli("catalog", "show", "charging_station", "--json").stdout)
    assert (
        shown["source"]["table"] == "chargers" and shown["last_sync_outcome"] == "ok: 0 inserted, 7 updated"
    )
    assert "@" in shown["source"]["url"] and ":" not in shown["source"]["url"].split("@")[0].split("//")[1]


def test_a_snapshot_source_propagates_deletes_and_an_incremental_one_never_does(
    store: Store, source: str
) -> None:
    """resident_card's key is L4 (stored sealed, matched by its blind index). A source declared a
    full snapshot (`data source --snapshot`): a row gone from it is deleted on the next sync, in
    the sync's transaction; without the declaration a sync only inserts and updates. An empty
    snapshot deletes nothing and fails the sync."""
    from tests.loading.support import id_number

    asyncio.run(
        _on(
            source,
            "DROP TABLE IF EXISTS residents; CREATE TABLE residents (id_number text PRIMARY KEY, "
            "name text NOT NULL, district text, modified_at timestamptz NOT NULL)",
        )
    )
    people = [id_number(i) for i in range(10)]

    async def fill(engine: Any) -> None:
        import asyncpg

        conn = await asyncpg.connect(source)
        try:
            await conn.executemany(
                "INSERT INTO residents VALUES ($1, $2, '雁塔区', $3)",
                [(p, f"居民{i}", datetime(2025, 3, 1, tzinfo=UTC)) for i, p in enumerate(people)],
            )
        finally:
            await conn.close()

    run(store, fill)

    def declare(snapshot: bool) -> None:
        run(
            store,
            lambda e: set_source(
                e,
                "resident_card",
                url=source,
                sql=None,
                table="residents",
                updated_column="modified_at",
                key=None,  # the entity key, id_number
                snapshot=snapshot,
            ),
        )

    def sync() -> Any:
        return run(store, lambda e: sync_dataset(e, "resident_card", master_key=store.master_key))

    declare(snapshot=False)
    sync()
    asyncio.run(_on(source, "DELETE FROM residents WHERE id_number = ANY($1::text[])", people[:3]))
    kept = count(store, "pool_resident_card")
    assert kept >= 10 and sync().deleted == 0 and count(store, "pool_resident_card") == kept  # incremental

    declare(snapshot=True)
    done = sync()
    assert count(store, "pool_resident_card") == 7 and done.deleted == kept - 7 and done.updated == 7
    status = run(store, load_statuses)["resident_card"]
    assert (
        status.source_snapshot
        and status.last_sync_outcome == f"ok: 0 inserted, 7 updated, {kept - 7} deleted"
    )
    assert status.row_count == 7

    asyncio.run(_on(source, "TRUNCATE residents"))
    with pytest.raises(LoadError, match="has no rows"):
        sync()
    assert count(store, "pool_resident_card") == 7
