"""`shuqiao data load` at scale: rows/s and peak RSS on PostgreSQL and SQLite, next to
PostgreSQL's own COPY of the same CSV as the ceiling.

    .venv/bin/python bench/load_bench.py                 # 1,000,000 and 100,000 rows
    .venv/bin/python bench/load_bench.py --rows 200000   # one size only

The dataset has the demo's enterprise_registration shape (13 columns, a 统一社会信用代码 checked
per row, an L4 法定代表人身份证号 checked, SM4-sealed and blind-indexed per row, a decimal and a
date). Each load runs in a child process of its own, so the peak RSS it prints
(getrusage ru_maxrss) is that load's alone; the loads are append mode into an empty dataset with
the entity key checked (duplicates in the file, and against the table).

The ceiling: `COPY pool_… FROM STDIN (FORMAT csv, HEADER)` through asyncpg `copy_to_table` into
a plain table of the same columns (no validation, no encryption, no staging, no indexes) —
what PostgreSQL itself does with the file. Needs PostgreSQL on 127.0.0.1:5432 (trust)."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG = os.environ.get("SHUQIAO_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
HEADER = [
    "credit_code", "name", "legal_representative", "legal_rep_id_number", "contact_phone",
    "registered_capital", "establishment_date", "enterprise_type", "industry", "registered_address",
    "district_code", "district", "status",
]  # fmt: skip


def generate(path: Path, rows: int, seed: int = 7) -> None:
    from gateway.identifiers import CREDIT_CODE_CHARSET, credit_code_check_char, id_number_check_digit

    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for i in range(rows):
            body = "91610113" + "".join(rng.choice(CREDIT_CODE_CHARSET) for _ in range(3)) + f"{i:06d}"
            born = f"{rng.randint(1950, 2000)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
            first17 = f"610113{born}{rng.randint(0, 999):03d}"
            w.writerow([
                body + credit_code_check_char(body),
                f"西安某某科技有限公司{i}",
                "张三",
                first17 + id_number_check_digit(first17),
                f"139{rng.randint(0, 99_999_999):08d}",
                f"{rng.randint(10, 100_000)}.{rng.randint(0, 99):02d}",
                f"20{rng.randint(0, 23):02d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                "有限责任公司（自然人投资或控股）",
                rng.choice("ABCDEFGHIJ"),
                f"陕西省西安市雁塔区科技路{i % 500}号",
                "610113",
                "雁塔区",
                rng.choice(["存续", "注销", "吊销"]),
            ])  # fmt: skip


def _new_store(backend: str, tmp: Path) -> tuple[str, object]:
    from tests.conftest import create_database

    return create_database(backend, tmp)


def one_load(backend: str, csv_path: Path, tmp: Path) -> dict[str, object]:
    """In a child process: a fresh store, the catalogue entry, then the timed load."""
    from catalogue import service
    from gateway.db import create_engine
    from gateway.demo.catalogue import demo_catalogue
    from gateway.loading.service import LoadRequest, load_file
    from gateway.secrets import load_master_key
    from tests.conftest import init_store, settings_for

    url, drop = _new_store(backend, tmp)
    settings = settings_for(url, tmp / "var")
    init_store(settings)
    master_key = load_master_key(settings.master_key_file)
    departments, datasets = demo_catalogue()
    spec = next(d for d in datasets if d.code == "enterprise_registration")

    async def go() -> dict[str, object]:
        engine = create_engine(url)
        try:
            await service.save_department(engine, next(d for d in departments if d.code == spec.department))
            await service.save_dataset(engine, spec)
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            started = time.perf_counter()
            result = await load_file(engine, LoadRequest(spec.code, csv_path), master_key=master_key)
            seconds = time.perf_counter() - started
            return {
                "backend": backend,
                "rows": result.loaded,
                "seconds": round(seconds, 2),
                "rows_per_s": round(result.loaded / seconds),
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "rss_before_load_mib": round(rss_before / 1024, 1),
            }
        finally:
            await engine.dispose()

    try:
        return asyncio.run(go())
    finally:
        drop()  # type: ignore[operator]


def copy_ceiling(csv_path: Path) -> dict[str, object]:
    """PostgreSQL's own COPY of the same CSV into a plain table of the same columns."""
    import asyncpg

    name = f"shuqiao_bench_copy_{uuid.uuid4().hex[:8]}"
    base = PG.rsplit("/", 1)[0]

    async def go() -> dict[str, object]:
        admin = await asyncpg.connect(PG)
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            conn = await asyncpg.connect(f"{base}/{name}")
            try:
                await conn.execute(
                    "CREATE TABLE pool_enterprise_registration (_id bigserial PRIMARY KEY, credit_code text, "
                    "name text, legal_representative text, legal_rep_id_number text, contact_phone text, "
                    "registered_capital numeric(20,2), establishment_date date, enterprise_type text, "
                    "industry text, registered_address text, district_code text, district text, status text)"
                )
                started = time.perf_counter()
                with csv_path.open("rb") as f:
                    status = await conn.copy_to_table(
                        "pool_enterprise_registration", source=f, columns=HEADER, format="csv", header=True
                    )
                seconds = time.perf_counter() - started
                rows = int(status.split()[-1])
            finally:
                await conn.close()
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
        return {
            "backend": "postgres COPY",
            "rows": rows,
            "seconds": round(seconds, 2),
            "rows_per_s": round(rows / seconds),
        }

    return asyncio.run(go())


