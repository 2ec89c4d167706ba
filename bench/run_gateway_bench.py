"""Shuqiao (open tier, share tier, open tier with log-only audit) vs PostGraphile 4 (and, on request,
a bare Strawberry + SQLModel app), on the same PostgreSQL table: issue 18's comparison in one run.

Two cases, each one GraphQL POST over `pool_enterprise_registration`:

- lookup: one enterprise by 统一社会信用代码 (a variable, rotated over 500 real codes);
- page:   the first 100 rows.

10 fields (creditCode name contactPhone registeredCapital establishmentDate enterpriseType industry
registeredAddress district status); the open tier does not publish contactPhone, so 9 there.

Servers, each ONE process (this machine has 2 cores; the load generator and PostgreSQL need
the other one):

- shuqiao:      `uvicorn asgi:app` (1 worker), the hash-chained audit store, loaded as
  shuqiao-share (share tier, samr's token: every field in clear, policies still evaluated per
  field, every response SM2-signed), shuqiao-open (the open tier, anonymous) and, with --tax,
  shuqiao-tax (the share tier with tax's token: contactPhone masked);
- shuqiao-log:  the same code and database with SHUQIAO_AUDIT_STORE=log, loaded as open-log
  (the open tier): the chain's cost is 1 − shuqiao-open ÷ open-log;
- bare:         bench/bare_strawberry_app.py under uvicorn (1 worker); only with --servers;
- postgraphile: PostGraphile 4 (one node process) from bench/postgraphile/node_modules.

All of them run for the whole measurement but only one is loaded at a time. Load comes from
wrk (closed loop, 1 thread, --connections connections). For each case every target gets
--warmup seconds of warm-up, then --duration seconds measured, split into --rounds rounds
that alternate between the targets, so a noisy neighbour on the machine hits every server
alike. Latency percentiles are merged over the rounds from wrk's quantiles (0.1% steps).

Before the load each answer is checked (no errors, the right row count, the same rows from
every server, contactPhone masked for tax) and again after it. CPU use of the server, of
PostgreSQL, of wrk and of everything else on the machine is recorded next to each figure
(100% = one core of the 2), and the CPU per request of the server and of PostgreSQL.

The script creates and fills its own database (dropped and recreated unless --reuse-db; a
--baseline-rev with other migrations gets one of its own, <database>_base, with the same data),
starts and stops every server itself, and kills them on any exit. Results: a table on
stdout and the same figures as JSON in bench/results/.

    .venv/bin/python bench/run_gateway_bench.py            # under 3 minutes with the small demo data
    .venv/bin/python bench/run_gateway_bench.py --size large --reuse-db
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
# The repository's own venv when there is one (`make bench`), else the interpreter running us.
VENV_BIN = REPO / ".venv" / "bin" if (REPO / ".venv" / "bin").is_dir() else Path(sys.executable).parent
PG_DIR = BENCH_DIR / "postgraphile"
RESULTS_DIR = BENCH_DIR / "results"

# The 10 fields every server serves (GraphQL names; the pool columns are their snake_case).
FIELDS = (
    "creditCode",
    "name",
    "contactPhone",
    "registeredCapital",
    "establishmentDate",
    "enterpriseType",
    "industry",
    "registeredAddress",
    "district",
    "status",
)
# (legalRepresentative is left out: it is personal information that tax may not read at all.)
MASKED_FOR_TAX = "contactPhone"
# The open tier does not publish contactPhone: 9 fields there; and it publishes registeredCapital
# generalised (rounded), so that one is not compared with the other servers' exact figure.
OPEN_FIELDS = tuple(f for f in FIELDS if f != "contactPhone")
OPEN_GENERALISED = ("registeredCapital",)
# The share tier watermarks registeredCapital per recipient (docs/watermark.md): within its
# tolerance, not equal to the stored figure, so it is not compared either.
SHARE_WATERMARKED = ("registeredCapital",)
PAGE_SIZE = 100
LOOKUP_CODES = 500
SEL = " ".join(FIELDS)
OPEN_SEL = " ".join(OPEN_FIELDS)


def _bare_rows(d: dict[str, Any]) -> list[dict[str, Any]]:
    if "enterpriseRegistration" in d:
        return [r for r in [d["enterpriseRegistration"]] if r is not None]
    return d["enterpriseRegistrations"]


def _shuqiao_queries(sel: str) -> tuple[str, str, Callable[[dict[str, Any]], list[dict[str, Any]]]]:
    return (
        f"query Page {{ enterpriseRegistration(first: {PAGE_SIZE}) {{ edges {{ node {{ {sel} }} }} }} }}",
        "query Lookup($code: String!) { enterpriseRegistration(first: 1, where: {creditCode: {eq: $code}})"
        f" {{ edges {{ node {{ {sel} }} }} }} }}",
        lambda d: [e["node"] for e in d["enterpriseRegistration"]["edges"]],
    )


# query shape -> (page query, lookup query, rows out of `data`)
QUERIES: dict[str, tuple[str, str, Callable[[dict[str, Any]], list[dict[str, Any]]]]] = {
    "shuqiao": _shuqiao_queries(SEL),
    "shuqiao-open": _shuqiao_queries(OPEN_SEL),
    "bare": (
        f"query Page {{ enterpriseRegistrations(limit: {PAGE_SIZE}) {{ {SEL} }} }}",
        f"query Lookup($code: String!) {{ enterpriseRegistration(creditCode: $code) {{ {SEL} }} }}",
        _bare_rows,
    ),
    "postgraphile": (
        f"query Page {{ allPoolEnterpriseRegistrations(first: {PAGE_SIZE}) {{ nodes {{ {SEL} }} }} }}",
        "query Lookup($code: String!) { allPoolEnterpriseRegistrations(first: 1,"
        f" condition: {{creditCode: $code}}) {{ nodes {{ {SEL} }} }} }}",
        lambda d: d["allPoolEnterpriseRegistrations"]["nodes"],
    ),
}

# %-formatted by write_lua, hence the doubled percent signs.
WRK_LUA = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"
%(headers)s
local bodies = {
%(bodies)s
}
local n = #bodies
if n == 1 then
  wrk.body = bodies[1]
else
  -- formatted in init(): wrk.path is only known once the thread is set up
  local reqs = {}
  init = function(args)
    for k = 1, n do reqs[k] = wrk.format(nil, nil, nil, bodies[k]) end
  end
  local i = 0
  request = function()
    i = i %% n + 1
    return reqs[i]
  end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %%d, "duration_us": %%d, "bytes": %%d, "connect_errors": %%d, "read_errors": %%d,'
    .. ' "write_errors": %%d, "status_errors": %%d, "timeouts": %%d, "mean_us": %%.1f, "max_us": %%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max))
  -- the latency quantile function at 1000 evenly spaced points (each stands for 1/1000 of
  -- the requests), so that rounds can be merged; this wrk cannot index its histogram
  local h = {}
  for k = 0, 999 do
    h[#h + 1] = string.format("%%d", latency:percentile((k + 0.5) / 10))
  end
  io.write("WRKHIST " .. table.concat(h, ",") .. "\n")
end
"""

