"""Alerts: rules evaluated over the audit chain as events arrive.

`AlertEngine.run_once()` reads the events after the evaluator's cursor (`audit_alert_cursor`; from
this process's `ChainWitness` when it appended them, else from the database),
feeds each, in seq order, to the rules' in-memory state (`gateway/audit/alert_rules.py`: sliding
windows per principal, address history), and in one transaction inserts the alerts and moves
the cursor (compare-and-set, so two workers never evaluate the same events twice). It only reads
the chain; the request path never waits for it. `AlertTask` runs it every second.

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

import logging
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Index,
    UniqueConstraint,
    cast,
    extract,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import Field, SQLModel

from gateway.audit.alert_rules import AlertRules, AlertState, EventFacts
from gateway.audit.alert_rules import utc as _utc
from gateway.audit.background import PeriodicTask
from gateway.audit.chain import canonical_time
from gateway.audit.detail import denied_count, stored_fields
from gateway.audit.models import AuditEvent
from gateway.audit.witness import ChainWitness
from gateway.db import table_of

log = logging.getLogger("shuqiao.audit")

EVENTS = table_of(AuditEvent)
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
    acknowledged_at: datetime | None = None  # the first handling (acknowledge, assign or close)
    acknowledged_by: str | None = None
    ack_comment: str | None = None
    # Handling (policies/alert_handling.py, gateway/audit/alert_handling.py; migration 0023):
    # open | acknowledged | assigned | closed, with the history in audit_alert_action.
    state: str = Field(default="open", max_length=16)
    assignee: str | None = Field(default=None, max_length=100)
    closed_at: datetime | None = None
    closed_by: str | None = None
    close_reason: str | None = Field(default=None, max_length=32)

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


ALERTS = table_of(AuditAlert)
CURSOR = table_of(AuditAlertCursor)
ADDRESSES = table_of(AuditAlertAddress)


async def load_levels(conn: AsyncConnection) -> dict[tuple[str, str], int]:
    """(dataset code, field name) → level for the L3+ fields of the catalogue."""
    from catalogue.models import Dataset, DatasetField

    ds, f = table_of(Dataset), table_of(DatasetField)
    rows = await conn.execute(
        select(ds.c.code, f.c.name, f.c.level)
        .select_from(f.join(ds, ds.c.id == f.c.dataset_id))
        .where(f.c.level >= 3)
    )
    return {(r.code, r.name): int(r.level) for r in rows}


FACT_COLUMNS = (
    EVENTS.c.seq,
    EVENTS.c.principal_id,
    EVENTS.c.principal_kind,
    EVENTS.c.consumer,
    EVENTS.c.client_address,
    EVENTS.c.occurred_at,
    EVENTS.c.row_count,
    EVENTS.c.detail,
)


class AlertEngine:
    """Evaluates the chain's new events against `AlertState`, and keeps that state in step with
    the alert cursor: if another worker moved the cursor since this engine's last run, the events
    in between are replayed into the state without raising alerts (or, after a long gap or on the
    first run, the windows are rebuilt from the database with two aggregate reads)."""

    LEVELS_TTL = 30.0  # a field's level changed in the catalogue is used within this many seconds
    REPLAY_MAX = 50_000  # a larger gap is cheaper to rebuild than to replay
    ADDRESS_CACHE_MAX = 50_000  # principals whose address history is kept in memory

    def __init__(
        self,
        engine: AsyncEngine,
        rules: AlertRules | None = None,
        levels: Mapping[tuple[str, str], int] | None = None,
        batch: int = 500,
        witness: ChainWitness | None = None,
    ) -> None:
        self.engine = engine
        self.witness = witness  # this process's appends: events held there are not read back
        self.rules = rules or AlertRules()
        self._levels = levels  # None: read from the catalogue, at most every LEVELS_TTL seconds
        self._catalogue_levels: tuple[float, dict[tuple[str, str], int]] | None = None
        self.batch = batch
        self._sqlite = engine.dialect.name == "sqlite"
        self._state = AlertState(self.rules)
        self._state_seq: int | None = None  # the state holds the events up to this seq
        self.rebuilds = 0  # for tests: how often the windows were read back from the database

    async def run_once(self) -> int:
        """Evaluate the next batch of events; returns how many events were evaluated."""
        try:
            return await self._run_once()
        except BaseException:
            self._state_seq = None  # the state may hold events whose alerts were not stored
            raise

    async def _run_once(self) -> int:
        async with self.engine.connect() as conn:
            cursor = await self._cursor(conn)
            events = self.witness.facts_after(cursor, self.batch) if self.witness else None
            if events is None:
                rows = (
                    (
                        await conn.execute(
                            select(*FACT_COLUMNS)
                            .where(EVENTS.c.seq > cursor)
                            .order_by(EVENTS.c.seq)
                            .limit(self.batch)
                        )
                    )
                    .mappings()
                    .all()
                )
                events = [EventFacts.from_row(r) for r in rows]
            if not events:
                return 0
            await self._catch_up(conn, cursor)
            await self._load_addresses(conn, {e.principal_id for e in events})
            levels = self._levels if self._levels is not None else await self._levels_now(conn)
            state = self._state  # after the catch-up, which may have rebuilt it
            state.new_addresses.clear()
            alerts = [a for e in events for a in state.observe(e, levels)]
            if state.unreadable:
                # Without stored content: an edited row may hold anything, personal data included.
                log.warning(
                    "audit events %s: detail unreadable (edited?), evaluated without their fields; "
                    "run `shuqiao audit verify`",
                    sorted(state.unreadable),
                )
                state.unreadable.clear()
            await conn.rollback()
        last = events[-1].seq
        self._state_seq = last
        async with self.engine.begin() as conn:
            moved = await conn.execute(
                update(CURSOR).where(CURSOR.c.id == CURSOR_ID, CURSOR.c.seq == cursor).values(seq=last)
            )
            if moved.rowcount != 1:  # another worker evaluated these events first (and stored them)
                await conn.rollback()
                return 0
            ins = sqlite_insert if self._sqlite else pg_insert
            if state.new_addresses:
                await conn.execute(
                    ins(ADDRESSES).on_conflict_do_nothing(),
                    [
                        {"principal_id": p, "client_address": a, "first_seq": s}
                        for (p, a), s in state.new_addresses.items()
                    ],
                )
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

    async def _catch_up(self, conn: AsyncConnection, cursor: int) -> None:
        """Bring the state to exactly the events up to `cursor`."""
        if self._state_seq == cursor:
            return
        if self._state_seq is not None and self._state_seq < cursor <= self._state_seq + self.REPLAY_MAX:
            result = await conn.stream(
                select(*FACT_COLUMNS)
                .where(EVENTS.c.seq > self._state_seq, EVENTS.c.seq <= cursor)
                .order_by(EVENTS.c.seq)
                .execution_options(yield_per=2000)
            )
            async for row in result.mappings():
                self._state.observe(EventFacts.from_row(row), {}, raise_alerts=False)
        else:
            await self._rebuild(conn, cursor)
        self._state_seq = cursor

    async def _rebuild(self, conn: AsyncConnection, cursor: int) -> None:
        """Fill the windows from the events up to `cursor` that can still count: two reads."""
        self.rebuilds += 1
        state = self._state = AlertState(self.rules)
        newest = (
            await conn.execute(select(func.max(EVENTS.c.occurred_at)).where(EVENTS.c.seq <= cursor))
        ).scalar()
        if newest is None:
            return
        newest = _utc(newest)
        # The window keeps one-second buckets per principal, so the database sums the rows per
        # (principal, second) and this adds each sum once: a busy hour is ~1,000,000 events but
        # at most principals × 3,600 sums (streaming every event through Python took seconds of
        # the gateway's loop after each start under load).
        second = self._epoch_second(EVENTS.c.occurred_at)
        bulk = await conn.stream(
            select(EVENTS.c.principal_id, second, func.sum(EVENTS.c.row_count))
            .where(
                EVENTS.c.seq <= cursor,
                EVENTS.c.row_count > 0,
                EVENTS.c.occurred_at >= newest - self.rules.bulk_window - timedelta(seconds=1),
            )
            .group_by(EVENTS.c.principal_id, second)
            .order_by(second)
            .execution_options(yield_per=5000)
        )
        async for principal, at, rows in bulk:
            state.bulk.add(principal, float(at), int(rows))
        # From the events themselves, not the field-access index, which may lag behind the chain.
        denials = await conn.stream(
            select(EVENTS.c.seq, EVENTS.c.principal_id, EVENTS.c.occurred_at, EVENTS.c.detail)
            .where(
                EVENTS.c.seq <= cursor,
                EVENTS.c.detail.contains('"deny"'),
                EVENTS.c.occurred_at >= newest - self.rules.probe_window - timedelta(seconds=1),
            )
            .order_by(EVENTS.c.seq)
            .execution_options(yield_per=5000)
        )
        async for seq, principal, at, detail in denials:
            fields = stored_fields(detail)
            if fields is None:
                state.unreadable.add(int(seq))
            elif count := denied_count(fields):
                state.probes.add(principal, _utc(at).timestamp(), count)

    def _epoch_second(self, when: ColumnElement[datetime]) -> ColumnElement[int]:
        """`when`'s whole epoch second, computed by the database: the one place the backends differ
        (SQLite keeps UTC times as text, which its strftime reads; PostgreSQL has timestamptz)."""
        if self._sqlite:
            return cast(func.strftime("%s", when), BigInteger)
        return cast(func.floor(extract("epoch", when)), BigInteger)

    async def _load_addresses(self, conn: AsyncConnection, principals: set[str]) -> None:
        state = self._state
        missing = sorted(p for p in principals if not state.loaded(p))
        if not missing:
            return
        if len(missing) + self.ADDRESS_CACHE_MAX // 2 > self.ADDRESS_CACHE_MAX:
            state.forget_addresses()
        for p in missing:
            state.load_addresses(p, ())
        for chunk in range(0, len(missing), 500):
            rows = await conn.execute(
                select(ADDRESSES.c.principal_id, ADDRESSES.c.client_address).where(
                    ADDRESSES.c.principal_id.in_(missing[chunk : chunk + 500])
                )
            )
            for principal, address in rows:
                state.load_addresses(principal, (address,))

    async def _levels_now(self, conn: AsyncConnection) -> dict[tuple[str, str], int]:
        now = time.monotonic()
        if self._catalogue_levels is None or now - self._catalogue_levels[0] > self.LEVELS_TTL:
            self._catalogue_levels = (now, await load_levels(conn))
        return self._catalogue_levels[1]

    async def run_until_caught_up(self) -> int:
        total = 0
        while n := await self.run_once():
            total += n
        return total

    async def run_backlog(self) -> int:
        """Evaluate what is queued now, batch by batch, and stop at the first short batch: under
        steady load the chain never stops growing, and chasing each new event would turn the
        once-a-second task into a busy loop."""
        total = 0
        while (n := await self.run_once()) >= self.batch:
            total += n
        return total + n


def alert_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "rule": row.rule,
        "principal_id": row.principal_id,
        "consumer": row.consumer,
        "seq": int(row.seq),
        "occurred_at": canonical_time(row.occurred_at),
        "raised_at": canonical_time(row.raised_at),
        "summary": row.summary,
        "detail": orjson.loads(row.detail),
        "acknowledged_at": canonical_time(row.acknowledged_at) if row.acknowledged_at else None,
        "acknowledged_by": row.acknowledged_by,
        "ack_comment": row.ack_comment,
        "state": row.state,
        "assignee": row.assignee,
        "closed_at": canonical_time(row.closed_at) if row.closed_at else None,
        "closed_by": row.closed_by,
        "close_reason": row.close_reason,
    }


async def list_alerts(
    conn: AsyncConnection,
    *,
    state: str = "open",
    rule: str | None = None,
    limit: int = 100,
    before: int | None = None,
    assignee: str | None = None,
) -> dict[str, Any]:
    q = select(ALERTS).order_by(ALERTS.c.id.desc()).limit(min(max(limit, 1), 1000))
    if state in ("open", "acknowledged", "assigned", "closed"):
        q = q.where(ALERTS.c.state == state)
    elif state == "active":  # not closed
        q = q.where(ALERTS.c.state != "closed")
    elif state == "handled":  # no longer open
        q = q.where(ALERTS.c.state != "open")
    elif state != "all":
        raise ValueError("state is open, acknowledged, assigned, closed, active, handled or all")
    if assignee:
        q = q.where(ALERTS.c.assignee == assignee)
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
    """The first of the handling actions (gateway.audit.alert_handling), kept for its callers."""
    from gateway.audit.alert_handling import HandlingError, act
    from policies.alert_handling import AlertAction

    try:
        return await act(engine, alert_id, by, AlertAction("acknowledge", comment=comment))
    except HandlingError as err:
        raise AckError(err.status, str(err)) from None


class AlertTask(PeriodicTask):
    """Evaluates the backlog every `poll` seconds."""

    name = "audit-alerts"

    def __init__(self, engine: AlertEngine, poll: float = 1.0) -> None:
        super().__init__(poll)
        self.engine = engine

    async def step(self) -> None:
        await self.engine.run_backlog()