def python_side(csv_path: Path) -> dict[str, object]:
    """The per-row work alone, no database: read, check (types, both check characters) and seal
    (SM4-GCM + HMAC-SM3 blind index) — the part of a load that runs in Python, one core."""
    from dataclasses import replace

    from catalogue.protection import DatasetCipher, RowEncoder
    from gateway.demo.catalogue import demo_catalogue
    from gateway.loading.readers import Format, open_rows
    from gateway.loading.validate import Validator

    spec = next(d for d in demo_catalogue()[1] if d.code == "enterprise_registration")
    rows = open_rows(csv_path, Format.csv)
    validator = Validator(spec, rows.header, ["credit_code"])
    encoder = RowEncoder(replace(spec, fields=validator.fields), DatasetCipher("bench", b"k" * 16, b"i" * 32))
    started = time.perf_counter()
    n = 0
    for row_no, values in rows.rows:
        converted = validator.convert(row_no, values)
        assert isinstance(converted, tuple)
        encoder.encode(converted)
        n += 1
    seconds = time.perf_counter() - started
    rows.close()
    return {
        "backend": "read + check + seal only",
        "rows": n,
        "seconds": round(seconds, 2),
        "rows_per_s": round(n / seconds),
    }


def child(backend: str, csv_path: Path) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", backend, str(csv_path)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def line(r: dict[str, object], label: str, extra: str = "") -> None:
    print(f"  {label:28s} {r['rows_per_s']:>9,} rows/s  {r['seconds']:>7} s{extra}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--rows", type=int, action="append", help="rows per file (repeat); default 1M and 100k"
    )
    parser.add_argument("--child", nargs=2, metavar=("BACKEND", "CSV"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(one_load(args.child[0], Path(args.child[1]), Path(tmp))))
        return
    sizes = args.rows or [1_000_000, 100_000]
    with tempfile.TemporaryDirectory() as tmp:
        results = []
        for rows in sizes:
            path = Path(tmp) / f"enterprises-{rows}.csv"
            started = time.perf_counter()
            generate(path, rows)
            mib = path.stat().st_size / (1 << 20)
            print(
                f"{rows:>9,} rows: {mib:,.0f} MiB of CSV generated in {time.perf_counter() - started:.1f} s",
                flush=True,
            )
            ceiling = copy_ceiling(path)
            line(ceiling, "PostgreSQL COPY (ceiling)")
            alone = python_side(path)
            line(alone, "read + check + seal, no DB")
            for backend in ("postgres", "sqlite"):
                r = child(backend, path)
                ratio = r["rows_per_s"] / ceiling["rows_per_s"]  # type: ignore[operator]
                line(
                    r,
                    f"shuqiao data load, {backend}",
                    f"  peak RSS {r['peak_rss_mib']:>6} MiB  ({ratio:.0%} of COPY)",
                )
                results.append(
                    {"file_rows": rows, "csv_mib": round(mib), **r, "copy_rows_per_s": ceiling["rows_per_s"]}
                )
        print(json.dumps(results, ensure_ascii=False))


if __name__ == "__main__":
    main()
