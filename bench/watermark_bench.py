"""Watermark detection over simulated leaks, distortion, and the share tier's throughput with
marking on vs off (policies.watermark, policies.watermark_text, docs/watermark.md).

    .venv/bin/python bench/watermark_bench.py                   # everything: ~10 min on 2 cores
    .venv/bin/python bench/watermark_bench.py --no-http         # the simulation only
    .venv/bin/python bench/watermark_bench.py --leaks 200 --sizes 50,200

**Simulation.** A table of N entities with the demo's three marked fields: registered capital in
万元 (tolerance 0.01, often a round number), an amount in 元 (tolerance 1), and an address
(`text: digit_width`, 1–3 runs of digits), delivered to 50 consumers, each with its own marks.
Each leak: one consumer at random, a random subset of its rows, with some marked columns dropped
("all 3"; "capital+address": the amount dropped; "capital": only it left), a fraction of the
values altered (a number: a random change of up to ±5 %, rounded to its precision — an edit,
not a tolerance-sized nudge; an address: retyped, i.e. NFKC, which erases its marks). The trace
scores all 50 consumers as `policies.watermark.score` does (binomial tail, Bonferroni over 50;
the fast scorer here reads precomputed bits — scheme v2: capital and address from one digest of
the enterprise_registration row, the amount from its tax_credit_rating row's — and is checked
against `score` on the first leaks)
and names one when its adjusted false-match probability is ≤ 1e-6. A last row traces leaks of
the *unmarked* table (what an anonymous caller gets): anyone named there is a false attribution.

**Throughput.** `shuqiao demo init --size S` into a fresh PostgreSQL database, two gateways
(uvicorn, one worker each) on 127.0.0.1 over it, one with SHUQIAO_WATERMARK=on and one off;
hrss (a consumer, so marked) asks for 100-row pages of enterprise_registration with the marked
capital and address. Rounds alternate (on, off, off, on, …) so drift hits both; the figure is
the median of the rounds' requests per second and the ratio on/off, and each gateway's own CPU
per request. `--baseline DIR` adds a third gateway (marking on) running another checkout's code on
the same store in the same rounds: before and after in one run. Bounded: --rounds ×
--requests requests per gateway, loopback only.

Deterministic where it can be (seeded); the throughput figures are this machine's, this run's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
from decimal import Decimal
from operator import itemgetter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from policies.watermark import (  # noqa: E402
    DEFAULT_GAMMA,
    MAX_RUNS,
    Cell,
    Layout,
    MarkedColumn,
    MarkKey,
    RowMarker,
    row_marker,
    row_prf,
    score,
)
from policies.watermark_text import position_field, read_text_bits  # noqa: E402

NUMERIC = {"registered_capital": Decimal("0.01"), "tax_paid_amount": Decimal(1)}
TEXT = "registered_address"
# where each field lives, as in the demo's catalogue: scheme v2 marks a row with one digest per
# (recipient, dataset, row key), each field at its slot of the dataset's layout
ER, TCR = "enterprise_registration", "tax_credit_rating"
DATASET = {"registered_capital": ER, TEXT: ER, "tax_paid_amount": TCR}
LAYOUTS = {
    ER: Layout.of([("registered_capital", False), (TEXT, True)]),
    TCR: Layout.of([("tax_paid_amount", False)]),
}
THRESHOLD = 1e-6
VARIANTS = {
    "all 3": ("registered_capital", "tax_paid_amount", TEXT),
    "capital+address": ("registered_capital", TEXT),
    "capital": ("registered_capital",),
}
ROADS = ["友谊路", "雁塔路", "开发大道", "兴业路", "长安北路", "朱雀大街", "太白南路"]


def make_table(n: int, rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
    rows = []
    for i in range(n):
        capital = (
            Decimal(rng.choice([50, 100, 200, 500, 1000, 3000]))
            if rng.random() < 0.6
            else Decimal(rng.randint(1, 10**6)) / 100
        )
        address = f"陕西省西安市雁塔区{rng.choice(ROADS)}{rng.randint(1, 999)}号"
        if rng.random() < 0.5:
            address += f"{rng.randint(1, 30)}层"
        if rng.random() < 0.4:
            address += f"{rng.randint(1, 40)}室"
        rows.append(
            (
                f"91610000{i:010d}",
                {
                    "registered_capital": capital.quantize(Decimal("0.01")),
                    "tax_paid_amount": Decimal(rng.randint(0, 5 * 10**6)),
                    TEXT: address,
                },
            )
        )
    return rows


def demo_table(size: str) -> list[tuple[str, dict[str, Any]]]:
    """The demo's own enterprises (`shuqiao demo init --size SIZE`, same generator and seed): each
    one's registered capital and address, and the tax paid of its latest rating (None for the
    enterprises without one — those leak rows then carry no amount cell)."""
    from gateway.demo.generate import DemoGenerator

    generator = DemoGenerator(size)
    amounts: dict[str, tuple[int, Decimal]] = {}
    for t in generator.dicts("tax_credit_rating"):
        year = t["rating_year"]
        if t["credit_code"] not in amounts or amounts[t["credit_code"]][0] < year:
            amounts[t["credit_code"]] = (year, t["tax_paid_amount"])
    rows = []
    for e in generator.dicts("enterprise_registration"):
        k = e["credit_code"]
        amount = amounts.get(k)
        rows.append(
            (
                k,
                {
                    "registered_capital": e["registered_capital"],
                    "tax_paid_amount": None if amount is None else amount[1],
                    TEXT: e["registered_address"],
                },
            )
        )
    return rows


_MARKERS: dict[tuple[bytes, str], list[tuple[list[str], RowMarker]]] = {}


def _markers(key: MarkKey, consumer: str) -> list[tuple[list[str], RowMarker]]:
    """Per dataset, its marked fields and the row marker the gateway's planner builds for them
    (policies.watermark.row_marker: the values of mark_value and mark_text)."""
    markers = _MARKERS.get((key.secret, consumer))
    if markers is None:
        markers = []
        for ds in LAYOUTS:
            fields = [f for f in (*NUMERIC, TEXT) if DATASET[f] == ds]
            columns = [MarkedColumn(f, NUMERIC.get(f)) for f in fields]
            markers.append((fields, row_marker(key.secret, consumer, ds, columns, layout=LAYOUTS[ds])))
        _MARKERS[(key.secret, consumer)] = markers
    return markers


def deliver_row(k: str, vals: dict[str, Any], key: MarkKey, consumer: str) -> tuple[str, dict[str, Any]]:
    """One row as delivered to `consumer`, one row marker call per dataset."""
    out: dict[str, Any] = {}
    for fields, mark in _markers(key, consumer):
        out.update(zip(fields, mark(k, tuple(vals[f] for f in fields)), strict=True))
    return k, out


def deliver(
    rows: list[tuple[str, dict[str, Any]]], key: MarkKey, consumer: str
) -> list[tuple[str, dict[str, Any]]]:
    return [deliver_row(k, vals, key, consumer) for k, vals in rows]


def tail(k: int, n: int) -> float:
    """P[X ≥ k], X ~ Binomial(n, ½), in log space with early stopping: the same figure as
    policies.watermark.binomial_tail (exact integers) to ~1e-12 relative, hundreds of times
    faster for the thousand-cell leaks tried here."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    base = math.lgamma(n + 1) - n * math.log(2)

    def term(i: int) -> float:
        return math.exp(base - math.lgamma(i + 1) - math.lgamma(n - i + 1))

    if 2 * k > n:  # upper tail, terms shrink as i grows
        total, i = 0.0, k
        while i <= n:
            t = term(i)
            total += t
            if t < total * 1e-17:
                break
            i += 1
        return total
    total, i = 0.0, k - 1  # 1 − lower tail, terms shrink as i falls
    while i >= 0:
        t = term(i)
        total += t
        if t < total * 1e-17:
            break
        i -= 1
    return max(0.0, 1.0 - total)


