"""Feeding the SOC: the audit chain's events and the alerts, streamed to a syslog receiver (RFC 5424
over TLS, RFC 5425 framing) and/or appended to a JSON-lines file for a log shipper.

Delivery is at least once and survives either side going down:
  - each sink has a durable cursor, `audit_forward_cursor` (migration 0023): the event seq and the
    alert id it has delivered through. A round reads what follows (up to `batch` of each), delivers
    it and only then moves the cursor, so a gateway that stops between the two sends those
    messages again on its next round (a duplicate, never a gap);
  - a syslog round is one connection: connect, send, close, and wait for the receiver to close its
    side. TCP carries no acknowledgement a syslog sender can see, so that close is the receipt:
    a receiver closes cleanly (FIN) only once it has read everything before our close; one that
    stopped with our data unread resets the connection, and the round counts as failed;
  - the JSON-lines sink appends, flushes and fsyncs before the cursor moves; it reopens the file
    every round, so a shipper's rotation (rename, then a new file) is followed;
  - a failed round is retried with exponential backoff (1 s doubling to 60 s), logged without
    the message contents;
  - several workers share one cursor per sink through a lease (`holder`, `lease_until`, moved by
    compare-and-set), so at most one sends at a time.
Every message carries its id (`event:<seq>`, `alert:<id>`): duplicates are detectable.

Events pruned (gateway.audit.retention) before a sink forwarded them are not in the table any
more: the round logs the gap, counts it in `skipped_events`, and carries on (the archive holds
them; keep forwarding ahead of retention)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import BigInteger, Column, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import Field, SQLModel

from gateway.audit.alerts import ALERTS, alert_json
from gateway.audit.background import PeriodicTask
from gateway.audit.models import AuditEvent
from gateway.audit.query import event_doc
from gateway.audit.syslog_format import SyslogFormat, json_line, octet_counted
from gateway.db import table_of

log = logging.getLogger("shuqiao.audit")
EVENTS = table_of(AuditEvent)


class AuditForwardCursor(SQLModel, table=True):
    """One row per sink: delivered through (event_seq, alert_id); who is sending (the lease)."""

    __tablename__ = "audit_forward_cursor"

    sink: str = Field(primary_key=True, max_length=32)
    event_seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    alert_id: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    delivered_events: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    delivered_alerts: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    skipped_events: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    holder: str | None = Field(default=None, max_length=128)
    lease_until: datetime | None = None
    delivered_at: datetime | None = None  # the last round that delivered something
    failed_at: datetime | None = None
    last_error: str | None = None  # the last failure's kind and reason (never message contents)


CURSORS = table_of(AuditForwardCursor)


class DeliveryError(Exception):
    """The sink could not confirm the round: nothing of it counts as delivered."""


@dataclass(frozen=True)
class Outgoing:
    kind: str  # "event" | "alert"
    doc: dict[str, Any]


class Sink(Protocol):
    name: str
    carries_events: bool  # False: alerts only (the webhook)

    def describe(self) -> str: ...

    def deliver(self, batch: Sequence[Outgoing]) -> None:
        """Blocking; returns only when the whole batch is confirmed, else raises DeliveryError."""
        ...


class SyslogSink:
    """RFC 5424 messages, octet-counted (RFC 5425 §4.3), over TLS (or plain TCP when `tls` is off,
    RFC 6587, for a relay on the same host). One connection per round (see the module docstring)."""

    name = "syslog"
    carries_events = True

    def __init__(
        self,
        host: str,
        port: int,
        fmt: SyslogFormat,
        *,
        tls: bool = True,
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        server_name: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.host, self.port, self.fmt, self.timeout = host, port, fmt, timeout
        self.server_name = server_name or host
        self._context: ssl.SSLContext | None = None
        if tls:
            ctx = ssl.create_default_context(
                ssl.Purpose.SERVER_AUTH, cafile=str(ca_file) if ca_file else None
            )
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            if cert_file:
                ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
            self._context = ctx

    def describe(self) -> str:
        return f"syslog{'+tls' if self._context else ''}://{self.host}:{self.port}"

    def encode(self, item: Outgoing) -> bytes:
        return self.fmt.event(item.doc) if item.kind == "event" else self.fmt.alert(item.doc)

    def deliver(self, batch: Sequence[Outgoing]) -> None:
        payload = b"".join(octet_counted(self.encode(o)) for o in batch)
        try:
            raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as err:
            raise DeliveryError(f"cannot connect: {_reason(err)}") from None
        try:
            if self._context is None:
                raw.sendall(payload)
                raw.shutdown(socket.SHUT_WR)
                _drain(raw)
                return
            with self._context.wrap_socket(raw, server_hostname=self.server_name) as tls:
                tls.sendall(payload)
                try:
                    plain = tls.unwrap()  # our close_notify; returns at the receiver's
                except ssl.SSLEOFError:
                    return  # it closed (FIN) after reading our close_notify, without one of its own
                _drain(plain)
        except ssl.SSLCertVerificationError as err:
            raise DeliveryError(f"receiver's certificate refused: {err.verify_message}") from None
        except (OSError, ssl.SSLError) as err:
            raise DeliveryError(f"not confirmed: {_reason(err)}") from None
        finally:
            raw.close()


def _drain(sock: socket.socket) -> None:
    """Read until the receiver closes: a clean EOF confirms; a reset raises."""
    while sock.recv(4096):
        pass


def _reason(err: BaseException) -> str:
    if isinstance(err, TimeoutError | socket.timeout):
        return "timed out"
    return f"{type(err).__name__}: {getattr(err, 'strerror', None) or err}"


class JsonLinesSink:
    """One JSON object a line (gateway.audit.syslog_format.json_line), appended and fsync'd."""

    name = "jsonl"
    carries_events = True

    def __init__(self, path: Path) -> None:
        self.path = path

    def describe(self) -> str:
        return f"file://{self.path}"

    def deliver(self, batch: Sequence[Outgoing]) -> None:
        data = b"".join(json_line(o.kind, o.doc) for o in batch)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                if os.fstat(fd).st_size and os.pread(fd, 1, os.fstat(fd).st_size - 1) != b"\n":
                    data = b"\n" + data  # a line cut short by a crash stays alone on its line
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as err:
            raise DeliveryError(f"cannot append: {_reason(err)}") from None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


