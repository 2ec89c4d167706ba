"""Alerts: rules evaluated over the audit chain as events arrive.

`AlertEngine.run_once()` reads the events after the evaluator's cursor (`audit_alert_cursor`),
evaluates every rule on each of them in seq order, and in one transaction inserts the alerts and
moves the cursor (compare-and-set, so two workers never evaluate the same events twice). It only
reads the chain; the request path never waits for it. `AlertTask` runs it every second.

Rules (thresholds in `AlertRules`, from SHUQIAO_AUDIT_ALERT_* settings):
  bulk_extraction   rows read by one principal within `bulk_window` reach `bulk_rows`
                    (raised by the event that crosses the threshold)
  forbidden_probing FORBIDDEN_FIELD denials for one principal within `probe_window` reach
                    `probe_denials` (counted per distinct dataset.field per event)
  l4_out_of_hours   an L4 field served (allow, mask or encrypt) outside working hours/days,
                    Asia/Shanghai time; field levels from the catalogue
  new_address       a client seen before is used from an address it has never used (a client's
                    very first use records its address without an alert)

Alerts are listed for officers (`GET /audit/api/alerts`) and acknowledged with a comment
(`POST /audit/api/alerts/{id}/ack`); that call is itself an audit event."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import BigInteger, Column, Index, UniqueConstraint, and_, case, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import Field, SQLModel

from gateway.audit.chain import canonical_time
from gateway.audit.models import AuditEvent, AuditFieldAccess

log = logging.getLogger("shuqiao.audit")

EVENTS = AuditEvent.__table__
FIELD_ACCESS = AuditFieldAccess.__table__
CURSOR_ID = 1
RULES = ("bulk_extraction", "forbidden_probing", "l4_out_of_hours", "new_address")


class AuditAlert(SQLModel, table=True):
    __tablename__ = "audit_alert"

    id: int | None = Field(default=None, primary_key=True)
    rule: str
    principal_id: str
    consumer: str | None = None
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))  # the event that raised it
    occurred_at: datetime  # of that event (UTC)
    raised_at: datetime
    summary: str
    detail: str = "{}"
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    ack_comment: str | None = None

    __table_args__ = (
        UniqueConstraint("rule", "seq", name="uq_audit_alert_rule_seq"),
        Index("ix_audit_alert_rule_principal", "rule", "principal_id", "occurred_at"),
    )


class AuditAlertCursor(SQLModel, table=True):
    __tablename__ = "audit_alert_cursor"

    id: int = Field(default=CURSOR_ID, primary_key=True)
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))


class AuditAlertAddress(SQLModel, table=True):
    __tablename__ = "audit_alert_address"

    principal_id: str = Field(primary_key=True)
    client_address: str = Field(primary_key=True)
    first_seq: int = Field(sa_column=Column(BigInteger, nullable=False))


ALERTS = AuditAlert.__table__
CURSOR = AuditAlertCursor.__table__
ADDRESSES = AuditAlertAddress.__table__


def _hhmm(text: str) -> time:
    h, _, m = text.strip().partition(":")
    return time(int(h), int(m or 0))


@dataclass(frozen=True)
class AlertRules:
    bulk_rows: int = 10_000
    bulk_window: timedelta = timedelta(hours=1)
    probe_denials: int = 20
    probe_window: timedelta = timedelta(minutes=10)
    work_start: time = time(8, 30)
    work_end: time = time(18, 0)
    work_days: frozenset[int] = field(default_factory=lambda: frozenset(range(1, 6)))  # ISO: Mon=1
    timezone: str = "Asia/Shanghai"

    @classmethod
    def parse(cls, *, bulk_rows: int, bulk_window_seconds: int, probe_denials: int,
              probe_window_seconds: int, working_hours: str, working_days: str) -> AlertRules:
        """working_hours "08:30-18:00"; working_days "1-5" or "1,2,3,4,5,6" (ISO weekdays)."""
        start, _, end = working_hours.partition("-")
        days: set[int] = set()
        for part in working_days.split(","):
            lo, _, hi = part.partition("-")
            days.update(range(int(lo), int(hi or lo) + 1))
        return cls(bulk_rows, timedelta(seconds=bulk_window_seconds), probe_denials,
                   timedelta(seconds=probe_window_seconds), _hhmm(start), _hhmm(end), frozenset(days))

    @classmethod
    def from_settings(cls, settings: Any) -> AlertRules:
        return cls.parse(bulk_rows=settings.audit_alert_bulk_rows,
                         bulk_window_seconds=settings.audit_alert_bulk_window_seconds,
                         probe_denials=settings.audit_alert_probe_denials,
                         probe_window_seconds=settings.audit_alert_probe_window_seconds,
                         working_hours=settings.audit_working_hours,
                         working_days=settings.audit_working_days)

    def working(self, when: datetime) -> bool:
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        local = when.astimezone(ZoneInfo(self.timezone))
        return local.isoweekday() in self.work_days and self.work_start <= local.time() < self.work_end


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def load_levels(conn: AsyncConnection) -> dict[tuple[str, str], int]:
    """(dataset code, field name) → level for the L3+ fields of the catalogue."""
    from gateway.catalogue.models import Dataset, DatasetField

    ds, f = Dataset.__table__, DatasetField.__table__
    rows = await conn.execute(select(ds.c.code, f.c.name, f.c.level)
                              .select_from(f.join(ds, ds.c.id == f.c.dataset_id)).where(f.c.level >= 3))
    return {(r.code, r.name): int(r.level) for r in rows}


class AlertEngine:
    def __init__(self, engine: AsyncEngine, rules: AlertRules | None = None,
                 levels: Mapping[tuple[str, str], int] | None = None, batch: int = 500) -> None:
        self.engine = engine
        self.rules = rules or AlertRules()
        self._levels = levels  # None: read from the catalogue on every run
        self.batch = batch
        self._sqlite = engine.dialect.name == "sqlite"

    async def run_once(self) -> int:
        """Evaluate the next batch of events; returns how many events were evaluated."""
        async with self.engine.connect() as conn:
            cursor = await self._cursor(conn)
            events = (await conn.execute(
                select(EVENTS).where(EVENTS.c.seq > cursor).order_by(EVENTS.c.seq).limit(self.batch)
            )).mappings().all()
            if not events:
                return 0
            levels = self._levels if self._levels is not None else await load_levels(conn)
            alerts: list[dict[str, Any]] = []
            addresses: dict[tuple[str, str], int] = {}
            for e in events:
                alerts.extend(await self._evaluate(conn, e, levels, addresses))
            await conn.rollback()
        last = int(events[-1]["seq"])
        async with self.engine.begin() as conn:
            moved = await conn.execute(update(CURSOR).where(CURSOR.c.id == CURSOR_ID, CURSOR.c.seq == cursor)
                                       .values(seq=last))
            if moved.rowcount != 1:  # another worker evaluated these events first
                await conn.rollback()
                return 0
            ins = sqlite_insert if self._sqlite else pg_insert
            if addresses:
                await conn.execute(ins(ADDRESSES).on_conflict_do_nothing(),
                                   [{"principal_id": p, "client_address": a, "first_seq": s}
                                    for (p, a), s in addresses.items()])
            if alerts:
                await conn.execute(ins(ALERTS).on_conflict_do_nothing(), alerts)
        return len(events)

    async def _cursor(self, conn: AsyncConnection) -> int:
        seq = (await conn.execute(select(CURSOR.c.seq).where(CURSOR.c.id == CURSOR_ID))).scalar()
        if seq is None:  # the migration seeds it; this covers tables made by metadata.create_all
            ins = (sqlite_insert if self._sqlite else pg_insert)(CURSOR)
            await conn.execute(ins.values(id=CURSOR_ID, seq=0).on_conflict_do_nothing())
            await conn.commit()
            return 0
        return int(seq)

    async def run_until_caught_up(self) -> int:
        total = 0
        while n := await self.run_once():
            total += n
        return total

    async def _evaluate(self, conn: AsyncConnection, e: Mapping[str, Any],
                        levels: Mapping[tuple[str, str], int],
                        addresses: dict[tuple[str, str], int]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        seq, principal, at = int(e["seq"]), str(e["principal_id"]), _utc(e["occurred_at"])
        detail = orjson.loads(e["detail"] or "{}")
        fields = detail.get("fields") or []

        def alert(rule: str, summary: str, **info: Any) -> None:
            out.append({"rule": rule, "principal_id": principal, "consumer": e["consumer"], "seq": seq,
                        "occurred_at": _utc(at), "raised_at": _utc(datetime.now(UTC)),
                        "summary": summary, "detail": orjson.dumps(info).decode()})

        window = and_(EVENTS.c.principal_id == principal, EVENTS.c.seq <= seq)
        own_rows = int(e["row_count"] or 0)
        if own_rows > 0:
            since = _utc(at - self.rules.bulk_window)
            total = int((await conn.execute(select(func.coalesce(func.sum(EVENTS.c.row_count), 0))
                                            .where(window, EVENTS.c.occurred_at >= since))).scalar() or 0)
            if total >= self.rules.bulk_rows > total - own_rows:
                alert("bulk_extraction",
                      f"{principal} read {total} rows within {self.rules.bulk_window} "
                      f"(threshold {self.rules.bulk_rows})",
                      rows=total, window_seconds=self.rules.bulk_window.total_seconds())

        if any(f.get("action") == "deny" for f in fields):
            since = _utc(at - self.rules.probe_window)
            q = (select(func.count(), func.sum(case((FIELD_ACCESS.c.seq == seq, 1), else_=0)))
                 .select_from(FIELD_ACCESS.join(EVENTS, EVENTS.c.seq == FIELD_ACCESS.c.seq))
                 .where(window, EVENTS.c.occurred_at >= since, FIELD_ACCESS.c.action == "deny"))
            total, own = (await conn.execute(q)).one()
            total, own = int(total or 0), int(own or 0)
            if total >= self.rules.probe_denials > total - own:
                alert("forbidden_probing",
                      f"{principal} was refused {total} fields within {self.rules.probe_window} "
                      f"(threshold {self.rules.probe_denials})",
                      denials=total, window_seconds=self.rules.probe_window.total_seconds())

        l4 = sorted({f"{f.get('dataset')}.{f.get('field')}" for f in fields
                     if f.get("action") != "deny"
                     and levels.get((str(f.get("dataset")), str(f.get("field"))), 0) >= 4})
        if l4 and not self.rules.working(at):
            alert("l4_out_of_hours",
                  f"{principal} accessed L4 fields {', '.join(l4)} at {canonical_time(at)} "
                  "outside working hours",
                  fields=l4)

        address = e["client_address"]
        if address and e["principal_kind"] != "anonymous":
            key = (principal, str(address))
            known = key in addresses or (await conn.execute(
                select(ADDRESSES.c.first_seq).where(ADDRESSES.c.principal_id == principal,
                                                    ADDRESSES.c.client_address == address))).first()
            if not known:
                seen = any(p == principal for p, _ in addresses) or (await conn.execute(
                    select(ADDRESSES.c.first_seq).where(ADDRESSES.c.principal_id == principal).limit(1)
                )).first() is not None
                addresses[key] = seq
                if seen:
                    alert("new_address", f"{principal} used from a new address {address}", address=address)
        return out


def alert_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id, "rule": row.rule, "principal_id": row.principal_id, "consumer": row.consumer,
        "seq": int(row.seq), "occurred_at": canonical_time(row.occurred_at),
        "raised_at": canonical_time(row.raised_at), "summary": row.summary,
        "detail": orjson.loads(row.detail),
        "acknowledged_at": canonical_time(row.acknowledged_at) if row.acknowledged_at else None,
        "acknowledged_by": row.acknowledged_by, "ack_comment": row.ack_comment,
    }


async def list_alerts(conn: AsyncConnection, *, state: str = "open", rule: str | None = None,
                      limit: int = 100, before: int | None = None) -> dict[str, Any]:
    q = select(ALERTS).order_by(ALERTS.c.id.desc()).limit(min(max(limit, 1), 1000))
    if state == "open":
        q = q.where(ALERTS.c.acknowledged_at.is_(None))
    elif state == "acknowledged":
        q = q.where(ALERTS.c.acknowledged_at.is_not(None))
    elif state != "all":
        raise ValueError("state is open, acknowledged or all")
    if rule:
        q = q.where(ALERTS.c.rule == rule)
    if before:
        q = q.where(ALERTS.c.id < before)
    rows = (await conn.execute(q)).all()
    alerts = [alert_json(r) for r in rows]
    return {"alerts": alerts, "next_before": alerts[-1]["id"] if len(alerts) == limit else None}


class AckError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def acknowledge(engine: AsyncEngine, alert_id: int, by: str, comment: str) -> dict[str, Any]:
    if not comment.strip():
        raise AckError(400, "An acknowledgement needs a comment.")
    async with engine.begin() as conn:
        done = await conn.execute(update(ALERTS)
                                  .where(ALERTS.c.id == alert_id, ALERTS.c.acknowledged_at.is_(None))
                                  .values(acknowledged_at=_utc(datetime.now(UTC)), acknowledged_by=by,
                                          ack_comment=comment.strip()))
        row = (await conn.execute(select(ALERTS).where(ALERTS.c.id == alert_id))).first()
    if row is None:
        raise AckError(404, "No alert with that id.")
    if done.rowcount != 1:
        raise AckError(409, "The alert was already acknowledged.")
    return alert_json(row)


class AlertTask:
    """Runs `AlertEngine` every `poll` seconds until cancelled; failures are logged and retried."""

    def __init__(self, engine: AlertEngine, poll: float = 1.0) -> None:
        self.engine, self.poll = engine, poll
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="audit-alerts")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.poll)
            try:
                await self.engine.run_until_caught_up()
            except Exception:
                log.exception("audit alert evaluation failed")