BUSY_PCT = 25  # "other" CPU above this marks a row as measured on a shared machine
ERROR_KEYS = ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- processes


class Processes:
    """Every server we start; each is killed (its whole process group) on any exit."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, cmd: list[str], *, log_file: Path, env: dict[str, str], cwd: Path
    ) -> subprocess.Popen[bytes]:
        with log_file.open("wb") as fh:
            proc = subprocess.Popen(
                cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything left in its group
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.procs):
            self.stop(proc, timeout=5.0)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def wait_ready(proc: subprocess.Popen[bytes], url: str, log_file: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; log:\n{log_file.read_text()[-3000:]}")
        try:
            r = httpx.post(url, json={"query": "{ __typename }"}, timeout=2.0)
            if r.status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout}s; log:\n{log_file.read_text()[-3000:]}")


# ---------------------------------------------------------------------------- CPU accounting

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def postgres_cpu(database: str) -> dict[int, float]:
    """CPU seconds per PostgreSQL backend serving `database` (their process title names it);
    other databases' backends on this machine count as "other"."""
    out: dict[int, float] = {}
    needle = f" {database} ".encode()
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if needle in (p / "cmdline").read_bytes() and (p / "comm").read_text().strip() == "postgres":
                    out[int(p.name)] = cpu_seconds(int(p.name))
            except OSError:
                continue
    return out