WEBHOOK_ID = b"1234567812345678"  # the SM2 signer ID (GM/T 0009 default), as for signed responses


class WebhookSink:
    """Alerts only, to an HTTP(S) endpoint: one POST per round, body
    `{"type": "shuqiao.audit.alerts", "sent_at": …, "alerts": [...]}`, signed with the gateway's
    SM2 key (SM3, signer ID 1234567812345678) over the exact body bytes:
    `X-Shuqiao-Signature: <base64 DER signature>`, `X-Shuqiao-Key-Id: <kid>` (its public key at
    GET /keys/sm2). Any 2xx confirms the round; anything else, or no answer in 10 s, fails it."""

    name = "webhook"
    carries_events = False

    def __init__(self, url: str, signer: Any, timeout: float = 10.0) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("SHUQIAO_AUDIT_ALERT_WEBHOOK_URL is an http(s) URL")
        self.url, self.signer, self.timeout = url, signer, timeout
        # for logs and status: never the query string or credentials, which may hold a token
        port = f":{parts.port}" if parts.port else ""
        self._shown = f"{parts.scheme}://{parts.hostname}{port}{parts.path}"

    def describe(self) -> str:
        return self._shown

    def body(self, batch: Sequence[Outgoing]) -> bytes:
        import orjson

        alerts = [o.doc for o in batch if o.kind == "alert"]
        return orjson.dumps({"type": "shuqiao.audit.alerts", "sent_at": _now().isoformat(), "alerts": alerts})

    def deliver(self, batch: Sequence[Outgoing]) -> None:
        import base64

        from keys import sm2

        body = self.body(batch)
        try:
            info, private = self.signer.current()
        except Exception as err:
            raise DeliveryError(f"no signing key: {type(err).__name__}") from None
        signature = base64.b64encode(sm2.sign(private, body, uid=WEBHOOK_ID)).decode()
        headers = {
            "Content-Type": "application/json",
            "X-Shuqiao-Signature": signature,
            "X-Shuqiao-Key-Id": info.kid,
            "User-Agent": "shuqiao-audit-webhook/1",
        }
        # urllib, not httpx: httpx logs every request's full URL at INFO, and the URL may hold a token
        # and no redirects: a 3xx is a failure, not a GET elsewhere that answers 200 without the body
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")  # noqa: S310
        opener = urllib.request.build_opener(_NoRedirects)
        try:
            with opener.open(request, timeout=self.timeout) as answer:
                status = int(answer.status)
        except urllib.error.HTTPError as err:
            status = int(err.code)
        except (OSError, ValueError) as err:
            raise DeliveryError(f"no answer: {type(err).__name__}") from None
        if not 200 <= status < 300:
            raise DeliveryError(f"HTTP {status}")


