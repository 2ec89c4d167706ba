"""`shuqiao watermark`: trace a suspected leak to the consumer it was delivered to, and rotate
the watermark key (docs/watermark.md).

`trace FILE` reads CSV, JSON (rows, or a GraphQL response), JSON Lines or XLSX; matches its
columns against every dataset with watermarked fields (policies.watermark_trace); scores every
department and enterprise under every watermark key; and lists the matching deliveries from
the audit log. With -o, the report is written to FILE and signed with the gateway's SM2 key
(FILE.sig, verified like an audit export: `shuqiao verify-response FILE.sig --body FILE`)."""

from __future__ import annotations

import csv
import io
import json
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from gateway.cli_support import run_with_engine, settings

watermark_app = typer.Typer(
    help="数据水印: trace a leak to its recipient; rotate the watermark key.", no_args_is_help=True
)

IDENTIFIED = 1e-6  # adjusted false-match probability at or below which a recipient is named


# ---------------------------------------------------------------- reading a leak


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The leak's rows as column → value (text or number), whatever the format."""
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        return _xlsx(path)
    return read_rows_text(path.read_bytes().decode("utf-8-sig"))


def read_rows_text(text: str) -> list[dict[str, Any]]:
    """CSV (any of , ; tab |), a JSON array of rows, a GraphQL response, or JSON Lines."""
    if text.lstrip()[:1] in ("[", "{"):
        try:
            return _json_rows(json.loads(text))
        except json.JSONDecodeError:
            return [_flat(json.loads(line)) for line in text.splitlines() if line.strip()]
    if not text.strip():
        return []
    dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    return [dict(r) for r in csv.DictReader(io.StringIO(text), dialect=dialect)]


def _json_rows(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, list):
        return [_flat(r) for r in data if isinstance(r, dict)]
    if isinstance(data, dict):
        # a GraphQL response: the first list of rows (or of edges' nodes) found
        for value in (data.get("data") or data).values():
            if isinstance(value, dict) and isinstance(value.get("edges"), list):
                return [_flat(e.get("node") or {}) for e in value["edges"] if isinstance(e, dict)]
            if isinstance(value, list):
                return _json_rows(value)
    return []


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    return {str(k): v for k, v in row.items() if not isinstance(v, dict | list)}


def _xlsx(path: Path) -> list[dict[str, Any]]:
    from openpyxl import load_workbook

    sheet = load_workbook(path, read_only=True, data_only=True).active
    it = sheet.iter_rows(values_only=True)  # type: ignore[union-attr]
    header = [str(h) if h is not None else f"column{i + 1}" for i, h in enumerate(next(it, ()))]
    return [dict(zip(header, r, strict=False)) for r in it]


# ---------------------------------------------------------------- the gateway's side


async def _targets(engine: Any, dataset: str | None) -> tuple[list[Any], Any]:
    from catalogue.service import load_catalogue
    from policies.watermark_trace import MarkedField, TraceTarget

    catalogue = await load_catalogue(engine)
    out = []
    for spec in catalogue.datasets.values():
        if dataset is not None and spec.code != dataset:
            continue
        marked = tuple(
            MarkedField(spec.code, f.name, f.title, f.watermark_tolerance)
            for f in spec.fields
            if f.watermark_tolerance is not None
        )
        if marked and spec.entity is not None and spec.entity_field:
            key = spec.field(spec.entity_field)
            out.append(TraceTarget(spec.code, spec.entity.value, key.name, key.title, marked))
    return out, catalogue


async def _truth(
    engine: Any, spec: Any, keys: list[str], fields: list[str], master_key: bytes
) -> dict[str, Any]:
    """field → row key → stored values, for the rows of the leak's keys."""
    from sqlalchemy import select

    from catalogue.pool import pool_table
    from catalogue.protection import blind_column, is_protected, load_keyring

    table = pool_table(spec)
    key_field = spec.field(spec.entity_field)
    protected = is_protected(key_field)
    cipher = (await load_keyring(engine, master_key, [])).cipher(spec.code) if protected else None
    lookup = {cipher.blind(key_field.name, k): k for k in keys} if cipher else {k: k for k in keys}
    column = table.c[blind_column(key_field.name)] if protected else table.c[key_field.name]
    out: dict[str, dict[str, list[Decimal]]] = {f: {} for f in fields}
    wanted = list(lookup)
    async with engine.connect() as conn:
        for i in range(0, len(wanted), 500):
            stmt = select(column, *(table.c[f] for f in fields)).where(column.in_(wanted[i : i + 500]))
            for row in await conn.execute(stmt):
                k = lookup.get(row[0])
                for f, v in zip(fields, row[1:], strict=True):
                    if k is not None and v is not None:
                        out[f].setdefault(k, []).append(Decimal(str(v)))
    return out


