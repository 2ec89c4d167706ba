"""Loading the demo on SQLite and PostgreSQL: counts, types, joins, idempotency, atomicity."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, inspect, select, text

from catalogue.pool import pool_table
from catalogue.protection import PoolKeyring
from gateway.db import create_engine, upgrade
from gateway.demo import generate as demo_generate
from gateway.demo.catalogue import DATASETS, ENTERPRISE_REGISTRATION, POPULATION
from gateway.demo.generate import DemoGenerator, Size
from gateway.demo.load import load_demo
from tests.conftest import BACKENDS, create_database

TINY = Size("tiny", people=600, enterprises=80, aqi_days=7)


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    url, drop = create_database(request.param, tmp_path)
    upgrade(url)
    yield url
    drop()


async def _counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return {
                d.code: (await conn.execute(select(func.count()).select_from(pool_table(d)))).scalar_one()
                for d in DATASETS
            }
    finally:
        await engine.dispose()


MASTER_KEY = bytes(range(32))  # a fixed test key: these tests look at rows, not at key handling


async def _index_names(url: str, table: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda c: {i["name"] for i in inspect(c).get_indexes(table)})
    finally:
        await engine.dispose()


async def _load(url: str, size: str | Size = TINY) -> dict[str, int]:
    engine = create_engine(url)
    try:
        return await load_demo(engine, size=size, progress=False, master_key=MASTER_KEY)
    finally:
        await engine.dispose()


def test_load_counts_types_joins_and_idempotency(url: str) -> None:
    gen = DemoGenerator(TINY)
    expected = {d.code: gen.count(d.code) for d in DATASETS}
    assert asyncio.run(_load(url)) == expected
    assert asyncio.run(_counts(url)) == expected
    # Loading again changes nothing and reports what is there.
    assert asyncio.run(_load(url)) == expected
    assert asyncio.run(_counts(url)) == expected

    async def check() -> None:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                er = pool_table(ENTERPRISE_REGISTRATION)
                first = (await conn.execute(select(er).order_by(er.c._id).limit(1))).mappings().one()
                want = next(gen.dicts("enterprise_registration"))
                # L4 / sensitive columns are stored encrypted (and blind-indexed): open them.
                keyring = await PoolKeyring(MASTER_KEY).load(engine)
                cipher = keyring.cipher("enterprise_registration")
                got = {k: first[k] for k in want}
                assert got["legal_rep_id_number"].startswith("sm4gcm:")
                got["legal_rep_id_number"] = cipher.open("legal_rep_id_number", got["legal_rep_id_number"])
                assert got == want  # same values, same Python types
                assert isinstance(first["registered_capital"], Decimal)
                assert isinstance(first["establishment_date"], date)
                # Every legal representative is a person in population: the join is real,
                # through the blind indexes (each dataset has its own index key, so compare clear).
                pop_cipher = keyring.cipher("population")
                pop = pool_table(POPULATION)
                people = {
                    pop_cipher.open("id_number", v)
                    for v in (await conn.execute(select(pop.c.id_number))).scalars()
                }
                reps = [
                    cipher.open("legal_rep_id_number", v)
                    for v in (await conn.execute(select(er.c.legal_rep_id_number))).scalars()
                ]
                assert len(reps) == expected["enterprise_registration"] and set(reps) <= people
        finally:
            await engine.dispose()

    asyncio.run(check())
    indexes = asyncio.run(_index_names(url, "pool_population"))
    assert {"ix_pool_population_id_number__bidx", "ix_pool_population_district_code"} <= indexes


def test_a_failing_dataset_leaves_nothing_half_written(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real_rows = DemoGenerator.rows

    def failing_rows(self: DemoGenerator, dataset: str) -> Iterator[tuple[Any, ...]]:
        for i, row in enumerate(real_rows(self, dataset)):
            # On SQLite, four 100-row batches are already written when this fires.
            if dataset == "population" and i == 450:
                raise RuntimeError("generator broke")
            yield row

    monkeypatch.setattr(demo_generate.DemoGenerator, "rows", failing_rows)
    monkeypatch.setattr("gateway.demo.load.BATCH_ROWS", 100)
    with pytest.raises(RuntimeError, match="generator broke"):
        asyncio.run(_load(url))
    counts = asyncio.run(_counts(url))
    assert counts["population"] == 0
    # Datasets loaded before the failure were committed on their own.
    assert counts["enterprise_registration"] == TINY.enterprises
    # The indexes dropped for the failed load are back: the drop was rolled back too.
    assert "ix_pool_population_id_number__bidx" in asyncio.run(_index_names(url, "pool_population"))

    monkeypatch.setattr(demo_generate.DemoGenerator, "rows", real_rows)
    assert asyncio.run(_load(url))["population"] == TINY.people


def test_small_size_loads_thousands_of_rows(url: str) -> None:
    counts = asyncio.run(_load(url, "small"))
    assert counts["population"] == 5_000 and counts["enterprise_registration"] == 1_000
    assert counts["air_quality_daily"] == 366 * 11

    async def insured_people_and_employers_exist() -> tuple[int, int]:
        # ID numbers are stored encrypted under per-dataset keys (no SQL join can link two
        # datasets' ciphertexts, by design); compare the clear values instead.
        engine = create_engine(url)
        try:
            keyring = await PoolKeyring(MASTER_KEY).load(engine)
            pop_c, si_c = keyring.cipher("population"), keyring.cipher("social_insurance")
            async with engine.connect() as conn:
                people = {
                    pop_c.open("id_number", v)
                    for v in (await conn.execute(text("SELECT id_number FROM pool_population"))).scalars()
                }
                codes = set(
                    (
                        await conn.execute(text("SELECT credit_code FROM pool_enterprise_registration"))
                    ).scalars()
                )
                rows = (
                    await conn.execute(
                        text("SELECT id_number, employer_credit_code FROM pool_social_insurance")
                    )
                ).all()
            ok = sum(1 for i, e in rows if si_c.open("id_number", i) in people and e in codes)
            return ok, len(rows)
        finally:
            await engine.dispose()

    ok, total = asyncio.run(insured_people_and_employers_exist())
    assert ok == total == counts["social_insurance"]