@dataclass
class RoundReport:
    sink: str
    target: str
    ok: bool = True
    events: int = 0
    alerts: int = 0
    skipped_events: int = 0
    through_seq: int = 0
    through_alert: int = 0
    error: str | None = None
    busy: bool = False  # another worker holds the lease

    def add(self, other: RoundReport) -> None:
        self.events += other.events
        self.alerts += other.alerts
        self.skipped_events += other.skipped_events
        self.through_seq, self.through_alert = other.through_seq, other.through_alert
        self.ok, self.error, self.busy = other.ok, other.error, other.busy

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _now() -> datetime:
    return datetime.now(UTC)


def _outgoing_event(row: Any) -> Outgoing:
    doc = event_doc(row)
    doc.pop("has_variables", None)
    return Outgoing("event", doc)


@dataclass
class Forwarder:
    """Moves one sink's cursor along the chain and the alerts."""

    engine: AsyncEngine
    sink: Sink
    batch: int = 500
    lease: timedelta = timedelta(seconds=60)
    holder: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    )

    async def run_once(self) -> RoundReport:
        """One round: deliver up to `batch` events and `batch` alerts after the cursor."""
        report = RoundReport(self.sink.name, self.sink.describe())
        async with self.engine.connect() as conn:
            cursor = await self._cursor(conn)
            report.through_seq, report.through_alert = int(cursor.event_seq), int(cursor.alert_id)
            events: Sequence[Any] = []
            if self.sink.carries_events:
                after = select(EVENTS).where(EVENTS.c.seq > cursor.event_seq)
                events = (await conn.execute(after.order_by(EVENTS.c.seq).limit(self.batch))).mappings().all()
            alerts = (
                await conn.execute(
                    select(ALERTS)
                    .where(ALERTS.c.id > cursor.alert_id)
                    .order_by(ALERTS.c.id)
                    .limit(self.batch)
                )
            ).all()
            await conn.rollback()
        if not events and not alerts:
            return report
        if not await self._claim(cursor):
            report.busy = True
            return report
        skipped = 0
        if events and int(events[0]["seq"]) > cursor.event_seq + 1:
            skipped = int(events[0]["seq"]) - cursor.event_seq - 1
            log.warning(
                "audit forward %s: events %d..%d are no longer in the table (pruned?); not forwarded",
                self.sink.name,
                cursor.event_seq + 1,
                int(events[0]["seq"]) - 1,
            )
        batch = [_outgoing_event(r) for r in events] + [Outgoing("alert", alert_json(a)) for a in alerts]
        try:
            await asyncio.to_thread(self.sink.deliver, batch)
        except DeliveryError as err:
            await self._failed(str(err))
            report.ok, report.error = False, str(err)
            return report
        through_seq = int(events[-1]["seq"]) if events else int(cursor.event_seq)
        through_alert = int(alerts[-1].id) if alerts else int(cursor.alert_id)
        async with self.engine.begin() as conn:
            moved = await conn.execute(
                update(CURSORS)
                .where(
                    CURSORS.c.sink == self.sink.name,
                    CURSORS.c.holder == self.holder,
                    CURSORS.c.event_seq == cursor.event_seq,
                    CURSORS.c.alert_id == cursor.alert_id,
                )
                .values(
                    event_seq=through_seq,
                    alert_id=through_alert,
                    delivered_events=CURSORS.c.delivered_events + len(events),
                    delivered_alerts=CURSORS.c.delivered_alerts + len(alerts),
                    skipped_events=CURSORS.c.skipped_events + skipped,
                    delivered_at=_now(),
                    lease_until=_now() + self.lease,
                    last_error=None,
                )
            )
        if moved.rowcount != 1:  # the lease expired and another worker moved on: sent twice, no more
            report.busy = True
            return report
        report.events, report.alerts, report.skipped_events = len(events), len(alerts), skipped
        report.through_seq, report.through_alert = through_seq, through_alert
        return report

    async def run_backlog(self, *, until_caught_up: bool = False) -> RoundReport:
        """Rounds until a short one (or, `until_caught_up`, an empty one), a failure, or a busy lease."""
        total = RoundReport(self.sink.name, self.sink.describe())
        while True:
            report = await self.run_once()
            total.add(report)
            if not report.ok or report.busy:
                return total
            sent = max(report.events, report.alerts)
            if sent == 0 or (not until_caught_up and sent < self.batch):
                return total

    async def release(self) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(CURSORS)
                .where(CURSORS.c.sink == self.sink.name, CURSORS.c.holder == self.holder)
                .values(holder=None, lease_until=None)
            )

    async def _cursor(self, conn: AsyncConnection) -> Any:
        row = (await conn.execute(select(CURSORS).where(CURSORS.c.sink == self.sink.name))).first()
        if row is not None:
            return row
        ins = (sqlite_insert if conn.dialect.name == "sqlite" else pg_insert)(CURSORS)
        await conn.execute(
            ins.values(
                sink=self.sink.name,
                event_seq=0,
                alert_id=0,
                delivered_events=0,
                delivered_alerts=0,
                skipped_events=0,
            ).on_conflict_do_nothing()
        )
        await conn.commit()
        return (await conn.execute(select(CURSORS).where(CURSORS.c.sink == self.sink.name))).one()

    async def _claim(self, cursor: Any) -> bool:
        now = _now()
        async with self.engine.begin() as conn:
            taken = await conn.execute(
                update(CURSORS)
                .where(
                    CURSORS.c.sink == self.sink.name,
                    CURSORS.c.event_seq == cursor.event_seq,
                    CURSORS.c.alert_id == cursor.alert_id,
                    (CURSORS.c.holder.is_(None))
                    | (CURSORS.c.holder == self.holder)
                    | (CURSORS.c.lease_until < now),
                )
                .values(holder=self.holder, lease_until=now + self.lease)
            )
        return taken.rowcount == 1

    async def _failed(self, reason: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(CURSORS)
                .where(CURSORS.c.sink == self.sink.name, CURSORS.c.holder == self.holder)
                .values(failed_at=_now(), last_error=reason[:500])
            )