async def _recipients(engine: Any) -> list[str]:
    from sqlmodel import select
    from sqlmodel.ext.asyncio.session import AsyncSession

    from catalogue.models import Department
    from gateway.identity.models import Enterprise

    async with AsyncSession(engine) as session:
        depts = [d.code for d in (await session.exec(select(Department))).all()]
        ents = [e.code for e in (await session.exec(select(Enterprise))).all()]
    return sorted(set(depts) | set(ents))


async def _deliveries(
    engine: Any, recipient: str, datasets: set[str], limit: int = 50
) -> list[dict[str, Any]]:
    """The audit events in which `recipient` was delivered marked rows of these datasets."""
    from sqlalchemy import select

    from gateway.audit.models import AuditEvent

    out: list[dict[str, Any]] = []
    t = AuditEvent.__table__  # type: ignore[attr-defined]
    stmt = select(t.c.seq, t.c.occurred_at, t.c.request_id, t.c.principal_id, t.c.tier, t.c.detail)
    stmt = stmt.where(t.c.consumer == recipient).order_by(t.c.seq.desc())
    async with engine.connect() as conn:
        for row in await conn.execute(stmt):
            for read in orjson.loads(row.detail or "{}").get("reads", []):
                mark = read.get("watermark")
                if mark and read.get("dataset") in datasets:
                    out.append(
                        {
                            "seq": row.seq,
                            "occurred_at": str(row.occurred_at),
                            "request_id": row.request_id,
                            "principal_id": row.principal_id,
                            "tier": row.tier,
                            "dataset": read["dataset"],
                            "rows": read.get("rows"),
                            "watermark_id": mark.get("id"),
                            "fields": mark.get("fields"),
                        }
                    )
            if len(out) >= limit:
                break
    return out[:limit]


async def trace_file(
    engine: Any, master_key: bytes, rows: list[dict[str, Any]], dataset: str | None
) -> dict[str, Any]:
    """The whole trace as one JSON-able report (what `trace` prints and signs)."""
    from gateway.watermark_keys import load_watermark_keys
    from policies.watermark import DEFAULT_GAMMA, SCHEME
    from policies.watermark_trace import find_key_column, trace

    targets, catalogue = await _targets(engine, dataset)
    if not targets:
        raise ValueError(f"no dataset{' ' + dataset if dataset else ''} has watermarked fields")
    truth: dict[str, Any] = {}
    for t in targets:
        key_column = find_key_column(rows, t)
        if key_column is not None:
            keys = sorted({str(r.get(key_column) or "").strip() for r in rows} - {""})
            spec = catalogue.datasets[t.dataset]
            truth[t.dataset] = await _truth(engine, spec, keys, [f.name for f in t.fields], master_key)
    keyring = await load_watermark_keys(engine, master_key, create=False)
    recipients = await _recipients(engine)
    matchings, scores = trace(rows, targets, recipients, keyring.all, truth)
    used = [m for m in matchings if m.columns]
    report: dict[str, Any] = {
        "scheme": SCHEME,
        "gamma": DEFAULT_GAMMA,
        "rows_read": len(rows),
        "matched": [m.as_dict() for m in (used or matchings)],
        "candidates_tested": len(scores),
        "recipients": [s.as_dict() for s in scores[:10] if s.marked],
        "identified": None,
    }
    best = scores[0] if scores else None
    if best is not None and best.marked and best.p_adjusted <= IDENTIFIED:
        datasets = {m.dataset for m in used}
        report["identified"] = {
            **best.as_dict(),
            "deliveries": await _deliveries(engine, best.recipient, datasets),
        }
    return report


