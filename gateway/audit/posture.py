"""The officers' dashboard (数据安全态势感知): what happened in a period, at a glance, as JSON.

Every panel is a few SQL statements over the audit tables (and the grant table for expiring
grants); the page draws each one and `GET /audit/api/posture/{panel}` is its machine twin.

  traffic     requests and refusals (HTTP status >= 400) by tier and by department
  sensitive   reads of sensitive fields (level L3/L4, or personal information), by consumer and
              declared purpose; a refused field is not a read
  alerts      open (unacknowledged) alerts by rule and age
  grants      grants that end within the warning period
  unusual     a consumer's volume far above its own baseline, first access of a consumer to a
              dataset, off-hours L4 reads and FORBIDDEN_FIELD probes (the alert rules of
              gateway.audit.alert_rules raise the last two as alerts; counted from them)
  chain       the chain's head, last signed checkpoint and its lag, last verification, index lag

Panels that count events carry a `search` object: the /audit/api/events filters that list the
events behind each number."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from catalogue.models import Dataset, DatasetField
from gateway.audit.alerts import AuditAlert
from gateway.audit.checkpoints import AuditCheckpoint
from gateway.audit.field_index import field_entries, index_pending
from gateway.audit.models import AuditChainHead, AuditEvent, AuditIndexCursor
from gateway.audit.query import BadFilter, parse_time
from gateway.db import table_of
from gateway.grants.models import GrantRecord

PANELS = ("traffic", "sensitive", "alerts", "grants", "unusual", "chain")
EVENTS = table_of(AuditEvent)
ALERTS = table_of(AuditAlert)
GRANTS = table_of(GrantRecord)
AGE_BUCKETS = (("lt_1h", timedelta(hours=1)), ("lt_24h", timedelta(days=1)), ("lt_7d", timedelta(days=7)))
BASELINE_WINDOWS = 7  # the period before, seven times over, is a consumer's own baseline
VOLUME_FACTOR = 3.0  # "far above": at least this many times the baseline ...
VOLUME_MIN = 10  # ... and at least this many requests
# as gateway.grants.service's "expiring" state (not imported: the audit package stays below identity)
DEFAULT_WARNING_DAYS = 30


@dataclass(frozen=True)
class Period:
    since: datetime
    until: datetime  # exclusive
    now: datetime

    @classmethod
    def from_params(cls, params: Mapping[str, str], now: datetime | None = None) -> Period:
        """from= / to= as the search takes them (no offset: Beijing time); default the last day."""
        now = now or datetime.now(UTC)
        until = parse_time(params.get("to"), end=True) or now
        since = parse_time(params.get("from")) or until - timedelta(days=1)
        if since >= until:
            raise BadFilter("from must be before to")
        return cls(since.astimezone(UTC), until.astimezone(UTC), now)

    def search(self, **filters: Any) -> dict[str, Any]:
        return {"from": self.since.isoformat(), "to": self.until.isoformat(), **filters}

    def within(self) -> Any:
        return and_(EVENTS.c.occurred_at >= self.since, EVENTS.c.occurred_at < self.until)


def _utc(dt: datetime | None) -> datetime | None:
    return dt.replace(tzinfo=UTC) if dt is not None and dt.tzinfo is None else dt


def _iso(dt: datetime | None) -> str | None:
    value = _utc(dt)
    return value.isoformat() if value is not None else None


async def compute(conn: AsyncConnection, period: Period, panels: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "from": period.since.isoformat(),
        "to": period.until.isoformat(),
        "computed_at": period.now.isoformat(),
    }
    for name in panels or PANELS:
        out[name] = await PANEL_FUNCTIONS[name](conn, period)
    return out


# ---------------------------------------------------------------- traffic
async def traffic(conn: AsyncConnection, period: Period) -> dict[str, Any]:
    refused = func.sum(case((EVENTS.c.status >= 400, 1), else_=0))
    rows = await conn.execute(
        select(EVENTS.c.tier, EVENTS.c.consumer, func.count(), refused)
        .where(period.within())
        .group_by(EVENTS.c.tier, EVENTS.c.consumer)
        .order_by(EVENTS.c.tier, EVENTS.c.consumer)
    )
    cells = []
    tiers: dict[str, dict[str, int]] = {}
    departments: dict[str, dict[str, int]] = {}
    for tier, consumer, n, bad in rows:
        n, bad = int(n), int(bad or 0)
        cells.append(
            {
                "tier": tier,
                "department": consumer,
                "requests": n,
                "refused": bad,
                "search": period.search(tier=tier, **({"department": consumer} if consumer else {})),
            }
        )
        for key, table in ((tier, tiers), (consumer or "", departments)):
            t = table.setdefault(key, {"requests": 0, "refused": 0})
            t["requests"] += n
            t["refused"] += bad
    return {
        "total": {
            "requests": sum(t["requests"] for t in tiers.values()),
            "refused": sum(t["refused"] for t in tiers.values()),
        },
        "by_tier": [{"tier": k, **v} for k, v in sorted(tiers.items())],
        "by_department": [
            {"department": k or None, **v}
            for k, v in sorted(departments.items(), key=lambda kv: (-kv[1]["requests"], kv[0]))
        ],
        "cells": cells,
    }


# ---------------------------------------------------------------- sensitive reads
async def sensitive_fields(conn: AsyncConnection) -> dict[tuple[str, str], int]:
    """(dataset, field) → level, for the fields an officer watches: L3/L4 or personal."""
    ds, f = table_of(Dataset), table_of(DatasetField)
    rows = await conn.execute(
        select(ds.c.code, f.c.name, f.c.level)
        .select_from(f.join(ds, ds.c.id == f.c.dataset_id))
        .where(or_(f.c.level >= 3, f.c.pi != "none"))
    )
    return {(r.code, r.name): int(r.level) for r in rows}


def _purposes(detail: str | None) -> dict[str, str | None]:
    try:
        reads = orjson.loads(detail or "{}").get("reads") or []
    except (orjson.JSONDecodeError, AttributeError):
        return {}
    return {str(r.get("dataset")): r.get("purpose") for r in reads if isinstance(r, dict)}


async def sensitive(conn: AsyncConnection, period: Period) -> dict[str, Any]:
    watched = await sensitive_fields(conn)
    await index_pending(conn.engine)
    groups: dict[tuple[str | None, str | None], dict[str, Any]] = {}
    total_reads = 0
    if watched:
        entry = field_entries(conn.dialect.name == "sqlite")
        rows = await conn.execute(
            select(EVENTS.c.seq, EVENTS.c.consumer, EVENTS.c.detail, entry.c.dataset, entry.c.field)
            .select_from(entry.join(EVENTS, EVENTS.c.seq == entry.c.seq))
            .where(
                period.within(),
                entry.c.action != "deny",
                or_(*[and_(entry.c.dataset == d, entry.c.field == fl) for d, fl in sorted(watched)]),
            )
            .order_by(EVENTS.c.seq)
        )
        purposes: dict[int, dict[str, str | None]] = {}
        for seq, consumer, detail, dataset, field in rows:
            if seq not in purposes:
                purposes[seq] = _purposes(detail)
            purpose = purposes[seq].get(dataset)
            g = groups.setdefault(
                (consumer, purpose),
                {
                    "consumer": consumer,
                    "purpose": purpose,
                    "events": set(),
                    "field_reads": 0,
                    "l4": 0,
                    "fields": {},
                },
            )
            g["events"].add(seq)
            g["field_reads"] += 1
            g["l4"] += watched[(dataset, field)] >= 4
            key = f"{dataset}.{field}"
            g["fields"][key] = g["fields"].get(key, 0) + 1
            total_reads += 1
    out = []
    order = sorted(groups.values(), key=lambda g: (-g["field_reads"], str(g["consumer"]), str(g["purpose"])))
    for g in order:
        out.append(
            {
                **g,
                "events": len(g["events"]),
                "search": period.search(**({"department": g["consumer"]} if g["consumer"] else {})),
            }
        )
    return {"watched_fields": len(watched), "field_reads": total_reads, "by_consumer_purpose": out}


# ---------------------------------------------------------------- alerts
async def alerts(conn: AsyncConnection, period: Period) -> dict[str, Any]:
    """Open alerts now, whatever the period: an alert stays open until someone acknowledges it."""
    rows = await conn.execute(
        select(ALERTS.c.rule, ALERTS.c.raised_at).where(ALERTS.c.acknowledged_at.is_(None))
    )
    by_rule: dict[str, dict[str, int]] = {}
    for rule, raised in rows:
        age = period.now - (_utc(raised) or period.now)
        bucket = next((name for name, limit in AGE_BUCKETS if age < limit), "older")
        r = by_rule.setdefault(rule, {"open": 0, "lt_1h": 0, "lt_24h": 0, "lt_7d": 0, "older": 0})
        r["open"] += 1
        r[bucket] += 1
    return {
        "open": sum(r["open"] for r in by_rule.values()),
        "by_rule": [{"rule": k, **v} for k, v in sorted(by_rule.items())],
    }


# ---------------------------------------------------------------- grants
async def grants(conn: AsyncConnection, period: Period, days: int = DEFAULT_WARNING_DAYS) -> dict[str, Any]:
    horizon = period.now + timedelta(days=days)
    rows = await conn.execute(
        select(GRANTS)
        .where(
            GRANTS.c.status == "approved",
            GRANTS.c.expires_at.is_not(None),
            GRANTS.c.expires_at > period.now,
            GRANTS.c.expires_at <= horizon,
        )
        .order_by(GRANTS.c.expires_at)
    )
    out = []
    for row in rows:
        expires = _utc(row.expires_at)
        assert expires is not None
        out.append(
            {
                "id": row.id,
                "tier": row.tier,
                "dataset": row.dataset_code,
                "consumer": row.consumer,
                "purpose": row.purpose,
                "expires_at": expires.isoformat(),
                "days_left": max(0, (expires - period.now).days),
            }
        )
    return {"warning_days": days, "expiring": out}


# ---------------------------------------------------------------- unusual patterns
async def unusual(conn: AsyncConnection, period: Period) -> dict[str, Any]:
    span = period.until - period.since
    before = period.since - span * BASELINE_WINDOWS
    now_counts = dict(
        (c, int(n))
        for c, n in await conn.execute(
            select(EVENTS.c.consumer, func.count())
            .where(period.within(), EVENTS.c.consumer.is_not(None), EVENTS.c.tier != "audit")
            .group_by(EVENTS.c.consumer)
        )
    )
    base_counts = dict(
        (c, int(n))
        for c, n in await conn.execute(
            select(EVENTS.c.consumer, func.count())
            .where(
                EVENTS.c.occurred_at >= before,
                EVENTS.c.occurred_at < period.since,
                EVENTS.c.consumer.is_not(None),
                EVENTS.c.tier != "audit",
            )
            .group_by(EVENTS.c.consumer)
        )
    )
    volume = []
    for consumer, n in sorted(now_counts.items()):
        baseline = base_counts.get(consumer, 0) / BASELINE_WINDOWS
        if n >= VOLUME_MIN and n >= VOLUME_FACTOR * max(baseline, 1.0):
            volume.append(
                {
                    "consumer": consumer,
                    "requests": n,
                    "baseline": round(baseline, 2),
                    "search": period.search(department=consumer),
                }
            )

    await index_pending(conn.engine)
    entry = field_entries(conn.dialect.name == "sqlite")
    first = await conn.execute(
        select(EVENTS.c.consumer, entry.c.dataset, func.min(EVENTS.c.occurred_at), func.min(EVENTS.c.seq))
        .select_from(entry.join(EVENTS, EVENTS.c.seq == entry.c.seq))
        .where(
            EVENTS.c.consumer.is_not(None),
            entry.c.field != "",  # a named field read, not only the dataset's count
            entry.c.action != "deny",
            EVENTS.c.occurred_at < period.until,
        )
        .group_by(EVENTS.c.consumer, entry.c.dataset)
        .having(func.min(EVENTS.c.occurred_at) >= period.since)
        .order_by(func.min(EVENTS.c.seq))
    )
    first_access = [
        {
            "consumer": c,
            "dataset": d,
            "first_at": _iso(at),
            "seq": int(seq),
            "search": period.search(department=c, dataset=d),
        }
        for c, d, at, seq in first
    ]

    # refused fields (FORBIDDEN_FIELD), counted as the forbidden_probing rule counts them
    probe_rows = await conn.execute(
        select(EVENTS.c.principal_id, EVENTS.c.consumer, func.count())
        .select_from(entry.join(EVENTS, EVENTS.c.seq == entry.c.seq))
        .where(period.within(), entry.c.action == "deny")
        .group_by(EVENTS.c.principal_id, EVENTS.c.consumer)
        .order_by(func.count().desc(), EVENTS.c.principal_id)
    )
    probes = [
        {
            "principal": p,
            "consumer": c,
            "refusals": int(n),
            "search": period.search(principal=p, decision="deny"),
        }
        for p, c, n in probe_rows
    ]

    alert_rows = await conn.execute(
        select(ALERTS.c.rule, ALERTS.c.consumer, func.count())
        .where(
            ALERTS.c.rule.in_(("l4_out_of_hours", "forbidden_probing")),
            ALERTS.c.occurred_at >= period.since,
            ALERTS.c.occurred_at < period.until,
        )
        .group_by(ALERTS.c.rule, ALERTS.c.consumer)
        .order_by(ALERTS.c.rule, ALERTS.c.consumer)
    )
    by_rule: dict[str, list[dict[str, Any]]] = {"l4_out_of_hours": [], "forbidden_probing": []}
    for rule, consumer, n in alert_rows:
        by_rule[rule].append({"consumer": consumer, "alerts": int(n)})
    return {
        "volume_above_baseline": volume,
        "first_access": first_access,
        "off_hours_l4": by_rule["l4_out_of_hours"],
        "forbidden_probes": probes,
        "probing_alerts": by_rule["forbidden_probing"],
    }


# ---------------------------------------------------------------- chain health
async def chain(conn: AsyncConnection, period: Period) -> dict[str, Any]:
    head = (await conn.execute(select(table_of(AuditChainHead).c.seq))).scalar()
    cp = table_of(AuditCheckpoint)
    last_cp = (
        await conn.execute(select(cp.c.seq, cp.c.created_at).order_by(cp.c.seq.desc()).limit(1))
    ).first()
    verified = (
        await conn.execute(
            select(EVENTS.c.seq, EVENTS.c.occurred_at)
            .where(EVENTS.c.tier == "audit", EVENTS.c.operation_name == "verify", EVENTS.c.status == 200)
            .order_by(EVENTS.c.seq.desc())
            .limit(1)
        )
    ).first()
    cursor = (await conn.execute(select(table_of(AuditIndexCursor).c.seq))).scalar()
    head_seq = int(head or 0)
    return {
        "head_seq": head_seq,
        "last_checkpoint": {"seq": int(last_cp.seq), "at": _iso(last_cp.created_at)} if last_cp else None,
        "checkpoint_lag": head_seq - (int(last_cp.seq) if last_cp else 0),
        "last_verified": {"seq": int(verified.seq), "at": _iso(verified.occurred_at)} if verified else None,
        "index_lag": head_seq - int(cursor or 0),
    }


PANEL_FUNCTIONS = {
    "traffic": traffic,
    "sensitive": sensitive,
    "alerts": alerts,
    "grants": grants,
    "unusual": unusual,
    "chain": chain,
}
