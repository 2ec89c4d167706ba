"""Investigations over the audit log: the consumer view (everything one department or enterprise
read in a period, with the purposes declared and the grants each read was made under, shown next
to those grants as they stand now).

The person view (every access to one 身份证号's records) is not here yet: events record the
datasets and fields a query touched and its sealed variables, but not the entity keys it looked
up, so "who read this citizen's records" cannot be answered from the chain today."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.audit.field_index import index_pending
from gateway.audit.models import AuditEvent, AuditFieldAccess
from gateway.audit.posture import Period, _iso
from gateway.grants.models import GrantRecord

EVENTS = AuditEvent.__table__
ACCESS = AuditFieldAccess.__table__
GRANTS = GrantRecord.__table__
READS_SHOWN = 200  # the newest reads listed one by one; the totals count them all


def _reads(detail: str | None) -> list[dict[str, Any]]:
    try:
        reads = orjson.loads(detail or "{}").get("reads") or []
    except (orjson.JSONDecodeError, AttributeError):
        return []
    return [r for r in reads if isinstance(r, dict) and r.get("dataset")]


def _grant(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "tier": row.tier,
        "dataset": row.dataset_code,
        "fields": row.fields.split(),
        "clear_fields": row.clear_fields.split(),
        "purpose": row.purpose,
        "status": row.status,
        "expires_at": _iso(row.expires_at),
        "revoked_at": _iso(row.revoked_at),
        "revoke_reason": row.revoke_reason,
    }


async def consumer_view(conn: AsyncConnection, consumer: str, period: Period) -> dict[str, Any]:
    await index_pending(conn.engine)
    grants = {
        row.id: _grant(row)
        for row in await conn.execute(
            select(GRANTS).where(GRANTS.c.consumer == consumer).order_by(GRANTS.c.id)
        )
    }
    rows = await conn.execute(
        select(
            EVENTS.c.seq,
            EVENTS.c.occurred_at,
            EVENTS.c.tier,
            EVENTS.c.principal_id,
            EVENTS.c.subject,
            EVENTS.c.status,
            EVENTS.c.row_count,
            EVENTS.c.detail,
        )
        .where(EVENTS.c.consumer == consumer, period.within())
        .order_by(EVENTS.c.seq.desc())
    )
    summary = {"requests": 0, "refused": 0, "rows": 0}
    principals: dict[str, int] = {}
    datasets: dict[str, dict[str, Any]] = {}
    reads: list[dict[str, Any]] = []
    for seq, at, tier, principal, subject, status, row_count, detail in rows:
        summary["requests"] += 1
        summary["refused"] += status >= 400
        summary["rows"] += row_count or 0
        who = f"{principal}/{subject}" if subject and subject != principal else principal
        principals[who] = principals.get(who, 0) + 1
        for r in _reads(detail):
            ids = [int(i) for i in (r.get("grant_ids") or ([r["grant_id"]] if r.get("grant_id") else []))]
            d = datasets.setdefault(
                r["dataset"],
                {
                    "dataset": r["dataset"],
                    "events": 0,
                    "rows": 0,
                    "purposes": set(),
                    "grant_ids": set(),
                    "fields": {},
                },
            )
            d["events"] += 1
            d["rows"] += int(r.get("rows") or 0)
            if r.get("purpose"):
                d["purposes"].add(r["purpose"])
            d["grant_ids"].update(ids)
            if len(reads) < READS_SHOWN:
                reads.append(
                    {
                        "seq": int(seq),
                        "occurred_at": _iso(at),
                        "tier": tier,
                        "principal": who,
                        "status": status,
                        "dataset": r["dataset"],
                        "rows": r.get("rows"),
                        "purpose": r.get("purpose"),
                        # the grant(s) the read was made under, as they stand now
                        "grants": [grants.get(i, {"id": i, "status": "unknown"}) for i in ids],
                    }
                )
    if datasets:
        fields = await conn.execute(
            select(ACCESS.c.dataset, ACCESS.c.field, ACCESS.c.action)
            .select_from(ACCESS.join(EVENTS, EVENTS.c.seq == ACCESS.c.seq))
            .where(EVENTS.c.consumer == consumer, period.within())
        )
        for dataset, field, action in fields:
            d = datasets.get(dataset)
            if d is not None:
                per = d["fields"].setdefault(field, {})
                per[action] = per.get(action, 0) + 1
    return {
        "consumer": consumer,
        "from": period.since.isoformat(),
        "to": period.until.isoformat(),
        **summary,
        "principals": [
            {"principal": k, "events": v} for k, v in sorted(principals.items(), key=lambda kv: -kv[1])
        ],
        "datasets": [
            {**d, "purposes": sorted(d["purposes"]), "grant_ids": sorted(d["grant_ids"])}
            for d in sorted(datasets.values(), key=lambda d: -d["events"])
        ],
        "grants": list(grants.values()),
        "reads": reads,
        "search": period.search(department=consumer),
    }
