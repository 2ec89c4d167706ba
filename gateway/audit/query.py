"""What officers ask of the audit log: search with filters, one event in detail, statistics, and
exports (CSV with a UTF-8 BOM so spreadsheet software reads the Chinese text, and JSON).

Times given without an offset are China Standard Time (UTC+08:00), the officers' clock; stored
times are UTC. Field names may be given as the GraphQL name (`idNumber`) or the column
(`id_number`). Results are newest first, paged by `before` (a seq) so pages are stable while
events keep arriving."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import orjson
from sqlalchemy import RowMapping, Select, case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.audit.chain import canonical_time
from gateway.audit.field_index import field_entries, index_pending, matched
from gateway.audit.models import AuditEvent
from gateway.audit.variables import VariableCipher
from gateway.db import table_of

EVENTS = table_of(AuditEvent)
CST = timezone(timedelta(hours=8), "CST")
MAX_PAGE = 500
TOTAL_CAP = 10_000  # officers' searches count exactly up to here, then say "10,000+" (exact=True: all)


class BadFilter(ValueError):
    """A filter value that cannot be understood; the message is for the officer."""


def parse_time(text: str | None, *, end: bool = False) -> datetime | None:
    """ISO 8601 date or date-time; no offset means UTC+08:00. A bare date as an upper bound
    means the end of that day."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            value = datetime(day.year, day.month, day.day, tzinfo=CST)
            return value + timedelta(days=1) if end else value
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadFilter(f"not an ISO 8601 date or time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=CST)


def column_name(field: str) -> str:
    """`idNumber` → `id_number` (the catalogue's column names are snake_case)."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", field.strip()).lower()


@dataclass(frozen=True)
class Filters:
    since: datetime | None = None
    until: datetime | None = None  # exclusive
    principal: str | None = None  # client id, API-key prefix or subject
    department: str | None = None  # consumer: department or enterprise code
    dataset: str | None = None
    field: str | None = None
    decision: str | None = None  # allow / mask / encrypt / deny
    status: int | None = None
    tier: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> Filters:
        def get(name: str) -> str | None:
            value = params.get(name)
            return value.strip() if value and value.strip() else None

        status = get("status")
        if status is not None and not status.isdigit():
            raise BadFilter("status is an HTTP status code, e.g. 200")
        field = get("field")
        dataset = get("dataset")
        if field and "." in field and not dataset:  # "population.idNumber"
            dataset, field = field.split(".", 1)
        decision = get("decision")
        if decision and decision not in ("allow", "mask", "encrypt", "deny"):
            raise BadFilter("decision is one of allow, mask, encrypt, deny")
        return cls(
            since=parse_time(get("from")),
            until=parse_time(get("to"), end=True),
            principal=get("principal"),
            department=get("department"),
            dataset=dataset,
            field=column_name(field) if field else None,
            decision=decision,
            status=int(status) if status else None,
            tier=get("tier"),
        )

    @property
    def uses_index(self) -> bool:
        """Whether the filters read the field-access index (dataset, field, decision). It is
        filled beside the request path (gateway.audit.field_index), so such a query first fills it
        through the head: no recent event is missed."""
        return bool(self.dataset or self.field or self.decision)

    def as_params(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if v is not None}
        for k in ("since", "until"):
            if k in out:
                out[k] = out[k].isoformat()
        return out


def _bound(engine_or_conn: AsyncEngine | AsyncConnection, value: datetime) -> datetime:
    return value.astimezone(UTC)  # the column type (UTCDateTime) stores UTC on both backends


def where(conn: AsyncEngine | AsyncConnection, f: Filters) -> list[Any]:
    conds: list[Any] = []
    if f.since:
        conds.append(EVENTS.c.occurred_at >= _bound(conn, f.since))
    if f.until:
        conds.append(EVENTS.c.occurred_at < _bound(conn, f.until))
    if f.principal:
        conds.append((EVENTS.c.principal_id == f.principal) | (EVENTS.c.subject == f.principal))
    if f.department:
        conds.append(EVENTS.c.consumer == f.department)
    if f.status is not None:
        conds.append(EVENTS.c.status == f.status)
    if f.tier:
        conds.append(EVENTS.c.tier == f.tier)
    if f.uses_index:
        conds.append(EVENTS.c.seq.in_(_matched(conn, f)))
    return conds


def _matched(conn: AsyncEngine | AsyncConnection, f: Filters) -> Select[Any]:
    """The seqs of the events the index filters match (gateway.audit.field_index.matched: the
    rows of the dataset, newest first from the (dataset, seq) key, every event that touched it,
    with or without a field selected; a field or a decision tests the rows' arrays)."""
    return matched(conn.dialect.name == "sqlite", f.dataset, f.field, f.decision)


def event_doc(row: Mapping[str, Any] | RowMapping) -> dict[str, Any]:
    detail = orjson.loads(row["detail"] or "{}")
    reads = detail.get("reads", [])
    return {
        "seq": int(row["seq"]),
        "occurred_at": canonical_time(row["occurred_at"]),
        "request_id": row["request_id"],
        "tier": row["tier"],
        "principal_kind": row["principal_kind"],
        "principal_id": row["principal_id"],
        "department": row["consumer"],
        "subject": row["subject"],
        "client_address": row["client_address"],
        "operation_name": row["operation_name"],
        "operation_type": row["operation_type"],
        "query_digest": row["query_digest"],
        "status": int(row["status"]),
        "error_codes": orjson.loads(row["error_codes"] or "[]"),
        "latency_ms": float(row["latency_ms"]),
        "row_count": row["row_count"],
        "fields": detail.get("fields", []),
        "reads": reads,
        "grant_ids": sorted({r["grant_id"] for r in reads if r.get("grant_id") is not None}),
        "purposes": sorted({r["purpose"] for r in reads if r.get("purpose")}),
        "has_variables": row["variables_enc"] is not None,
        "signature_kid": row["signature_kid"],
        "prev_hash": row["prev_hash"],
        "hash": row["hash"],
    }


def _select(conn: AsyncConnection, f: Filters) -> Select[Any]:
    return select(EVENTS).where(*where(conn, f))


def _count(conn: AsyncConnection, f: Filters, cap: int | None) -> Select[Any]:
    """How many events match, or `cap + 1` if more than `cap` do (`cap` None: exactly); for a
    person with a cap, see `_person_total`.

    Capped, the matches are read until one past the cap, whatever their number: that is what
    keeps a search of the busiest client (millions of events) as fast as a quiet one's. A dataset
    or field alone is counted on the index without touching the events (each event has one row
    per dataset). A person's exact count is the union of the events naming them as
    principal and those naming them as subject, each read from its index (migration 0025)
    without touching the table (OR-ing the two columns made PostgreSQL fetch every matching row).
    The page itself keeps the OR, which reads the newest events first and stops at the page's
    end."""
    if (f.dataset or f.field) and not f.decision and not _event_filters(f):
        sub = _matched(conn, f).subquery()
        # one row per (event, dataset): an event appears once for a dataset, but may for a
        # field in several datasets
        rows = select(sub.c.seq) if f.dataset else select(sub.c.seq).distinct()
    elif not f.principal:
        rows = select(EVENTS.c.seq).where(*where(conn, f))
    else:
        rest = where(conn, replace(f, principal=None))
        mine = select(EVENTS.c.seq).where(EVENTS.c.principal_id == f.principal, *rest)
        theirs = select(EVENTS.c.seq).where(EVENTS.c.subject == f.principal, *rest)
        rows = select(mine.union(theirs).subquery().c.seq)
    if cap is not None:
        rows = rows.limit(cap + 1)
    return select(func.count()).select_from(rows.subquery())


async def _person_total(conn: AsyncConnection, f: Filters, cap: int) -> int:
    """A person's matches, capped: as principal and as subject, each read from its own index up
    to one past the cap (both in one statement, index-only when no other filter needs the rows),
    less the events naming them as both — looked for only when both counts are under the cap and
    neither is 0 (a client id is rarely anyone's subject, a person rarely a principal), and then
    at most `cap` of them. Filtering the subject scan on "another principal" instead made
    PostgreSQL fetch every row it counted (0.8 s for a person with 10,000 events)."""
    rest = where(conn, replace(f, principal=None))
    as_principal = EVENTS.c.principal_id == f.principal
    as_subject = EVENTS.c.subject == f.principal

    def upto(*conds: Any) -> Any:
        first = select(EVENTS.c.seq).where(*conds, *rest).limit(cap + 1).subquery()
        return select(func.count()).select_from(first).scalar_subquery()

    mine, theirs = (await conn.execute(select(upto(as_principal), upto(as_subject)))).one()
    if mine > cap or theirs > cap or not mine or not theirs:
        return int(mine) + int(theirs)
    both = select(EVENTS.c.seq).where(as_principal, as_subject, *rest).subquery()
    return (
        int(mine)
        + int(theirs)
        - int((await conn.execute(select(func.count()).select_from(both))).scalar_one())
    )


def _event_filters(f: Filters) -> bool:
    """Whether any filter reads the events' own columns (not only the field index)."""
    return any(v is not None for v in (f.since, f.until, f.principal, f.department, f.status, f.tier))


async def count(
    conn: AsyncConnection, f: Filters, *, exact: bool = False, cap: int | None = None
) -> tuple[int, bool]:
    """(matches, exact?): the exact number when at most `cap` (default TOTAL_CAP) events match or
    `exact` is asked for, else (cap, False)."""
    if f.uses_index:
        await index_pending(conn.engine)
    return await _total(conn, f, None if exact else (cap if cap is not None else TOTAL_CAP))


async def _total(conn: AsyncConnection, f: Filters, cap: int | None) -> tuple[int, bool]:
    if f.principal and cap is not None:
        n = await _person_total(conn, f, cap)
    else:
        n = int((await conn.execute(_count(conn, f, cap))).scalar_one())
    return (cap, False) if cap is not None and n > cap else (n, True)


async def search(
    conn: AsyncConnection,
    f: Filters,
    *,
    limit: int = 100,
    before: int | None = None,
    exact: bool = False,
) -> dict[str, Any]:
    """One page of matches, newest first, and their number: `total` is exact up to TOTAL_CAP
    matches and `total_exact` says whether it is (past the cap, `total` is TOTAL_CAP and
    `total_exact` false, unless `exact` asks for the full count, which reads every match)."""
    limit = max(1, min(limit, MAX_PAGE))
    if f.uses_index:
        await index_pending(conn.engine)
    query = _select(conn, f)
    if before is not None:
        query = query.where(EVENTS.c.seq < before)
    rows = (await conn.execute(query.order_by(EVENTS.c.seq.desc()).limit(limit + 1))).mappings().all()
    events = [event_doc(r) for r in rows[:limit]]
    total, total_exact = await _total(conn, f, None if exact else TOTAL_CAP)
    return {
        "filters": f.as_params(),
        "total": total,
        "total_exact": total_exact,
        "events": events,
        "next_before": events[-1]["seq"] if len(rows) > limit else None,
    }


async def detail(conn: AsyncConnection, seq: int, cipher: VariableCipher | None) -> dict[str, Any] | None:
    row = (await conn.execute(select(EVENTS).where(EVENTS.c.seq == seq))).mappings().first()
    if row is None:
        return None
    doc = event_doc(row)
    if row["variables_enc"] is not None:
        if cipher is None:
            doc["variables_error"] = "no key to open the sealed variables"
        else:
            try:
                doc["variables"] = cipher.open(row["request_id"], row["variables_enc"])
            except Exception as err:  # an altered blob: say so, the chain check will too
                doc["variables_error"] = f"sealed variables do not open: {type(err).__name__}"
    return doc


async def stats(conn: AsyncConnection, f: Filters) -> dict[str, Any]:
    await index_pending(conn.engine)  # the per-dataset figures come from the index
    conds = where(conn, f)
    denied = func.sum(case((EVENTS.c.error_codes.contains("FORBIDDEN"), 1), else_=0))
    by_dept = (
        await conn.execute(
            select(EVENTS.c.consumer, func.count(), func.coalesce(func.sum(EVENTS.c.row_count), 0), denied)
            .where(*conds)
            .group_by(EVENTS.c.consumer)
            .order_by(func.count().desc())
        )
    ).all()
    entry = field_entries(conn.dialect.name == "sqlite")
    by_dataset = (
        await conn.execute(
            select(entry.c.dataset, entry.c.action, func.count(func.distinct(entry.c.seq)))
            .join(EVENTS, EVENTS.c.seq == entry.c.seq)
            .where(entry.c.field != "", *conds)  # named fields' decisions
            .group_by(entry.c.dataset, entry.c.action)
        )
    ).all()
    by_status = (
        await conn.execute(
            select(EVENTS.c.status, func.count())
            .where(*conds)
            .group_by(EVENTS.c.status)
            .order_by(EVENTS.c.status)
        )
    ).all()
    datasets: dict[str, dict[str, int]] = {}
    for ds, action, n in by_dataset:
        datasets.setdefault(ds, {})[action] = int(n)
    return {
        "filters": f.as_params(),
        "departments": [
            {"department": d, "events": int(n), "rows": int(r or 0), "refused": int(x or 0)}
            for d, n, r, x in by_dept
        ],
        "datasets": [{"dataset": ds, "events_by_decision": acts} for ds, acts in sorted(datasets.items())],
        "statuses": [{"status": int(s), "events": int(n)} for s, n in by_status],
    }


CSV_COLUMNS = (
    "seq",
    "occurred_at",
    "request_id",
    "tier",
    "principal_kind",
    "principal_id",
    "department",
    "subject",
    "client_address",
    "operation_name",
    "operation_type",
    "status",
    "error_codes",
    "latency_ms",
    "row_count",
    "fields",
    "grant_ids",
    "purposes",
    "query_digest",
    "signature_kid",
    "hash",
)


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """A text cell that Excel or WPS would run as a formula (request ids, operation names and
    purposes come from callers) gets a leading apostrophe, the usual neutraliser (OWASP "CSV
    injection"); the JSON export keeps the exact values."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def csv_row(doc: dict[str, Any]) -> list[Any]:
    flat = {
        **doc,
        "error_codes": " ".join(doc["error_codes"]),
        "fields": "; ".join(
            f"{f.get('dataset')}.{f.get('field')}:{f.get('action', f.get('decision'))}" for f in doc["fields"]
        ),
        "grant_ids": " ".join(str(g) for g in doc["grant_ids"]),
        "purposes": "; ".join(doc["purposes"]),
    }
    return [_cell(flat[c]) for c in CSV_COLUMNS]


async def export(engine: AsyncEngine, f: Filters, fmt: str, *, batch: int = 1000) -> AsyncIterator[bytes]:
    """The filtered range, oldest first, as CSV (UTF-8 with BOM) or JSON; streamed in batches.
    Sealed variables are never exported."""
    if fmt not in ("csv", "json"):
        raise BadFilter("format is csv or json")
    if f.uses_index:
        await index_pending(engine)
    async with engine.connect() as conn:
        if fmt == "csv":
            buf = io.StringIO()
            writer = csv.writer(buf)
            writer.writerow(CSV_COLUMNS)
            yield ("\ufeff" + buf.getvalue()).encode()
        else:
            yield b'{"filters":' + orjson.dumps(f.as_params()) + b',"events":['
        after, first = 0, True
        while True:
            rows = (
                (
                    await conn.execute(
                        _select(conn, f).where(EVENTS.c.seq > after).order_by(EVENTS.c.seq).limit(batch)
                    )
                )
                .mappings()
                .all()
            )
            if not rows:
                break
            after = int(rows[-1]["seq"])
            docs = [event_doc(r) for r in rows]
            if fmt == "csv":
                buf = io.StringIO()
                writer = csv.writer(buf)
                writer.writerows(csv_row(d) for d in docs)
                yield buf.getvalue().encode()
            else:
                chunk = b",".join(orjson.dumps(d) for d in docs)
                yield chunk if first else b"," + chunk
                first = False
        if fmt == "json":
            yield b"]}"