def alter(v: Decimal, t: Decimal, rng: random.Random) -> Decimal:
    changed = v * (1 + Decimal(rng.uniform(-0.05, 0.05)))
    return changed.quantize(t) if changed.quantize(t) != v else v + t * rng.choice([-3, 3])


SLOTS = 16  # bits per row in the bitsets: 0 capital, 1 amount, 2… the address's digit runs
_SLOT = {"registered_capital": 0, "tax_paid_amount": 1} | {
    position_field(TEXT, i): 2 + i for i in range(MAX_RUNS)
}


class Bits:
    """Every consumer's predicted bit for every cell of the table, computed once, as two bitsets
    per consumer (selected; predicted 1), SLOTS bits per row. A leak is two bitsets too (cells
    seen; seen as 1), so a consumer's marked cells and matches are popcounts: that is what makes
    tens of thousands of leaks affordable in pure Python. The bits are those of
    `policies.watermark.cell_bit` (scheme v2: one PRF output per (consumer, dataset, row), each
    field at its slot; checked against `score` on the first leaks). A leak is scored on its own rows'
    bits only (picked out of each consumer's bitset), so its cost follows its size, not the table's."""

    def __init__(self, table: list[tuple[str, dict[str, Any]]], key: MarkKey, consumers: list[str]) -> None:
        self.consumers = consumers
        self.row = {k: r for r, (k, _) in enumerate(table)}
        self.size = len(table) * SLOTS // 8
        threshold = int(256 * DEFAULT_GAMMA)
        slots = {f: LAYOUTS[DATASET[f]].slot(f) for f in (*NUMERIC, TEXT)}
        assert all(block == 0 for block, _ in slots.values())  # one digest per dataset and row
        text_at = slots[TEXT][1]
        self.selected: list[bytes] = []
        self.ones: list[bytes] = []
        for c in consumers:
            sel, one = bytearray(self.size), bytearray(self.size)
            for r, (k, _) in enumerate(table):
                digests = {ER: row_prf(key.secret, c, ER, k), TCR: row_prf(key.secret, c, TCR, k)}
                s_mask = o_mask = 0
                for slot, (f, o) in zip(range(2), ((f, slots[f][1]) for f in NUMERIC), strict=True):
                    h = digests[DATASET[f]]
                    if h[o] < threshold:
                        s_mask |= 1 << slot
                        o_mask |= (h[o + 1] & 1) << slot
                h = digests[ER]
                for i in range(MAX_RUNS):
                    if h[text_at + 2 * i] < threshold:
                        s_mask |= 1 << (2 + i)
                        o_mask |= (h[text_at + 2 * i + 1] & 1) << (2 + i)
                sel[2 * r : 2 * r + 2] = s_mask.to_bytes(2, "little")
                one[2 * r : 2 * r + 2] = o_mask.to_bytes(2, "little")
            self.selected.append(bytes(sel))
            self.ones.append(bytes(one))

    def best(self, observed: list[tuple[str, str, int]]) -> tuple[int, float, list[int], list[float]]:
        """(index of the likeliest consumer, its adjusted p, marked cells and adjusted p per
        consumer)."""
        observed = [o for o in observed if o[1] in _SLOT]  # a run past the tenth is never marked
        if not observed:
            return 0, 1.0, [0] * len(self.consumers), [1.0] * len(self.consumers)
        rows = sorted({self.row[k] for k, _, _ in observed})
        at = {r: j for j, r in enumerate(rows)}  # the leak's rows, packed: SLOTS bits each
        seen, ones = bytearray(2 * len(rows)), bytearray(2 * len(rows))
        for k, name, b in observed:
            i = at[self.row[k]] * SLOTS + _SLOT[name]
            seen[i >> 3] |= 1 << (i & 7)
            if b:
                ones[i >> 3] |= 1 << (i & 7)
        leak, leak_ones = int.from_bytes(seen, "little"), int.from_bytes(ones, "little")
        take = itemgetter(*(i for r in rows for i in (2 * r, 2 * r + 1)))  # those rows of a consumer's bits
        n: list[int] = []
        m: list[int] = []
        for sel_all, one_all in zip(self.selected, self.ones, strict=True):
            sel = int.from_bytes(bytes(take(sel_all)), "little")
            one = int.from_bytes(bytes(take(one_all)), "little")
            here = sel & leak
            n.append(here.bit_count())
            m.append(n[-1] - (here & (one ^ leak_ones)).bit_count())
        ps = [tail(m[i], n[i]) for i in range(len(n))]
        top = min(range(len(ps)), key=lambda i: (ps[i], -m[i], self.consumers[i]))
        adjusted = [min(1.0, p * len(ps)) for p in ps]
        return top, adjusted[top], n, adjusted