def _sign(output: Path) -> str:
    from gateway.crypto.signing import ResponseSigner, detached_signature, open_signing_store

    signer = ResponseSigner(open_signing_store(settings().var_dir, create=False))
    headers = {"content-type": "application/json", "x-request-id": f"cli-watermark-{uuid.uuid4().hex}"}
    added = signer.sign(200, headers, output.read_bytes())
    sig = output.with_name(output.name + ".sig")
    sig.write_bytes(detached_signature(200, {**headers, **added}))
    return f"signed: {sig} (key {signer.current()[0].kid})"


def _human(report: dict[str, Any]) -> str:
    lines = [
        f"read {report['rows_read']} rows; {report['candidates_tested']} recipient×key candidates tested"
    ]
    for m in report["matched"]:
        cols = ", ".join(f"{f}←{c!r} ({m['matched_by'][f]})" for f, c in m["columns"].items())
        lines.append(f"  {m['dataset']}: key column {m['key_column']!r}; {cols or m['problem']}")
    for r in report["recipients"][:5]:
        lines.append(
            f"  {r['recipient']:<16} key {r['kid']}: {r['matching_bits']}/{r['marked_cells']} bits, "
            f"false-match probability {r['false_match_probability']:.3g} "
            f"(×{report['candidates_tested']} candidates: {r['false_match_probability_adjusted']:.3g})"
        )
    ident = report["identified"]
    if ident is None:
        lines.append("no recipient identified (no adjusted false-match probability ≤ 1e-6)")
    else:
        n = len(ident["deliveries"])
        lines.append(f"identified: {ident['recipient']} ({n} marked deliveries in the audit log)")
        for d in ident["deliveries"][:10]:
            lines.append(
                f"  audit #{d['seq']} {d['occurred_at']} {d['dataset']} rows={d['rows']} {d['watermark_id']}"
            )
    return "\n".join(lines)


@watermark_app.command("trace")
def trace_cmd(
    file: Annotated[
        Path,
        typer.Argument(help="The suspected leak: CSV, JSON, JSON Lines or XLSX; - for stdin (CSV/JSON)."),
    ],
    dataset: Annotated[
        str | None, typer.Option(help="Only this dataset (default: every watermarked one).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the report here, signed (FILE.sig).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Name the consumer a leaked extract was delivered to, with its false-match probability
    and the audit events of those deliveries."""
    from gateway.secrets import load_master_key

    if str(file) == "-":  # pasted rows
        rows = read_rows_text(sys.stdin.read())
    elif not file.exists():
        typer.echo(f"error: {file} does not exist", err=True)
        raise typer.Exit(2)
    else:
        rows = read_rows(file)
    if not rows:
        typer.echo("error: no rows could be read from the file", err=True)
        raise typer.Exit(2)
    master_key = load_master_key(settings().master_key_file)
    report = run_with_engine(
        lambda engine: trace_file(engine, master_key, rows, dataset), expected=(ValueError,)
    )
    body = json.dumps(report, ensure_ascii=False, indent=2, sort_keys=True, default=str) + "\n"
    if output is not None:
        output.write_text(body, encoding="utf-8")
        typer.echo(_sign(output), err=True)
    typer.echo(body if as_json else _human(report))
    raise typer.Exit(0 if report["identified"] else 1)


@watermark_app.command("rotate")
def rotate_cmd() -> None:
    """Make a new watermark key current; older keys stay for tracing older leaks."""
    from gateway.secrets import load_master_key
    from gateway.watermark_keys import rotate_watermark_key

    master_key = load_master_key(settings().master_key_file)
    kid = run_with_engine(lambda engine: rotate_watermark_key(engine, master_key))
    typer.echo(f"new watermark key {kid}")


@watermark_app.command("keys")
def keys_cmd() -> None:
    """The watermark key ids, newest first (never the keys)."""
    from gateway.secrets import load_master_key
    from gateway.watermark_keys import load_watermark_keys

    master_key = load_master_key(settings().master_key_file)
    ring = run_with_engine(lambda engine: load_watermark_keys(engine, master_key, create=False))
    current = ring.current
    for kid in ring.kids():
        typer.echo(f"{kid}{'  (current)' if current is not None and kid == current.kid else ''}")
