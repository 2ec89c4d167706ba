"""Downloads stream at constant memory: the server's peak RSS for a CSV of 100,000 rows and of
1,000,000 rows (docs/portal.md §Downloads).

    .venv/bin/python bench/download_bench.py            # ~5 min on 2 cores

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust). It (re)creates the database
`shuqiao_dlbench`, loads the small demo with `shuqiao demo init`, grows `air_quality_daily` to N rows
by copying its rows, starts one uvicorn worker (a fresh process per size, so its high-water mark
VmHWM from /proc/<pid>/status is that download's peak), downloads
`/open/download/air_quality_daily.csv` anonymously while sampling VmRSS, checks the BOM and counts
the rows received, and prints one line per size plus the ratio of the peaks.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg

REPO = Path(__file__).resolve().parent.parent
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
DB = "shuqiao_dlbench"
URL = f"postgresql://postgres@127.0.0.1:5432/{DB}"
TABLE = "pool_air_quality_daily"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def setup(var_dir: Path) -> dict[str, str]:
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB}"')
    shutil.rmtree(var_dir, ignore_errors=True)
    env = {
        **os.environ,
        "SHUQIAO_DATABASE_URL": URL,
        "SHUQIAO_VAR_DIR": str(var_dir),
        "PYTHONPATH": str(REPO),
    }
    log("shuqiao demo init --size small")
    subprocess.run(
        [sys.executable, "-c", "from gateway.cli import app; app()", "demo", "init", "--size", "small"],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
    )
    return env


def grow(rows: int) -> None:
    """Copy the table's rows onto itself until it holds at least `rows`, then trim to exactly that."""
    with psycopg.connect(URL, autocommit=True) as conn:
        cols = [
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = %s AND column_name <> '_id'",
                (TABLE,),
            )
        ]
        names = ", ".join(f'"{c}"' for c in cols)
        while (n := conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]) < rows:  # type: ignore[index]
            conn.execute(
                f"INSERT INTO {TABLE} ({names}) SELECT {names} FROM {TABLE} ORDER BY _id LIMIT %s",
                (rows - n,),
            )
        conn.execute(
            f"DELETE FROM {TABLE} WHERE _id IN (SELECT _id FROM {TABLE} ORDER BY _id OFFSET %s)", (rows,)
        )
        conn.execute(f"VACUUM ANALYZE {TABLE}")
        log(f"{TABLE}: {conn.execute(f'SELECT count(*) FROM {TABLE}').fetchone()[0]} rows")  # type: ignore[index]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(env: dict[str, str], rows: int) -> dict[str, float]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server_env = {**env, "SHUQIAO_DOWNLOAD_RATE": "1000/minute", "SHUQIAO_ISSUER": base}
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "asgi:app", "--port", str(port), "--log-level", "warning"],
            cwd=REPO,
            env=server_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            before = status_kb(proc.pid, "VmRSS")
            received = lines = 0
            sampled = before
            started = time.monotonic()
            first = b""
            with httpx.stream("GET", f"{base}/open/download/air_quality_daily.csv", timeout=600) as r:
                assert r.status_code == 200, r.read()
                for chunk in r.iter_bytes():
                    if not first:
                        first = chunk[:3]
                    received += len(chunk)
                    lines += chunk.count(b"\n")
                    sampled = max(sampled, status_kb(proc.pid, "VmRSS"))
            took = time.monotonic() - started
            peak = status_kb(proc.pid, "VmHWM")
            assert first == b"\xef\xbb\xbf", first
            assert lines - 1 == rows, (lines, rows)
            return {
                "rows": rows,
                "mb": received / 1e6,
                "seconds": took,
                "rss_before_mb": before / 1024,
                "rss_sampled_max_mb": sampled / 1024,
                "vmhwm_mb": peak / 1024,
            }
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100000,1000000")
    args = parser.parse_args()
    var_dir = Path("/tmp/shuqiao-dlbench-var")
    env = setup(var_dir)
    results = []
    for size in sorted(int(s) for s in args.sizes.split(",")):
        grow(size)
        res = measure(env, size)
        results.append(res)
        log(
            f"{res['rows']:>9,} rows  {res['mb']:7.1f} MB in {res['seconds']:6.1f} s  "
            f"server RSS before {res['rss_before_mb']:.0f} MB, "
            f"max sampled {res['rss_sampled_max_mb']:.0f} MB, "
            f"peak (VmHWM) {res['vmhwm_mb']:.0f} MB"
        )
    if len(results) > 1:
        log(f"peak ratio largest/smallest: {results[-1]['vmhwm_mb'] / results[0]['vmhwm_mb']:.2f}")
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')


if __name__ == "__main__":
    main()