def observe(
    leak: list[tuple[str, dict[str, Any]]], fields: tuple[str, ...], altered: float, rng: random.Random
) -> tuple[list[tuple[str, str, int]], list[Cell]]:
    """The leak's readable bits, as (row key, cell name, bit), and the same as policy Cells."""
    out: list[tuple[str, str, int]] = []
    cells: list[Cell] = []
    text: list[tuple[str, str, int]] = []
    for k, vals in leak:
        for f in fields:
            v = vals[f]
            if v is None:  # the demo's enterprises without a tax rating: no amount
                continue
            edit = rng.random() < altered
            if f == TEXT:
                if edit:
                    v = unicodedata.normalize("NFKC", v)  # retyped: the widths are gone
                for i, b in enumerate(read_text_bits(v)):
                    if b is not None:
                        text.append((k, position_field(TEXT, i), b))
                continue
            if edit:
                v = alter(v, NUMERIC[f], rng)
            cell = Cell(DATASET[f], f, k, str(v), NUMERIC[f])
            b = cell.read()
            if b is not None:
                out.append((k, f, b))
                cells.append(cell)
    if len({b for _, _, b in text}) > 1:  # policies.watermark_trace: one width throughout = erased
        out.extend(text)
        cells.extend(Cell(ER, name, k, None, None, b) for k, name, b in text)
    return out, cells


