"""Tracing a suspected leak (数据水印, docs/watermark.md) from the gateway's side, for the CLI
(`shuqiao watermark trace`) and the officers' page and API (gateway/watermark_http.py): read the
leak's rows (CSV, JSON, JSON Lines, XLSX, pasted text), the catalogue's watermarked fields, the
stored values of the leak's keys, every candidate recipient and every watermark key; score them
(policies.watermark_trace); list the identified recipient's marked deliveries from the audit
log; sign the report with the gateway's SM2 response-signing key."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

IDENTIFIED = 1e-6  # adjusted false-match probability at or below which a recipient is named


# ---------------------------------------------------------------- reading a leak


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The leak's rows as column → value (text or number), whatever the format."""
    return read_rows_bytes(path.read_bytes())


def read_rows_bytes(data: bytes) -> list[dict[str, Any]]:
    """An uploaded leak: a spreadsheet (XLSX, by its ZIP signature) or UTF-8 text (with or without
    BOM) in any of the text forms. Raises ValueError when it is neither."""
    if data[:4] == b"PK\x03\x04":
        return _xlsx(io.BytesIO(data))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError("the leak is neither an XLSX workbook nor UTF-8 text") from None
    return read_rows_text(text)


def read_rows_text(text: str) -> list[dict[str, Any]]:
    """CSV (any of , ; tab |), a JSON array of rows, a GraphQL response, or JSON Lines."""
    if text.lstrip()[:1] in ("[", "{"):
        try:
            return _json_rows(json.loads(text))
        except json.JSONDecodeError:
            return [_flat(json.loads(line)) for line in text.splitlines() if line.strip()]
    if not text.strip():
        return []
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        raise ValueError("no CSV delimiter (, ; tab |) could be found") from None
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


def _xlsx(source: Path | io.BytesIO) -> list[dict[str, Any]]:
    from zipfile import BadZipFile

    from openpyxl import load_workbook

    try:
        sheet = load_workbook(source, read_only=True, data_only=True).active
    except (BadZipFile, KeyError, OSError) as err:
        raise ValueError(f"not a readable XLSX workbook: {err}") from None
    it = sheet.iter_rows(values_only=True)
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
            MarkedField(spec.code, f.name, f.title, f.watermark_tolerance, f.watermark_text)
            for f in spec.fields
            if f.watermarked
        )
        if marked and spec.entity is not None and spec.entity_field:
            key = spec.field(spec.entity_field)
            out.append(TraceTarget(spec.code, spec.entity.value, key.name, key.title, marked))
    return out, catalogue


async def _truth(
    engine: Any, spec: Any, keys: list[str], fields: list[str], master_key: bytes
) -> dict[str, Any]:
    """field → row key → stored values (Decimal, or str for a text mark), for the leak's keys."""
    from sqlalchemy import select

    from catalogue.pool import pool_table
    from catalogue.protection import blind_column, is_protected, load_keyring

    table = pool_table(spec)
    key_field = spec.field(spec.entity_field)
    protected = is_protected(key_field)
    cipher = (await load_keyring(engine, master_key, [])).cipher(spec.code) if protected else None
    lookup = {cipher.blind(key_field.name, k): k for k in keys} if cipher else {k: k for k in keys}
    column = table.c[blind_column(key_field.name)] if protected else table.c[key_field.name]
    out: dict[str, dict[str, list[Any]]] = {f: {} for f in fields}
    text = {f for f in fields if spec.field(f).watermark_text is not None}  # compared as strings
    wanted = list(lookup)
    async with engine.connect() as conn:
        for i in range(0, len(wanted), 500):
            stmt = select(column, *(table.c[f] for f in fields)).where(column.in_(wanted[i : i + 500]))
            for row in await conn.execute(stmt):
                k = lookup.get(row[0])
                for f, v in zip(fields, row[1:], strict=True):
                    if k is not None and v is not None:
                        out[f].setdefault(k, []).append(v if f in text else Decimal(str(v)))
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
    from gateway.db import table_of

    out: list[dict[str, Any]] = []
    t = table_of(AuditEvent)
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


async def recorded_schemes(engine: Any, kids: list[str]) -> dict[str, list[str]]:
    """Per watermark key id, the schemes to trace with: the current one (new deliveries), and an
    earlier one wherever the audit log records a delivery made under it with that key (its
    `watermark.id` is `SCHEME:kid:recipient`, policies.watermark.watermark_id)."""
    from sqlalchemy import select

    from gateway.audit.models import AuditEvent
    from gateway.db import table_of
    from policies.watermark import SCHEME, SCHEMES, watermark_id

    t = table_of(AuditEvent)
    out: dict[str, list[str]] = {}
    async with engine.connect() as conn:
        for kid in kids:
            out[kid] = [SCHEME]
            for scheme in SCHEMES:
                if scheme == SCHEME:
                    continue
                # the recorded id's start, quoted as in the detail JSON: '"SCHEME:kid:'
                recorded = '"' + watermark_id(kid, "", scheme)
                stmt = select(t.c.seq).where(t.c.detail.contains(recorded, autoescape=True)).limit(1)
                if (await conn.execute(stmt)).first() is not None:
                    out[kid].append(scheme)
    return out


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
    schemes = await recorded_schemes(engine, [k.kid for k in keyring.all])
    matchings, scores = trace(rows, targets, recipients, keyring.all, truth, schemes)
    used = [m for m in matchings if m.columns]
    report: dict[str, Any] = {
        "scheme": SCHEME,
        "schemes_tried": schemes,
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


def report_body(report: Mapping[str, Any]) -> bytes:
    """The report as the bytes that are signed and saved (stable key order, UTF-8)."""
    return (json.dumps(report, ensure_ascii=False, indent=2, sort_keys=True, default=str) + "\n").encode()


def sign_report(signer: Any, body: bytes, request_id: str) -> tuple[bytes, str]:
    """A detached SM2 signature of the report body (gateway.crypto.signing, RFC 9421 like an audit
    export), verified with `shuqiao verify-response REPORT.sig --body REPORT`; and the key id."""
    from gateway.crypto.signing import detached_signature

    headers = {"content-type": "application/json", "x-request-id": request_id}
    key = signer.current()
    added = signer.sign(200, headers, body, key)
    return detached_signature(200, {**headers, **added}), str(key[0].kid)
