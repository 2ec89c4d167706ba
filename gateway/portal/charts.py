"""The dataset page's charts over the WHOLE dataset, aggregated in the database (docs/portal.md §Pages).

Which fields may be aggregated is decided by the open tier's own policies, for the anonymous public,
before any SQL is written (`plan_charts`):

- the dataset must be readable anonymously (`decisions.open_dataset_access`: 无条件开放 only);
- every field used — the time axis, the measure, the district-like grouping — must exist in the
  anonymous open schema (it is in the explorer's entry, which is read off that schema) and be
  decided ALLOW for the public (`decisions.decide_open_field`): a masked field (a clear value could
  be probed from a group) or an absent one is never grouped or summed; a field stored encrypted
  (catalogue.protection) is never aggregated either.

The statements are SQLAlchemy Core over the dataset's pool table, every value bound: one
`GROUP BY` on the day of the time field (count, sum and count of the measure), one on the district
field (the 30 largest groups, and the number of other groups). Days are then combined into
months or years in Python when there are too many to draw, so averages stay exact (sum / count).
Each aggregation is an audited read of the page's request (gateway.portal.pages).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Date, Select, cast, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from catalogue.protection import is_protected
from catalogue.spec import DatasetSpec, FieldSpec, FieldType
from policies import decisions
from policies.model import Action
from resolvers.sql import table_for
from schema.naming import camel as _camel

NUMERIC = (FieldType.INTEGER, FieldType.FLOAT, FieldType.DECIMAL)
TIME = (FieldType.DATE, FieldType.DATETIME)
# Columns that name a place the public knows (county, district, city), most local first.
DISTRICT_COLUMNS = ("district", "county", "district_name", "city", "city_name", "region")
DISTRICT_TITLES = ("区县", "县区", "行政区", "城市", "地市")
COUNT = "count"  # the `measure` that charts rows instead of a field
MAX_GROUPS = 30  # bars in the distribution; the rest are counted, not drawn
MAX_DAYS = 400  # more days than this are drawn per month, more months than MAX_MONTHS per year
MAX_MONTHS = 240


@dataclass(frozen=True)
class ChartPlan:
    dataset: DatasetSpec
    time: FieldSpec | None
    district: FieldSpec | None
    measures: tuple[FieldSpec, ...]
    measure: FieldSpec | None  # the one drawn (None: the row count)

    def fields(self) -> list[FieldSpec]:
        return [f for f in (self.time, self.district, self.measure) if f is not None]


@dataclass
class Point:
    label: str
    rows: int
    total: float | None = None  # sum of the measure
    counted: int = 0  # rows with a measure value

    @property
    def value(self) -> float:
        """The average measure (None-safe), or the row count when there is no measure."""
        if self.total is None:
            return float(self.rows)
        return self.total / self.counted if self.counted else 0.0


@dataclass
class ChartData:
    plan: ChartPlan
    bucket: str = "day"
    series: list[Point] = field(default_factory=list)
    groups: list[Point] = field(default_factory=list)
    other_groups: int = 0
    rows: int = 0


def _public(ds: DatasetSpec, f: FieldSpec) -> bool:
    return decisions.decide_open_field(ds.policy(), f.policy()).action is Action.ALLOW and not is_protected(f)


def plan_charts(ds: DatasetSpec, open_fields: list[str], measure: str | None = None) -> ChartPlan | None:
    """What may be charted for the public. `open_fields` are the GraphQL names the anonymous open
    schema shows for this dataset (the explorer's entry); None when nothing may be charted."""
    access = decisions.open_dataset_access(ds.policy(), None, [], datetime.now(UTC))
    if not access.allowed:
        return None
    shown = set(open_fields)
    usable = [f for f in ds.fields if _camel(f.name) in shown and _public(ds, f)]
    time = next((f for f in usable if f.type in TIME), None)
    district = _district(usable)
    if time is None and district is None:
        return None
    measures = tuple(f for f in usable if f.type in NUMERIC)
    # `measure`: a numeric field's GraphQL name, COUNT for the row count, None for the first measure
    chosen = next((f for f in measures if _camel(f.name) == measure), None)
    if chosen is None and measure != COUNT and measures:
        chosen = measures[0]
    return ChartPlan(ds, time, district, measures, chosen)


def _district(usable: list[FieldSpec]) -> FieldSpec | None:
    strings = [f for f in usable if f.type is FieldType.STRING]
    for name in DISTRICT_COLUMNS:
        for f in strings:
            if f.name == name:
                return f
    for f in strings:
        if any(word in f.title for word in DISTRICT_TITLES) and "代码" not in f.title:
            return f
    return None


def _measure_columns(plan: ChartPlan, table: Any) -> list[Any]:
    if plan.measure is None:
        return []
    col = table.c[plan.measure.name]
    return [func.sum(col), func.count(col)]


def series_statement(plan: ChartPlan, dialect: str) -> Select:
    assert plan.time is not None
    table = table_for(plan.dataset)
    col: Any = table.c[plan.time.name]
    if plan.time.type is FieldType.DATETIME:
        col = func.date(col) if dialect == "sqlite" else cast(col, Date)
    day = col.label("day")
    return (
        select(day, func.count(), *_measure_columns(plan, table))
        .where(table.c[plan.time.name].is_not(None))
        .group_by(day)
        .order_by(day)
    )


def groups_statement(plan: ChartPlan) -> Select:
    assert plan.district is not None
    table = table_for(plan.dataset)
    col = table.c[plan.district.name]
    n = func.count()
    return (
        select(col, n, *_measure_columns(plan, table))
        .where(col.is_not(None))
        .group_by(col)
        .order_by(n.desc(), col)
    )


def _num(value: Any) -> float | None:
    if value is None:
        return None
    return float(value) if isinstance(value, Decimal | int | float) else float(str(value))


def _day(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _point(label: str, row: Any, with_measure: bool) -> Point:
    if not with_measure:
        return Point(label, int(row[1]))
    return Point(label, int(row[1]), _num(row[2]) or 0.0, int(row[3] or 0))


def _rebucket(days: list[tuple[date, Point]]) -> tuple[str, list[Point]]:
    if len(days) <= MAX_DAYS:
        return "day", [p for _, p in days]
    months = {d.strftime("%Y-%m") for d, _ in days}
    bucket, fmt = ("month", "%Y-%m") if len(months) <= MAX_MONTHS else ("year", "%Y")
    out: dict[str, Point] = {}
    for d, p in days:
        key = d.strftime(fmt)
        acc = out.setdefault(key, Point(key, 0, None if p.total is None else 0.0, 0))
        acc.rows += p.rows
        if p.total is not None and acc.total is not None:
            acc.total += p.total
            acc.counted += p.counted
    return bucket, list(out.values())


async def aggregate(conn: AsyncConnection, plan: ChartPlan) -> ChartData:
    """Both aggregations of `plan`, in the database; at most a few hundred rows come back."""
    data = ChartData(plan)
    with_measure = plan.measure is not None
    if plan.time is not None:
        rows = (await conn.execute(series_statement(plan, conn.dialect.name))).all()
        days = [(_day(r[0]), _point(_day(r[0]).isoformat(), r, with_measure)) for r in rows]
        data.bucket, data.series = _rebucket(days)
    if plan.district is not None:
        rows = (await conn.execute(groups_statement(plan))).all()
        groups = [_point(str(r[0]), r, with_measure) for r in rows]
        if with_measure:  # largest average first; by rows (the statement's order) otherwise
            groups.sort(key=lambda p: (-p.value, p.label))
        data.groups = groups[:MAX_GROUPS]
        data.other_groups = max(0, len(rows) - MAX_GROUPS)
    total = select(func.count()).select_from(table_for(plan.dataset))
    data.rows = int((await conn.execute(total)).scalar_one())
    return data