async def delivered_by_all(engine: AsyncEngine, sinks: Sequence[Sink]) -> int | None:
    """The event seq every configured sink that carries events has delivered through (0 for one
    that has not started): retention prunes no further, so the SOC loses nothing to a prune.
    None when no sink carries events (nothing to hold back)."""
    names = sorted({s.name for s in sinks if s.carries_events})
    if not names:
        return None
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(CURSORS.c.sink, CURSORS.c.event_seq).where(CURSORS.c.sink.in_(names))
        )
        through = {str(name): int(seq) for name, seq in rows}
    return min(through.get(n, 0) for n in names)


async def forward_status(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Every sink's cursor, with how far it is behind the chain's head and the newest alert (the
    webhook carries alerts only: no event lag)."""
    from sqlalchemy import func

    head = (await conn.execute(select(func.max(EVENTS.c.seq)))).scalar() or 0
    newest_alert = (await conn.execute(select(func.max(ALERTS.c.id)))).scalar() or 0
    out = []
    for row in (await conn.execute(select(CURSORS).order_by(CURSORS.c.sink))).mappings():
        doc = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
        doc["lag_events"] = (
            None if row["sink"] == WebhookSink.name else max(0, int(head) - int(row["event_seq"]))
        )
        doc["lag_alerts"] = max(0, int(newest_alert) - int(row["alert_id"]))
        out.append(doc)
    return out


class ForwardTask(PeriodicTask):
    """Every `poll` seconds, each sink's backlog; a sink that failed waits 1, 2, 4 … 60 s."""

    name = "audit-forward"
    MAX_BACKOFF = 60.0

    def __init__(self, forwarders: Sequence[Forwarder], poll: float = 1.0) -> None:
        super().__init__(poll, first_after=poll)
        self.forwarders = list(forwarders)
        self._failures = [0] * len(self.forwarders)
        self._next = [0.0] * len(self.forwarders)

    async def step(self) -> None:
        await asyncio.gather(*(self._one(i) for i in range(len(self.forwarders))))

    async def _one(self, i: int) -> None:
        if time.monotonic() < self._next[i]:
            return
        fwd = self.forwarders[i]
        report = await fwd.run_backlog()
        if report.ok:
            if self._failures[i]:
                log.info("audit forward to %s recovered", fwd.sink.describe())
            self._failures[i] = 0
            return
        self._failures[i] += 1
        delay = min(self.MAX_BACKOFF, 2.0 ** (self._failures[i] - 1))
        self._next[i] = time.monotonic() + delay
        log.warning(
            "audit forward to %s failed (%s); retrying in %.0f s", fwd.sink.describe(), report.error, delay
        )

    async def stop(self) -> None:
        await super().stop()
        for fwd in self.forwarders:
            try:
                await fwd.release()
            except Exception:  # the lease expires by itself
                log.debug("audit forward %s: lease not released", fwd.sink.name, exc_info=True)


def sinks_from_settings(settings: Any, signer: Any = None) -> list[Sink]:
    """The sinks SHUQIAO_AUDIT_SYSLOG_*, SHUQIAO_AUDIT_FORWARD_JSONL and
    SHUQIAO_AUDIT_ALERT_WEBHOOK_URL configure (none: []); `signer` (a ResponseSigner) signs the
    webhook's bodies, by default the gateway's key in <var_dir>/keys/sm2."""
    sinks: list[Sink] = []
    if settings.audit_syslog_target:
        host, port = parse_target(settings.audit_syslog_target)
        fmt = SyslogFormat(
            settings.audit_syslog_hostname or socket.gethostname(),
            str(os.getpid()),
            settings.audit_syslog_pen,
        )
        sinks.append(
            SyslogSink(
                host,
                port,
                fmt,
                tls=settings.audit_syslog_tls,
                ca_file=settings.audit_syslog_ca_file,
                cert_file=settings.audit_syslog_cert_file,
                key_file=settings.audit_syslog_key_file,
                server_name=settings.audit_syslog_server_name,
            )
        )
    if settings.audit_forward_jsonl:
        sinks.append(JsonLinesSink(Path(settings.audit_forward_jsonl)))
    if settings.audit_alert_webhook_url:
        if signer is None:
            from gateway.crypto.signing import ResponseSigner, open_signing_store

            signer = ResponseSigner(open_signing_store(settings.var_dir, create=False))
        sinks.append(WebhookSink(settings.audit_alert_webhook_url, signer))
    return sinks


def parse_target(text: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port` or `host` (port 6514, RFC 5425's)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") or "6514"
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, "6514"
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"SHUQIAO_AUDIT_SYSLOG_TARGET is host:port, not {text!r}")
    return host, int(port)
