"""Investigations over the audit log.

- The consumer view: everything one department or enterprise read in a period, with the purposes
  declared and the grants each read was made under, shown next to those grants as they stand now.
- The person view: every read of one 身份证号's records, for a citizen's data-access inquiry. A
  read records the blind-index values of the protected keys it looked up (`reads[].keys`:
  HMAC-SM3 under each dataset's index key, the same value the encrypted column is searched by;
  resolvers.context.DatasetRead), never the number. The view computes the number's blind value
  for every dataset whose `id_number` is stored encrypted and finds the events that carry it (a
  scan of the period's events: slower than the field index, fine for an inquiry). Reads made
  before the keys were recorded (and reads that found the person by another field, e.g. a name
  filter) are not found; the view says from which event on keys are recorded."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.audit.field_index import field_entries, index_pending
from gateway.audit.models import AuditEvent
from gateway.audit.posture import Period, _iso
from gateway.db import table_of
from gateway.grants.models import GrantRecord

if TYPE_CHECKING:
    from catalogue.protection import PoolKeyring

EVENTS = table_of(AuditEvent)
GRANTS = table_of(GrantRecord)
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
        entry = field_entries(conn.dialect.name == "sqlite")
        fields = await conn.execute(
            select(entry.c.dataset, entry.c.field, entry.c.action)
            .select_from(entry.join(EVENTS, EVENTS.c.seq == entry.c.seq))
            .where(EVENTS.c.consumer == consumer, period.within(), entry.c.field != "")
        )
        for dataset, field, action in fields:
            seen = datasets.get(dataset)
            if seen is not None:
                per = seen["fields"].setdefault(field, {})
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


PERSON_FIELD = "id_number"


async def person_view(
    conn: AsyncConnection, keyring: PoolKeyring, id_number: str, period: Period
) -> dict[str, Any]:
    """Every event in the period whose reads looked up this 身份证号 (by its blind index)."""
    from catalogue.models import Dataset, DatasetField

    ds, f = table_of(Dataset), table_of(DatasetField)
    encrypted = await conn.execute(
        select(ds.c.code)
        .select_from(f.join(ds, ds.c.id == f.c.dataset_id))
        .where(f.c.name == PERSON_FIELD, (f.c.level >= 4) | (f.c.pi == "sensitive"))
        .order_by(ds.c.code)
    )
    blinds: dict[str, str] = {}  # blind value → dataset
    for (code,) in encrypted:
        try:
            blinds[keyring.cipher(code).blind(PERSON_FIELD, id_number)] = code
        except LookupError:  # no data key yet: nothing stored encrypted, nothing looked up
            continue
    events: list[dict[str, Any]] = []
    if blinds:
        rows = await conn.execute(
            select(
                EVENTS.c.seq,
                EVENTS.c.occurred_at,
                EVENTS.c.tier,
                EVENTS.c.principal_id,
                EVENTS.c.subject,
                EVENTS.c.consumer,
                EVENTS.c.status,
                EVENTS.c.detail,
            )
            .where(period.within(), or_(*[EVENTS.c.detail.contains(b) for b in blinds]))
            .order_by(EVENTS.c.seq.desc())
        )
        for seq, at, tier, principal, subject, consumer, status, detail in rows:
            for r in _reads(detail):
                if not set(r.get("keys") or ()) & set(blinds):
                    continue
                events.append(
                    {
                        "seq": int(seq),
                        "occurred_at": _iso(at),
                        "tier": tier,
                        "principal": principal,
                        "subject": subject,
                        "consumer": consumer,
                        "status": status,
                        "dataset": r["dataset"],
                        "rows": r.get("rows"),
                        "purpose": r.get("purpose"),
                        "grant_ids": r.get("grant_ids") or ([r["grant_id"]] if r.get("grant_id") else []),
                    }
                )
    return {
        "from": period.since.isoformat(),
        "to": period.until.isoformat(),
        "datasets": sorted(set(blinds.values())),
        "reads": events,
        "consumers": sorted({e["consumer"] for e in events if e["consumer"]}),
    }