def postgres_cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used in between by the backends alive at the end (new ones count from zero)."""
    return sum(max(0.0, cpu - before.get(pid, 0.0)) for pid, cpu in after.items())


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine so far."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = parts[:8]
    return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK


def children_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# ---------------------------------------------------------------------------- database


def shuqiao_env(args: argparse.Namespace, src: Path | None = None) -> dict[str, str]:
    url, var_dir = place(args, src)
    env = {**os.environ, "SHUQIAO_DATABASE_URL": url, "SHUQIAO_VAR_DIR": str(var_dir)}
    # The open tier's per-address limit is still checked on every request, with a budget the
    # load cannot exhaust (all load comes from 127.0.0.1).
    env["SHUQIAO_ANONYMOUS_RATE"] = "100000000/minute"
    env.update(kv.split("=", 1) for kv in args.shuqiao_env)
    # ahead of the editable install, which may point at another checkout (a shared venv)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src or args.shuqiao_src), env.get("PYTHONPATH")]))
    return env


def shuqiao_source(args: argparse.Namespace, tmp: Path) -> str:
    """Point args.shuqiao_src at the code to measure; describe it."""

    def git(*cmd: str) -> str:
        return subprocess.run(
            ["git", *cmd], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()

    if args.baseline_rev:  # with --shuqiao-rev too
        base = git("rev-parse", "--short", args.baseline_rev)
        args.baseline_src = tmp / f"baseline-{base}"
        args.baseline_src.mkdir()
        archive = subprocess.run(["git", "archive", base], cwd=REPO, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(args.baseline_src)], input=archive, check=True)
        log(f"baseline: Shuqiao at {base} (exported to {args.baseline_src}), as base-open and base-share")
    if args.shuqiao_rev:
        rev = git("rev-parse", "--short", args.shuqiao_rev)
        args.shuqiao_src = tmp / f"shuqiao-{rev}"
        args.shuqiao_src.mkdir()
        archive = subprocess.run(["git", "archive", rev], cwd=REPO, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(args.shuqiao_src)], input=archive, check=True)
        log(f"measuring Shuqiao at {rev} (exported to {args.shuqiao_src})")
        return f"git {rev}"
    args.shuqiao_src = REPO
    dirty = git(
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        "gateway",
        "schema",
        "resolvers",
        "policies",
        "keys",
        "asgi.py",
    )
    return f"work tree at {git('rev-parse', '--short', 'HEAD')}" + (
        " with uncommitted changes" if dirty else ""
    )


def migrations(src: Path) -> set[str]:
    return {p.name for p in (src / "gateway" / "migrations" / "versions").glob("*.py")}


def place(args: argparse.Namespace, src: Path | None = None) -> tuple[str, Path]:
    """(database URL, var dir) of the Shuqiao at `src`: the baseline's own when it has other
    migrations than the measured code (one schema cannot serve both: the older code would fail on
    the newer tables, or do less work on them), else the shared ones."""
    if src is not None and src == getattr(args, "baseline_src", None) and args.baseline_db_apart:
        return args.database_url + "_base", args.var_dir / "baseline"
    return args.database_url, args.var_dir


def setup_database(args: argparse.Namespace, src: Path | None = None) -> float:
    """Create the database and load the demo into it with Shuqiao's own CLI (at `src`, default
    the measured code); seconds taken.

    With --reuse-db and a database already holding this size, only `shuqiao demo init` runs
    again: it is idempotent, applies new migrations and takes seconds."""
    url, var_dir = place(args, src)
    src = src or args.shuqiao_src
    db = url.rsplit("/", 1)[1]
    marker = var_dir / "bench-size"
    started = time.monotonic()
    reuse = False
    if args.reuse_db and marker.exists() and marker.read_text().strip() == args.size:
        with contextlib.suppress(psycopg.Error), psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*) FROM pool_enterprise_registration").fetchone()
            reuse = bool(row and row[0] > 0)
    if reuse:
        log(f"reusing database {db} (demo size {args.size})")
    else:
        log(f"(re)creating database {db}")
        with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{db}"')
        shutil.rmtree(var_dir, ignore_errors=True)
    cmd = [str(VENV_BIN / "shuqiao"), "demo", "init", "--size", args.size]
    log(f"shuqiao demo init --size {args.size} (SHUQIAO_VAR_DIR={var_dir})")
    out = subprocess.run(
        cmd, cwd=src, env=shuqiao_env(args, src), capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(
            f"shuqiao demo init failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
        )
    if not reuse:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        marker.write_text(args.size)
    took = time.monotonic() - started
    log(f"database ready in {took:.0f}s")
    return took


def lookup_codes(args: argparse.Namespace) -> list[str]:
    """A fixed, spread-out sample of real credit codes."""
    with psycopg.connect(args.database_url) as conn:
        rows = conn.execute(
            "SELECT credit_code FROM pool_enterprise_registration ORDER BY md5(credit_code) LIMIT %s",
            (LOOKUP_CODES,),
        ).fetchall()
    return [r[0] for r in rows]


def table_size(args: argparse.Namespace) -> int:
    with psycopg.connect(args.database_url) as conn:
        row = conn.execute("SELECT count(*) FROM pool_enterprise_registration").fetchone()
    return int(row[0]) if row else 0


# ---------------------------------------------------------------------------- cases


@dataclass
class Case:
    target: str  # shuqiao-samr, shuqiao-tax, bare, postgraphile
    kind: str  # shuqiao, bare, postgraphile
    case: str  # lookup, page
    pid: int
    url: str
    headers: dict[str, str]
    bodies: list[str]
    masked: bool = False
    shape: str = ""  # key of QUERIES; the kind when empty
    fields: tuple[str, ...] = FIELDS
    not_compared: tuple[str, ...] = ()  # fields this target transforms by policy
    database: str = ""  # whose backends' CPU is the target's PostgreSQL CPU
    script: Path | None = None
    response_bytes: int = 0
    same_rows: bool = True
    # accumulated over the rounds
    requests: int = 0
    duration_us: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    quantiles: list[tuple[int, float]] = field(default_factory=list)  # (latency µs, requests it stands for)
    latency_sum_us: float = 0.0
    max_us: int = 0
    cpu: Counter[str] = field(default_factory=Counter)
    wall_s: float = 0.0
    rounds: list[float] = field(default_factory=list)  # req/s of each round

    @property
    def expect_rows(self) -> int:
        return PAGE_SIZE if self.case == "page" else 1

    def percentile(self, p: float) -> float:
        """Milliseconds, from the quantiles of every round weighted by its request count."""
        total = sum(w for _, w in self.quantiles)
        if not total:
            return float("nan")
        want, seen = total * p / 100, 0.0
        for us, w in sorted(self.quantiles):
            seen += w
            if seen >= want:
                return us / 1000
        return self.max_us / 1000

    def summary(self) -> dict[str, Any]:
        secs = self.duration_us / 1e6
        return {
            "target": self.target,
            "case": self.case,
            "rps": self.requests / secs if secs else None,
            "p50_ms": self.percentile(50),
            "p90_ms": self.percentile(90),
            "p99_ms": self.percentile(99),
            "mean_ms": self.latency_sum_us / self.requests / 1000 if self.requests else None,
            "max_ms": self.max_us / 1000,
            "requests": self.requests,
            "errors": sum(self.errors.values()),
            "error_kinds": dict(self.errors),
            "rounds_rps": [round(x, 1) for x in self.rounds],
            "cpu_pct": {k: round(100 * v / self.wall_s, 1) for k, v in self.cpu.items()}
            if self.wall_s
            else {},
            # CPU per request (µs): how the work splits between the server and PostgreSQL
            "cpu_us_per_request": {
                k: round(1e6 * self.cpu[k] / self.requests, 1) for k in ("server", "postgres")
            }
            if self.requests
            else {},
            "response_bytes": self.response_bytes,
            "same_rows_as_other_servers": self.same_rows,
        }


def make_bodies(shape: str, case: str, codes: list[str]) -> list[str]:
    page, lookup, _ = QUERIES[shape]
    if case == "page":
        return [json.dumps({"query": page})]
    return [json.dumps({"query": lookup, "variables": {"code": code}}) for code in codes]


def _norm(v: Any) -> Any:
    """Decimals compare by value: "100.00" (PostgreSQL's text) == "100.0" == "100"."""
    if isinstance(v, str) and v.replace(".", "", 1).lstrip("-").isdigit():
        return Decimal(v).normalize()
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return Decimal(str(v)).normalize()
    return v


# What a watermark may change in a delivery to an identified consumer (the share tier; docs/
# watermark.md): registeredCapital within its declared tolerance, the address's digits between
# half- and full-width (NFKC-equal). Anonymous open-tier answers and PostGraphile are unmarked.
MARK_TOLERANCE = {"registeredCapital": Decimal("0.01")}


def same_rows(mine: list[dict[str, Any]], ref: list[dict[str, Any]]) -> bool:
    """The same rows, allowing each value the change a watermark may make."""
    if len(mine) != len(ref):
        return False
    for a, b in zip(mine, ref, strict=True):
        if a.keys() != b.keys():
            return False
        for k, x in a.items():
            y = b[k]
            if x == y:
                continue
            if (
                isinstance(x, str)
                and isinstance(y, str)
                and unicodedata.normalize("NFKC", x) == unicodedata.normalize("NFKC", y)
            ):
                continue
            t = MARK_TOLERANCE.get(k)
            if t is not None and isinstance(x, Decimal) and isinstance(y, Decimal) and abs(x - y) <= t:
                continue
            return False
    return True


def fetch_rows(c: Case, body: str) -> tuple[list[dict[str, Any]], int]:
    r = httpx.post(
        c.url,
        content=body,
        headers={**c.headers, "Content-Type": "application/json", "Accept": "application/json"},
        timeout=30,
    )
    if r.status_code != 200:
        raise RuntimeError(f"{c.target}/{c.case}: HTTP {r.status_code}: {r.text[:500]}")
    payload = r.json()
    if payload.get("errors"):
        raise RuntimeError(f"{c.target}/{c.case}: GraphQL errors: {json.dumps(payload['errors'])[:800]}")
    rows = QUERIES[c.shape or c.kind][2](payload["data"])
    return [{k: _norm(row[k]) for k in c.fields} for row in rows], len(r.content)


def verify(c: Case, reference: dict[str, list[dict[str, Any]]], body: str | None = None) -> None:
    """Check one answer and compare its rows with the first server's for the same request."""
    body = body or c.bodies[0]
    rows, nbytes = fetch_rows(c, body)
    if body == c.bodies[0]:
        c.response_bytes = nbytes
    if len(rows) != c.expect_rows:
        raise RuntimeError(f"{c.target}/{c.case}: {len(rows)} rows, expected {c.expect_rows}")
    if c.masked:
        phones = [r[MASKED_FOR_TAX] for r in rows if r[MASKED_FOR_TAX]]
        if not phones or not all("*" in p for p in phones):
            raise RuntimeError(f"{c.target}/{c.case}: {MASKED_FOR_TAX} is not masked: {phones[:3]}")
    mine = [{k: v for k, v in r.items() if not (c.masked and k == MASKED_FOR_TAX)} for r in rows]
    mine_keys = set(mine[0]) - set(c.not_compared) if mine else set()
    ref = reference.setdefault(f"{c.case}:{json.loads(body).get('variables')}", mine)
    ref = [{k: v for k, v in r.items() if k in mine_keys} for r in ref]
    ref_keys = set(ref[0]) if ref else set()
    mine = [{k: v for k, v in r.items() if k in ref_keys} for r in mine]
    if not same_rows(mine, ref):
        c.same_rows = False
        diff = next(((a, b) for a, b in zip(mine, ref, strict=False) if not same_rows([a], [b])), None)
        log(f"WARNING {c.target}/{c.case}: rows differ from the first server's: {diff}")


# ---------------------------------------------------------------------------- load


def write_lua(c: Case, directory: Path) -> Path:
    def lua_str(s: str) -> str:
        if "]==]" in s:
            raise ValueError("body cannot be quoted for Lua")
        return "[==[" + s + "]==]"

    headers = "\n".join(f"wrk.headers[ {lua_str(k)} ] = {lua_str(v)}" for k, v in c.headers.items())
    bodies = ",\n".join(lua_str(b) for b in c.bodies)
    path = directory / f"{c.target}-{c.case}.lua"
    path.write_text(WRK_LUA % {"headers": headers, "bodies": bodies})
    return path


def run_wrk(args: argparse.Namespace, c: Case, seconds: float) -> tuple[dict[str, Any], list[int]]:
    cmd = [args.wrk, "-t1", f"-c{args.connections}", f"-d{seconds:g}s", "--timeout", "10s"]
    cmd += ["-s", str(c.script), c.url]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=seconds + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stats = next((ln[8:] for ln in out.splitlines() if ln.startswith("WRKJSON ")), None)
    hist = next((ln[8:] for ln in out.splitlines() if ln.startswith("WRKHIST ")), None)
    if proc.returncode != 0 or stats is None or hist is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {out[-1000:]} {err[-1000:]}")
    return json.loads(stats), [int(x) for x in hist.split(",")]


def measure_round(args: argparse.Namespace, c: Case, seconds: float) -> None:
    db = c.database or args.database_url.rsplit("/", 1)[1]
    srv0, pg0, kids0 = cpu_seconds(c.pid), postgres_cpu(db), children_cpu_seconds()
    (busy0, steal0), t0 = machine_cpu_seconds(), time.monotonic()
    stats, quantiles = run_wrk(args, c, seconds)
    wall = time.monotonic() - t0
    srv, pg = cpu_seconds(c.pid) - srv0, postgres_cpu_delta(pg0, postgres_cpu(db))
    wrk_cpu = children_cpu_seconds() - kids0
    busy1, steal1 = machine_cpu_seconds()
    c.cpu.update(
        {
            "server": srv,
            "postgres": pg,
            "wrk": wrk_cpu,
            "other": max(0.0, busy1 - busy0 - srv - pg - wrk_cpu),
            "steal": steal1 - steal0,
        }
    )
    c.wall_s += wall
    c.requests += stats["requests"]
    c.duration_us += stats["duration_us"]
    c.errors.update({k: stats[k] for k in ERROR_KEYS if stats[k]})
    weight = stats["requests"] / len(quantiles)
    c.quantiles += [(us, weight) for us in quantiles]
    c.latency_sum_us += stats["mean_us"] * stats["requests"]
    c.max_us = max(c.max_us, stats["max_us"])
    c.rounds.append(stats["requests"] / (stats["duration_us"] / 1e6))


def shuqiao_token(base: str, creds: dict[str, Any], department: str) -> str:
    client = creds["clients"][department]
    r = httpx.post(
        f"{base}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client["client_id"], client["client_secret"]),
        timeout=10,
    )
    r.raise_for_status()
    return r.json()["access_token"]


# ---------------------------------------------------------------------------- servers


SERVER_KINDS = ("shuqiao", "shuqiao-log", "bare", "postgraphile", "shuqiao-base")


def server_command(args: argparse.Namespace, kind: str, port: int) -> tuple[list[str], Path, dict[str, str]]:
    uvicorn = [str(VENV_BIN / "uvicorn")]
    quiet = ["--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"]
    if kind == "shuqiao":
        return [*uvicorn, "asgi:app", *quiet], args.shuqiao_src, shuqiao_env(args)
    if kind == "shuqiao-log":
        # the same code and database, audit events to the log-only sink instead of the chain
        env = {**shuqiao_env(args), "SHUQIAO_AUDIT_STORE": "log"}
        return [*uvicorn, "asgi:app", *quiet], args.shuqiao_src, env
    if kind == "shuqiao-base":
        # another commit of Shuqiao (--baseline-rev) on the same database: before/after in one run
        return [*uvicorn, "asgi:app", *quiet], args.baseline_src, shuqiao_env(args, args.baseline_src)
    if kind == "bare":
        env = {**os.environ, "BENCH_DATABASE_URL": args.database_url}
        return [*uvicorn, "--app-dir", str(BENCH_DIR), "bare_strawberry_app:app", *quiet], REPO, env
    cmd = [str(PG_DIR / "node_modules" / ".bin" / "postgraphile"), "-c", args.database_url]
    cmd += ["--schema", "public", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--disable-graphiql", "--disable-query-log"]
    return cmd, PG_DIR, {**os.environ, "NODE_ENV": "production"}


@dataclass(frozen=True)
class Target:
    name: str
    path: str  # URL path on the server
    shape: str  # key of QUERIES
    fields: tuple[str, ...]
    department: str = ""  # a share-tier client's department, for its token
    masked: bool = False
    not_compared: tuple[str, ...] = ()


def targets_of(kind: str, args: argparse.Namespace) -> list[Target]:
    if kind == "shuqiao":
        out = [
            Target(
                "shuqiao-share", "/share/graphql", "shuqiao", FIELDS, "samr", not_compared=SHARE_WATERMARKED
            ),
            Target(
                "shuqiao-open", "/open/graphql", "shuqiao-open", OPEN_FIELDS, not_compared=OPEN_GENERALISED
            ),
        ]
        if args.tax:
            out.append(
                Target("shuqiao-tax", "/share/graphql", "shuqiao", FIELDS, "tax", True, SHARE_WATERMARKED)
            )
        return out
    if kind == "shuqiao-base":
        return [
            Target("base-share", "/share/graphql", "shuqiao", FIELDS, "samr", not_compared=SHARE_WATERMARKED),
            Target("base-open", "/open/graphql", "shuqiao-open", OPEN_FIELDS, not_compared=OPEN_GENERALISED),
        ]
    if kind == "shuqiao-log":
        return [
            Target("open-log", "/open/graphql", "shuqiao-open", OPEN_FIELDS, not_compared=OPEN_GENERALISED)
        ]
    return [Target(kind, "/graphql", kind, FIELDS)]


def start_servers(args: argparse.Namespace, procs: Processes, codes: list[str], logs: Path) -> list[Case]:
    cases: list[Case] = []
    wanted = args.cases.split(",")
    chosen = args.servers.split(",") + (["shuqiao-base"] if args.baseline_rev else [])
    unknown = set(chosen) - set(SERVER_KINDS)
    if unknown:
        raise SystemExit(f"unknown --servers {sorted(unknown)}; choose from {SERVER_KINDS}")
    for i, kind in enumerate(SERVER_KINDS):
        if kind not in chosen:
            continue
        port = args.port + i
        if not port_free(port):
            raise RuntimeError(f"port {port} is in use")
        cmd, cwd, env = server_command(args, kind, port)
        log_file = logs / f"{kind}.log"
        log(f"starting {kind} on 127.0.0.1:{port}")
        proc = procs.start(cmd, log_file=log_file, env=env, cwd=cwd)
        base = f"http://127.0.0.1:{port}"
        wait_ready(proc, f"{base}{targets_of(kind, args)[0].path}", log_file)
        creds: dict[str, Any] = {}
        url, var_dir = place(args, args.baseline_src if kind == "shuqiao-base" else None)
        if kind.startswith("shuqiao"):
            creds = json.loads((var_dir / "demo-credentials.json").read_text())
        for t in targets_of(kind, args):
            headers = (
                {"Authorization": f"Bearer {shuqiao_token(base, creds, t.department)}"}
                if t.department
                else {}
            )
            for case in wanted:
                bodies = make_bodies(t.shape, case, codes)
                cases.append(
                    Case(
                        t.name,
                        kind,
                        case,
                        proc.pid,
                        base + t.path,
                        headers,
                        bodies,
                        t.masked,
                        t.shape,
                        t.fields,
                        t.not_compared,
                        url.rsplit("/", 1)[1],
                    )
                )
    return cases


# ---------------------------------------------------------------------------- report


# (target, case) -> the floor for its throughput ÷ PostGraphile's
TARGETS_VS_POSTGRAPHILE = {
    ("shuqiao-open", "lookup"): 1.0,
    ("shuqiao-open", "page"): 1.5,
    ("shuqiao-share", "lookup"): 0.7,
    ("shuqiao-share", "page"): 1.2,
}
CHAIN_COST_MAX = 0.10  # the hash chain may cost at most this share of the open tier's throughput


def report(cases: list[Case], meta: dict[str, Any]) -> dict[str, Any]:
    rows = [c.summary() for c in cases]
    by = {(r["target"], r["case"]): r for r in rows}
    lines = [
        "",
        f"Shuqiao gateway bench {meta['when']}: {meta['enterprises']} enterprises (demo size {meta['size']}),"
        f" wrk -t1 -c{meta['connections']}, {meta['warmup_s']}s warm-up + {meta['duration_s']}s measured"
        f" in {meta['rounds']} alternating rounds, per target per case; one server process each;"
        f" Shuqiao: {meta['shuqiao']}",
        "",
        f"{'target':14s}{'case':8s}{'req/s':>8s}{'p50 ms':>9s}{'p99 ms':>9s}{'errors':>7s}{'resp B':>8s}"
        f"{'srv µs/req':>11s}{'pg µs/req':>10s}   CPU % of one core: server postgres wrk other (steal)",
    ]
    for r in rows:
        cpu = r["cpu_pct"]
        lines.append(
            f"{r['target']:14s}{r['case']:8s}{r['rps']:8.0f}{r['p50_ms']:9.2f}{r['p99_ms']:9.2f}"
            f"{r['errors']:7d}{r['response_bytes']:8d}{r['cpu_us_per_request'].get('server', 0):11.0f}"
            f"{r['cpu_us_per_request'].get('postgres', 0):10.0f}   {cpu.get('server', 0):13.0f}"
            f"{cpu.get('postgres', 0):9.0f}{cpu.get('wrk', 0):4.0f}{cpu.get('other', 0):6.0f}"
            f" ({cpu.get('steal', 0):.0f})" + ("  !" if cpu.get("other", 0) > BUSY_PCT else "")
        )
    ratios: dict[str, Any] = {}
    lines += [
        "",
        "Throughput ratios in this run (targets from issue 18: open ≥ 1.0× PostGraphile on the lookup and"
        " ≥ 1.5× on the page; share ≥ 0.7× and ≥ 1.2×; the chain's cost ≤ 10 %)",
        f"{'':14s}{'case':8s}{'÷ PostGraphile':>16s}      {'÷ bare':>10s}",
    ]

    def fmt(x: float | None, ok: bool | None) -> str:
        if x is None:
            return "-"
        return f"{x:7.2f}× " + ("    " if ok is None else ("ok  " if ok else "MISS"))

    for sq in ("shuqiao-open", "shuqiao-share", "shuqiao-tax", "open-log"):
        for case in ("lookup", "page"):
            mine = by.get((sq, case), {}).get("rps")
            if mine is None:
                continue
            pg = by.get(("postgraphile", case), {}).get("rps")
            bare = by.get(("bare", case), {}).get("rps")
            vs_pg = mine / pg if pg else None
            vs_bare = mine / bare if bare else None
            floor = TARGETS_VS_POSTGRAPHILE.get((sq, case))
            ok_pg = None if vs_pg is None or floor is None else vs_pg >= floor
            ratios[f"{sq}/{case}"] = {
                "vs_postgraphile": vs_pg,
                "vs_bare": vs_bare,
                "target_vs_postgraphile": floor,
                "meets_target": ok_pg,
            }
            lines.append(f"{sq:14s}{case:8s}{fmt(vs_pg, ok_pg):>16s}      {fmt(vs_bare, None):>10s}")
    for case in ("lookup", "page"):
        chain = by.get(("shuqiao-open", case), {}).get("rps")
        logonly = by.get(("open-log", case), {}).get("rps")
        if chain and logonly:
            cost = 1 - chain / logonly
            ok = cost <= CHAIN_COST_MAX
            ratios[f"chain-cost/{case}"] = {"cost": cost, "meets_target": ok}
            lines.append(
                f"{'chain cost':14s}{case:8s}{100 * cost:12.1f} %   "
                + ("ok" if ok else "MISS")
                + "   (1 − open with the chain ÷ open with log-only audit)"
            )
    for tier in ("open", "share"):
        for case in ("lookup", "page"):
            now = by.get((f"shuqiao-{tier}", case), {}).get("rps")
            before = by.get((f"base-{tier}", case), {}).get("rps")
            if now and before:
                ratios[f"vs-baseline/{tier}/{case}"] = now / before
                lines.append(f"{'now ÷ base':14s}{case:8s}{now / before:10.2f}×   ({tier} tier)")
    other = [r["cpu_pct"].get("other", 0) for r in rows]
    meta["other_cpu_pct_mean"] = round(sum(other) / len(other), 1) if other else 0.0
    if any(x > BUSY_PCT for x in other):
        lines += [
            "",
            f"! other processes used more than {BUSY_PCT}% of a core while this row was measured (the"
            " machine has 2): its figures are low and noisy; ratios between rows measured alike are fairer.",
        ]
    print("\n".join(lines), flush=True)
    return {"meta": meta, "results": rows, "ratios": ratios}


# ---------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database-url", default="postgresql://postgres@127.0.0.1/shuqiao_bench")
    p.add_argument("--var-dir", type=Path, default=Path(tempfile.gettempdir()) / "shuqiao-bench-var")
    p.add_argument("--size", choices=("small", "large"), default="small", help="demo data size")
    p.add_argument("--reuse-db", action="store_true", help="keep the database if it holds --size data")
    p.add_argument("--duration", type=float, default=15, help="seconds measured per target per case")
    p.add_argument("--rounds", type=int, default=5, help="the measured seconds are split into this many")
    p.add_argument("--warmup", type=float, default=3, help="seconds of warm-up per target per case")
    p.add_argument("--connections", type=int, default=4, help="concurrent connections (wrk -c)")
    p.add_argument(
        "--servers",
        default="shuqiao,shuqiao-log,postgraphile",
        help=f"subset of {','.join(SERVER_KINDS)}, comma-separated",
    )
    p.add_argument("--tax", action="store_true", help="also load the share tier with tax's token (masking)")
    p.add_argument("--cases", default="lookup,page", help="subset of lookup,page, comma-separated")
    p.add_argument("--port", type=int, default=8101, help="first of three consecutive ports")
    p.add_argument("--wrk", default="wrk")
    p.add_argument(
        "--baseline-rev",
        help="also run this git revision of Shuqiao (base-open, base-share) in the same rounds: before/after",
    )
    p.add_argument(
        "--shuqiao-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for Shuqiao, e.g. SHUQIAO_AUDIT_STORE=log (repeatable)",
    )
    p.add_argument(
        "--shuqiao-rev",
        help="measure this git revision of Shuqiao (exported with git archive) instead of the work tree",
    )
    return p.parse_args()


def ensure_tools(args: argparse.Namespace) -> None:
    if not shutil.which(args.wrk):
        raise SystemExit("wrk is not installed: apt-get update && apt-get install -y wrk")
    if "postgraphile" in args.servers and not (PG_DIR / "node_modules" / ".bin" / "postgraphile").exists():
        log("installing PostGraphile 4: npm ci in bench/postgraphile")
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PG_DIR, check=True)


def node_version() -> str:
    with contextlib.suppress(OSError):
        return subprocess.run(
            ["node", "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
    return "?"


def main() -> int:
    args = parse_args()
    ensure_tools(args)
    procs = Processes()

    def on_signal(signum: int, _frame: object) -> None:
        procs.stop_all()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    started = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    logs = RESULTS_DIR / f"logs-{stamp}"
    logs.mkdir(parents=True)
    tmp = Path(tempfile.mkdtemp(prefix="shuqiao-bench-"))
    try:
        source = shuqiao_source(args, tmp)
        args.baseline_db_apart = bool(args.baseline_rev) and migrations(args.baseline_src) != migrations(
            args.shuqiao_src
        )
        setup_s = setup_database(args)
        if args.baseline_rev and args.baseline_db_apart:
            log("the baseline has other migrations: it gets its own database (same demo data)")
            setup_s += setup_database(args, args.baseline_src)
        codes = lookup_codes(args)
        cases = start_servers(args, procs, codes, logs)
        reference: dict[str, list[dict[str, Any]]] = {}
        for c in cases:
            verify(c, reference)
            c.script = write_lua(c, logs)
        per_round = args.duration / args.rounds
        for case in args.cases.split(","):
            group = [c for c in cases if c.case == case]
            for c in group:
                if args.warmup > 0:
                    run_wrk(args, c, args.warmup)
            for r in range(args.rounds):
                for c in group[r % len(group) :] + group[: r % len(group)]:
                    measure_round(args, c, per_round)
            for c in group:
                verify(c, reference, c.bodies[-1])  # still right after the load
                s = c.summary()
                log(
                    f"{c.target:13s} {case:6s} {s['rps']:7.0f} req/s  p50 {s['p50_ms']:7.2f} ms"
                    f"  p99 {s['p99_ms']:7.2f} ms  errors {s['errors']}  rounds {s['rounds_rps']}"
                    f"  CPU% {s['cpu_pct']}"
                )
        meta = {
            "when": stamp,
            "shuqiao": source + "".join(f", {kv}" for kv in args.shuqiao_env),
            "baseline": args.baseline_rev,
            "size": args.size,
            "enterprises": table_size(args),
            "connections": args.connections,
            "duration_s": args.duration,
            "rounds": args.rounds,
            "warmup_s": args.warmup,
            "lookup_codes": len(codes),
            "page_size": PAGE_SIZE,
            "fields": list(FIELDS),
            "queries": {k: {"page": v[0], "lookup": v[1]} for k, v in QUERIES.items()},
            "setup_s": round(setup_s, 1),
            "wall_s": round(time.monotonic() - started, 1),
            "loadavg_after": os.getloadavg(),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "node": node_version()},
        }
        result = report(cases, meta)
        out = RESULTS_DIR / f"gateway-bench-{stamp}.json"
        out.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str))
        shutil.copyfile(out, RESULTS_DIR / "gateway-bench-latest.json")
        log(f"results in {out}; server logs and wrk scripts in {logs}; {meta['wall_s']:.0f}s in all")
        return 0
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
