"""The public statistics (docs/portal.md §Statistics): what the public uses of the open catalogue,
as documents — `/stats.json`, `/stats/datasets/{code}.json`, `shuqiao portal stats --json` and the
`/stats` page all render these.

The figures come from the daily rollup (gateway.portal.usage), never from the audit table, and
cover only the datasets of the open listing: published, open attribute ≠ 不予开放, with at least
one field the open schema shows — the rule the open schema itself is built by
(policies.decisions). Counts of a dataset that has left the listing stay in the rollup but are
not shown. Catalogue growth is the listing counted by each dataset's first-published date (the
catalogue's `created_at`, DCAT's `dct:issued`). Nothing names a consumer, a principal or an
address: the rollup does not hold them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from catalogue.service import Catalogue
from gateway.portal.usage import (
    Counts,
    Totals,
    cst_day,
    daily_usage,
    today_cst,
    usage_by_dataset,
    usage_by_day,
)
from policies import decisions
from policies.model import Open

DEFAULT_DAYS = 30
MAX_DAYS = 366
PERIODS = (7, 30, 90)  # the page's period choices
TOP = 10
TIMEZONE = "Asia/Shanghai"


@dataclass(frozen=True)
class PublicDataset:
    code: str
    name: str
    name_en: str
    resource_code: str
    department: str  # the provider's name
    conditional: bool  # 有条件开放
    published_at: datetime | None  # first published (the catalogue entry's creation)


def public_datasets(catalogue: Catalogue, published_at: dict[str, datetime | None]) -> list[PublicDataset]:
    """The open listing: the datasets the anonymous open schema offers, by resource code."""
    out = []
    for ds in catalogue.datasets.values():
        policy = ds.policy()
        if not decisions.open_dataset_listed(policy) or ds.open is Open.NONE:
            continue
        if not any(decisions.open_field_exists(policy, f.policy()) for f in ds.fields):
            continue  # no field to show: the open schema leaves it out
        dept = catalogue.departments.get(ds.department)
        out.append(
            PublicDataset(
                ds.code,
                ds.name,
                ds.name_en,
                ds.resource_code,
                dept.name if dept is not None else ds.department,
                ds.open is Open.CONDITIONAL,
                published_at.get(ds.code),
            )
        )
    out.sort(key=lambda d: (d.resource_code, d.code))
    return out


async def publication_dates(engine: AsyncEngine) -> dict[str, datetime | None]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT code, created_at FROM dataset"))
        return {str(code): _moment(created) for code, created in rows}


def _moment(value: Any) -> datetime | None:
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_days(raw: str | None) -> int:
    """`?days=N`: a whole number from 1 to MAX_DAYS (default DEFAULT_DAYS); ValueError otherwise."""
    if raw is None or raw == "":
        return DEFAULT_DAYS
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_DAYS:
        raise ValueError(f"`days` must be a whole number from 1 to {MAX_DAYS}.")
    return int(raw)


def window(days: int, today: date) -> list[date]:
    """The last `days` days, oldest first, ending today."""
    return [today - timedelta(days=i) for i in range(days - 1, -1, -1)]


def series(days: list[date], per_day: dict[date, Counts]) -> list[dict[str, Any]]:
    """One entry per day of the window, oldest first, zero-filled."""
    zero = Counts()
    return [
        {
            "date": d.isoformat(),
            "calls": per_day.get(d, zero).calls,
            "downloads": per_day.get(d, zero).downloads,
        }
        for d in days
    ]


def dataset_document(code: str, days: list[date], counts: dict[tuple[str, date], Counts]) -> dict[str, Any]:
    """`/stats/datasets/{code}.json`: exactly {"dataset", "days": [{"date", "calls", "downloads"}]}."""
    return {"dataset": code, "days": series(days, {day: c for (ds, day), c in counts.items() if ds == code})}


def aggregate(
    counts: dict[tuple[str, date], Counts], listed: set[str]
) -> tuple[dict[str, Totals], dict[date, Counts]]:
    """Per-(dataset, day) counts as the two aggregates a report needs (what
    usage_by_dataset / usage_by_day compute in SQL), over the `listed` datasets."""
    per_dataset: dict[str, Totals] = {}
    per_day: dict[date, Counts] = {}
    for (ds, day), c in counts.items():
        if ds not in listed:
            continue
        t = per_dataset.setdefault(ds, Totals())
        t.calls += c.calls
        t.downloads += c.downloads
        t.active_days += 1 if c.calls or c.downloads else 0
        acc = per_day.setdefault(day, Counts())
        acc.calls += c.calls
        acc.downloads += c.downloads
    return per_dataset, per_day


def growth(datasets: list[PublicDataset]) -> list[dict[str, Any]]:
    """Open datasets by month first published (China time): added that month, and the total."""
    added: dict[str, int] = {}
    for d in datasets:
        if d.published_at is not None:
            month = cst_day(d.published_at).strftime("%Y-%m")
            added[month] = added.get(month, 0) + 1
    total = 0
    out = []
    for month in sorted(added):
        total += added[month]
        out.append({"month": month, "added": added[month], "total": total})
    return out


def stats_document(
    datasets: list[PublicDataset],
    days: list[date],
    per_dataset: dict[str, Totals],
    per_day: dict[date, Counts],
    as_of: datetime,
) -> dict[str, Any]:
    """`/stats.json`: per dataset and per day over the window, the top datasets, catalogue growth.
    `per_day` must be summed over the listed datasets only."""
    rows: list[dict[str, Any]] = []
    for d in datasets:
        t = per_dataset.get(d.code, Totals())
        rows.append(
            {
                "dataset": d.code,
                "name": d.name,
                "name_en": d.name_en,
                "resource_code": d.resource_code,
                "department": d.department,
                "conditional": d.conditional,
                "calls": t.calls,
                "downloads": t.downloads,
                "active_days": t.active_days,
                "usage": f"/stats/datasets/{d.code}.json?days={len(days)}",
            }
        )
    daily = series(days, per_day)

    def top(key: str) -> list[dict[str, Any]]:
        used = sorted((r for r in rows if r[key] > 0), key=lambda r: (-r[key], r["resource_code"]))
        return [{"dataset": r["dataset"], "name": r["name"], key: r[key]} for r in used[:TOP]]

    return {
        "as_of": as_of.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "timezone": TIMEZONE,
        "days": len(days),
        "since": days[0].isoformat(),
        "until": days[-1].isoformat(),
        "totals": {"calls": sum(r["calls"] for r in rows), "downloads": sum(r["downloads"] for r in rows)},
        "daily": daily,
        "datasets": rows,
        "top": {"calls": top("calls"), "downloads": top("downloads")},
        "catalogue": {
            "open_datasets": len(datasets),
            "unconditional": sum(1 for d in datasets if not d.conditional),
            "conditional": sum(1 for d in datasets if d.conditional),
            "growth": growth(datasets),
        },
    }


async def usage_report(
    engine: AsyncEngine, datasets: list[PublicDataset], days: int, now: datetime | None = None
) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    span = window(days, today_cst(now))
    per_dataset = await usage_by_dataset(engine, span[0], span[-1])
    per_day = await usage_by_day(engine, span[0], span[-1], {d.code for d in datasets})
    return stats_document(datasets, span, per_dataset, per_day, now)


async def dataset_usage(
    engine: AsyncEngine, code: str, days: int, now: datetime | None = None
) -> dict[str, Any]:
    span = window(days, today_cst(now))
    return dataset_document(code, span, await daily_usage(engine, span[0], span[-1], code))