def simulate(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    key = MarkKey("wm-bench", bytes(rng.getrandbits(8) for _ in range(32)))
    consumers = [f"c{i:02d}" for i in range(args.consumers)]
    started = time.perf_counter()
    table = demo_table(args.demo) if args.demo else make_table(args.entities, rng)
    source = (
        f"the demo's {args.demo} size ({len(table)} enterprises, "
        f"{sum(v['tax_paid_amount'] is not None for _, v in table)} with a tax amount)"
        if args.demo
        else f"{len(table)} entities"
    )
    small = len(table) * len(consumers) <= 1_000_000
    delivered = {c: deliver(table, key, c) for c in consumers} if small else {}

    def leak_of(consumer: str, size: int) -> list[tuple[str, dict[str, Any]]]:
        """`size` of the consumer's delivered rows at random (delivered on demand at the large size)."""
        if small:
            return rng.sample(delivered[consumer], size)
        return [deliver_row(*table[i], key, consumer) for i in rng.sample(range(len(table)), size)]

    bits = Bits(table, key, consumers)
    print(
        f"simulation: {source}, {len(consumers)} consumers, γ=0.5, "
        f"{args.leaks} leaks per setting (setup {time.perf_counter() - started:.0f} s)"
    )
    head = ("rows", "altered", "columns", "detected", "false", "cells", "median p_adj")
    widths = (5, 7, 16, 9, 6, 6, 13)
    print(" ".join(f"{h:>{w}}" for h, w in zip(head, widths, strict=True)))
    checked = 0
    total_false = total = 0
    for size in args.sizes:
        for altered in args.alterations:
            for label, fields in VARIANTS.items():
                hits = false = 0
                cells_n: list[int] = []
                p_true: list[float] = []
                for _ in range(args.leaks):
                    leaker = rng.randrange(len(consumers))
                    leak = leak_of(consumers[leaker], size)
                    observed, cells = observe(leak, fields, altered, rng)
                    top, p_adj, n, adjusted = bits.best(observed)
                    if checked < args.check:  # the fast scorer agrees with the policy's
                        ref = score(cells, consumers, [key], layouts=LAYOUTS)[0]
                        assert ref.recipient == consumers[top], (ref, top)
                        assert math.isclose(ref.p_adjusted, p_adj, rel_tol=1e-9, abs_tol=1e-300), (ref, p_adj)
                        checked += 1
                    named = top if p_adj <= THRESHOLD else None
                    hits += named == leaker
                    false += named is not None and named != leaker
                    cells_n.append(n[leaker])
                    p_true.append(adjusted[leaker])
                total += args.leaks
                total_false += false
                print(
                    f"{size:>5} {altered:>7.0%} {label:>16} {hits / args.leaks:>9.1%} "
                    f"{false / args.leaks:>6.1%} {statistics.median(cells_n):>6.0f} "
                    f"{statistics.median(p_true):>13.2g}"
                )
    # leaks of the unmarked table (open data as stored): nobody may be named
    named = 0
    for _ in range(args.leaks):
        leak = rng.sample(table, 200)
        observed, _ = observe(leak, VARIANTS["all 3"], 0.0, rng)
        p_adj = bits.best(observed)[1]
        named += p_adj <= THRESHOLD
    total += args.leaks
    total_false += named
    print(f"unmarked data, 200 rows: {named} of {args.leaks} leaks named anyone")
    print(
        f"false attribution overall: {total_false} of {total} leaks "
        f"(the threshold bounds it at 1e-6 per leak; {checked} leaks cross-checked against "
        "policies.watermark.score)"
    )
    judged = consumers if small else consumers[: max(1, 1_000_000 // len(table))]
    if not small:
        delivered = {c: deliver(table, key, c) for c in judged}
    print(
        f"distortion (delivered − true), per field, over {len(judged)} consumers' deliveries "
        f"of all {len(table)} rows:"
    )
    for f, t in NUMERIC.items():
        deltas = [
            abs(d[1][f] - r[1][f])
            for c in judged
            for d, r in zip(delivered[c], table, strict=True)
            if r[1][f] is not None
        ]
        mean = statistics.fmean(float(x) for x in deltas)
        print(
            f"  {f}: tolerance {t}; max {max(deltas)} ({max(deltas) / t:.2f} t), "
            f"mean {mean:.4g} ({mean / float(t):.2f} t), "
            f"changed {sum(x != 0 for x in deltas) / len(deltas):.1%} of values"
        )
    same = changed = count = 0
    for c in judged:
        for d, r in zip(delivered[c], table, strict=True):
            count += 1
            same += unicodedata.normalize("NFKC", d[1][TEXT]) == unicodedata.normalize("NFKC", r[1][TEXT])
            changed += d[1][TEXT] != r[1][TEXT]
    print(
        f"  {TEXT}: text digit_width; equal to the stored text under NFKC in {same / count:.1%} of values, "
        f"changed (some run full-width) {changed / count:.1%}"
    )
    # what the gateway's planner runs per row (policies.watermark.row_marker, the stringification
    # inside): a row seen for the first time, and one remembered
    import policies.watermark as wm

    count, t = 20000, NUMERIC["registered_capital"]  # rows within the memo (32,768)
    row_keys = [f"91610000{i:010d}" for i in range(count)]
    costs = []
    capital, address = Decimal("12345.67"), "陕西省西安市碑林区友谊路390号24层11室"
    for fields in (("capital",), ("address",), ("capital", "address")):
        columns, values = [], []
        if "capital" in fields:
            columns.append(MarkedColumn("registered_capital", t, str))
            values.append(capital)
        if "address" in fields:
            columns.append(MarkedColumn(TEXT, None))
            values.append(address)
        mark = row_marker(key.secret, "c00", ER, columns, layout=LAYOUTS[ER])
        row = tuple(values)
        wm._memo.clear()
        for sight in range(3):  # first sight, second (remembered then), third (from the memo)
            started = time.perf_counter()
            for k in row_keys:
                mark(k, row)
            if sight != 1:
                costs.append((time.perf_counter() - started) / count * 1e6)
    print(
        f"marking cost: capital alone {costs[0]:.2f} µs per row first seen, {costs[1]:.2f} µs remembered; "
        f"address (3 runs) alone {costs[2]:.2f} µs, {costs[3]:.2f} µs; both (one digest per row) "
        f"{costs[4]:.2f} µs, {costs[5]:.2f} µs"
    )


# ---------------------------------------------------------------- throughput over HTTP


HTTP_QUERY = """query Page($after: String) { enterpriseRegistration(first: 100, after: $after) {
  edges { node { creditCode name registeredCapital registeredAddress establishmentDate district status } }
  pageInfo { endCursor } } }"""


def _venv_bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def setup_demo(args: argparse.Namespace, var: Path) -> dict[str, str]:
    import psycopg

    base, db = args.postgres.rsplit("/", 1)[0], args.database
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db}"')
    env = {
        **os.environ,
        "SHUQIAO_DATABASE_URL": f"{base}/{db}",
        "SHUQIAO_VAR_DIR": str(var),
        "PYTHONPATH": str(ROOT),
    }
    started = time.perf_counter()
    out = subprocess.run(
        [_venv_bin("shuqiao"), "demo", "init", "--size", args.size],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise SystemExit(f"shuqiao demo init failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    print(
        f"throughput: demo size {args.size} in PostgreSQL (demo init {time.perf_counter() - started:.0f} s)"
    )
    return env


def start(
    env: dict[str, str], port: int, marking: str, log: Path, root: Path = ROOT
) -> subprocess.Popen[bytes]:
    """One gateway on `port`, running the code at `root` (this checkout, or --baseline's)."""
    import httpx

    cmd = [_venv_bin("uvicorn"), "asgi:app", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--no-access-log", "--log-level", "warning"]
    full = {**env, "SHUQIAO_WATERMARK": marking, "SHUQIAO_ISSUER": f"http://127.0.0.1:{port}"}
    full["PYTHONPATH"] = str(root)
    proc = subprocess.Popen(cmd, cwd=root, env=full, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit(f"gateway on {port} did not start:\n{log.read_text()[-3000:]}")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def round_(
    url: str, token: str, requests: int, concurrency: int, cursors: list[str | None], start: int = 0
) -> float:
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    queue = list(range(start + requests - 1, start - 1, -1))

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            i = queue.pop()
            body = {"query": HTTP_QUERY, "variables": {"after": cursors[i % len(cursors)]}}
            r = await client.post(url, json=body, headers=headers)
            if r.status_code != 200 or b'"errors"' in r.content:
                raise SystemExit(f"bad answer {r.status_code}: {r.text[:300]}")

    async with httpx.AsyncClient(timeout=30) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return requests / (time.perf_counter() - started)


def throughput(args: argparse.Namespace) -> None:
    import httpx

    var = Path(tempfile.mkdtemp(prefix="shuqiao-wm-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        env = setup_demo(args, var)
        creds = json.loads((var / "demo-credentials.json").read_text("utf-8"))
        hrss = creds["clients"]["hrss"]
        urls, tokens = {}, {}
        # "base": marking on, running the code of --baseline (another checkout) on the same store
        gateways = [("on", "on", args.port, ROOT), ("off", "off", args.port + 1, ROOT)]
        if args.baseline:
            gateways.append(("base", "on", args.port + 2, Path(args.baseline).resolve()))
        names = [g[0] for g in gateways]
        for name, marking, port, root in gateways:
            procs.append(start(env, port, marking, var / f"gateway-{name}.log", root))
            base = f"http://127.0.0.1:{port}"
            r = httpx.post(
                f"{base}/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(hrss["client_id"], hrss["client_secret"]),
            )
            r.raise_for_status()
            urls[name], tokens[name] = f"{base}/share/graphql", r.json()["access_token"]
        # the pages' cursors, and a check that "on" marks and "off" does not. With --cold, under
        # another operation name: the gateway caches a plan per query text and variables (1,024
        # of them), so walking the rounds' pages with their own query would leave every round's
        # plan cached, and a round would be cold in the markers' memo only, not in the planner
        check_query = HTTP_QUERY.replace("query Page(", "query CheckPage(") if args.cold else HTTP_QUERY
        cursors: list[str | None] = [None]
        pages: dict[str, list[Any]] = {}
        for marking in names:
            after: str | None = None
            rows: list[Any] = []
            for _ in range(args.pages):
                body = {"query": check_query, "variables": {"after": after}}
                data = httpx.post(
                    urls[marking],
                    json=body,
                    headers={"Authorization": f"Bearer {tokens[marking]}"},
                    timeout=30,
                ).json()["data"]["enterpriseRegistration"]
                rows += [e["node"] for e in data["edges"]]
                after = data["pageInfo"]["endCursor"]
                if marking == "on" and after:
                    cursors.append(after)
            pages[marking] = rows
        differ = sum(a != b for a, b in zip(pages["on"], pages["off"], strict=True))
        if args.baseline:
            base_differ = sum(a != b for a, b in zip(pages["base"], pages["off"], strict=True))
            print(f"  check: {base_differ} of {len(pages['base'])} rows differ between base and off")
        print(
            f"  check: {differ} of {len(pages['on'])} rows differ between on and off (marks); "
            f"{args.rounds} rounds × {args.requests} requests of 100 rows, concurrency {args.concurrency}, "
            f"{len(cursors[: args.pages])} distinct pages"
            f"{' (cold: each round its own, its plans not cached)' if args.cold else ''}"
        )
        cursors = cursors[: args.pages]
        warm = args.requests // 4
        first_warm = max(0, len(cursors) - warm) if args.cold else 0  # --cold: pages no round asks for
        for marking in names:  # warm them
            asyncio.run(round_(urls[marking], tokens[marking], warm, args.concurrency, cursors, first_warm))
        rates: dict[str, list[float]] = {m: [] for m in names}
        cpu: dict[str, list[float]] = {m: [] for m in names}  # the server's CPU ms per request
        pids = {m: p.pid for m, p in zip(names, procs, strict=True)}
        for n in range(args.rounds):
            order = names if n % 2 == 0 else names[::-1]
            for marking in order:
                cpu0 = cpu_seconds(pids[marking])
                first = n * args.requests if args.cold else 0  # --cold: each round its own pages
                rates[marking].append(
                    asyncio.run(
                        round_(
                            urls[marking], tokens[marking], args.requests, args.concurrency, cursors, first
                        )
                    )
                )
                cpu1 = cpu_seconds(pids[marking])
                if cpu0 is not None and cpu1 is not None:
                    cpu[marking].append((cpu1 - cpu0) * 1000 / args.requests)
        on, off = statistics.median(rates["on"]), statistics.median(rates["off"])
        print(f"  marking on : {on:7.1f} req/s median ({', '.join(f'{x:.0f}' for x in rates['on'])})")
        print(f"  marking off: {off:7.1f} req/s median ({', '.join(f'{x:.0f}' for x in rates['off'])})")
        print(
            f"  on/off = {on / off:.3f} (cost {1 - on / off:+.1%}; "
            f"rows/s on {on * 100:.0f}, off {off * 100:.0f})"
        )
        if args.baseline:
            b = statistics.median(rates["base"])
            print(f"  baseline on: {b:7.1f} req/s median ({', '.join(f'{x:.0f}' for x in rates['base'])})")
            print(f"  base/off = {b / off:.3f} (cost {1 - b / off:+.1%}), the code of {args.baseline}")
        if cpu["on"] and cpu["off"]:
            # less at the mercy of other jobs than the rate: what the server itself spent per request
            c_on, c_off = statistics.median(cpu["on"]), statistics.median(cpu["off"])
            print(
                f"  server CPU per request: on {c_on:.2f} ms, off {c_off:.2f} ms median; "
                f"off/on = {c_off / c_on:.3f} (cost {c_on / c_off - 1:+.1%} of CPU)"
            )
            if args.baseline and cpu["base"]:
                c_b = statistics.median(cpu["base"])
                print(
                    f"  baseline CPU per request: {c_b:.2f} ms median; off/base = {c_off / c_b:.3f} "
                    f"(cost {c_b / c_off - 1:+.1%} of CPU); on/base CPU {c_on / c_b:.3f}"
                )
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(var, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--leaks", type=int, default=1000, help="simulated leaks per setting")
    p.add_argument("--consumers", type=int, default=50)
    p.add_argument("--entities", type=int, default=5000, help="size of the synthetic table")
    p.add_argument(
        "--demo",
        choices=["small", "large"],
        help="simulate on the demo's own enterprises of this size (large: 200,000) instead",
    )
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[50, 200, 1000])
    p.add_argument("--alterations", type=lambda s: [float(x) for x in s.split(",")], default=[0.0, 0.1, 0.3])
    p.add_argument(
        "--check", type=int, default=30, help="leaks cross-checked against policies.watermark.score"
    )
    p.add_argument("--seed", type=int, default=19)
    p.add_argument("--no-http", dest="http", action="store_false", help="skip the throughput part")
    p.add_argument("--no-simulation", dest="simulation", action="store_false")
    p.add_argument("--size", default="small", choices=["small", "large"], help="demo size for throughput")
    p.add_argument(
        "--postgres",
        default=os.environ.get("SHUQIAO_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    p.add_argument(
        "--database", default="shuqiao_wm_bench", help="PostgreSQL database the bench drops and recreates"
    )
    p.add_argument("--port", type=int, default=8121)
    p.add_argument(
        "--baseline",
        help="another checkout of the gateway (e.g. `git worktree add` or `git archive` of the commit "
        "before): a third gateway, marking on, runs its code on the same store, in the same rounds",
    )
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--pages", type=int, default=10, help="distinct 100-row pages the rounds ask for")
    p.add_argument(
        "--cold",
        action="store_true",
        help="each round asks for the next --requests pages (cycling through --pages), so with "
        "--pages × 100 rows beyond the markers' memo (32,768 rows) no marked cell is remembered, and "
        "no page's plan is cached (the check walks the pages under another operation name)",
    )
    args = p.parse_args()
    if args.simulation:
        simulate(args)
    if args.http:
        throughput(args)


if __name__ == "__main__":
    main()
