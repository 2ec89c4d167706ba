"""The plan's KPIs, live: the facts gathered from the catalogue, the pool, demands, applications,
grants and quality reports; computed by `policies.kpi` (pure); kept as daily snapshots
(`kpi_snapshot`, one row per China Standard Time day) so the trend is the snapshots.

Snapshots are taken by `shuqiao kpi snapshot` (cron, or by hand; it replaces the day's) and, when
SHUQIAO_KPI_SNAPSHOTS=on, by a background task in every gateway worker that takes the day's
snapshot once if it is missing (checked hourly; two workers racing for one day leave one row).
It is off by default: embedded and test gateways write nothing in the background, and a
deployment of several gateways on one database needs only one scheduler.

Share-tier applications come from the `application` table (gateway.workflow.applications) when
it exists. A share-tier grant that no application created (an administrator's `grant create`,
the demo's) is an application approved outside the workflow: one met share demand."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import exists, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Field, SQLModel, col, delete
from sqlmodel import select as model_select  # typed rows from session.exec; Core queries use select
from sqlmodel.ext.asyncio.session import AsyncSession

from catalogue.pool import pool_table, pool_table_name
from catalogue.service import Catalogue, load_catalogue
from gateway.audit.background import PeriodicTask
from gateway.grants.models import GrantRecord
from gateway.workflow.common import WorkflowError, now_utc
from gateway.workflow.demands import Demand
from gateway.workflow.quality import QualityReport, refresh_deadlines
from policies import decisions
from policies import kpi as rules
from policies.workdays import CST

log = logging.getLogger("shuqiao.workflow")
DEFAULT_TREND_DAYS = 90


class KpiSnapshot(SQLModel, table=True):
    __tablename__ = "kpi_snapshot"

    day: date = Field(primary_key=True)  # China Standard Time
    taken_at: datetime
    figures: str  # JSON {kpi key: {"*" or department: [numerator, denominator]}}


# ---------------------------------------------------------------- facts


def _dataset_facts(catalogue: Catalogue, collected: set[str]) -> tuple[rules.DatasetFact, ...]:
    out = []
    for spec in catalogue.datasets.values():
        policy = spec.policy()
        listed = decisions.open_dataset_listed(policy)
        open_fields = sum(
            1 for f in spec.fields if listed and decisions.open_field_exists(policy, f.policy())
        )
        out.append(
            rules.DatasetFact(
                code=spec.code,
                department=spec.department,
                published=spec.published,
                collected=spec.code in collected,
                fields=len(spec.fields),
                open_fields=open_fields,
            )
        )
    return tuple(out)


async def _collected(engine: AsyncEngine, catalogue: Catalogue) -> set[str]:
    """Datasets whose pool table holds at least one row (an EXISTS, not a count)."""
    async with engine.connect() as conn:
        tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        out = set()
        for spec in catalogue.datasets.values():
            if pool_table_name(spec.code) in tables:
                table = pool_table(spec)
                if await conn.scalar(select(exists().select_from(table))):
                    out.add(spec.code)
    return out


async def _applications(engine: AsyncEngine, catalogue: Catalogue) -> tuple[rules.ApplicationFact, ...]:
    """Submitted share-tier applications, and the share-tier grants no application created."""
    async with engine.connect() as conn:
        tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        facts: list[rules.ApplicationFact] = []
        from_applications: set[int] = set()
        if "application" in tables:  # the applications workflow (by name: no import of it here)
            rows = await conn.execute(
                text("SELECT consumer, provider, state, grant_id FROM application WHERE tier = 'share'")
            )
            for consumer, provider, state, grant_id in rows:
                if grant_id is not None:
                    from_applications.add(grant_id)
                if state not in ("draft", "withdrawn"):
                    facts.append(rules.ApplicationFact(consumer, provider, state))
        grants = await conn.execute(
            select(
                col(GrantRecord.id),
                col(GrantRecord.consumer),
                col(GrantRecord.dataset_code),
                col(GrantRecord.status),
            ).where(col(GrantRecord.tier) == "share")
        )
        for grant_id, consumer, dataset, status in grants:
            spec = catalogue.datasets.get(dataset)
            if grant_id in from_applications or spec is None or status == "pending":
                continue
            facts.append(rules.ApplicationFact(consumer, spec.department, "approved"))
    return tuple(facts)


async def gather(engine: AsyncEngine) -> rules.Facts:
    catalogue = await load_catalogue(engine)
    await refresh_deadlines(engine)
    async with AsyncSession(engine) as session:
        demands = (await session.exec(model_select(Demand.requester, Demand.provider, Demand.state))).all()
        reports = (
            await session.exec(
                model_select(
                    QualityReport.provider,
                    QualityReport.state,
                    QualityReport.deadline,
                    QualityReport.resolved_at,
                )
            )
        ).all()
    return rules.Facts(
        datasets=_dataset_facts(catalogue, await _collected(engine, catalogue)),
        demands=tuple(rules.DemandFact(*d) for d in demands),
        applications=await _applications(engine, catalogue),
        quality=tuple(rules.QualityFact(*q) for q in reports),
    )


# ---------------------------------------------------------------- reports


def _figure(ratio: rules.Ratio, target: float) -> dict[str, Any]:
    value = ratio.value
    return {
        "numerator": ratio.numerator,
        "denominator": ratio.denominator,
        "value": None if value is None else round(value, 6),
        "met": None if value is None else value >= target,
    }


@dataclass(frozen=True)
class KpiReport:
    as_of: datetime
    kpis: list[rules.Kpi]
    departments: dict[str, str]  # code → name
    trend: dict[str, list[tuple[date, dict[str, list[int]]]]]  # key → [(day, {scope: [n, d]})]

    def document(self, *, per_department: bool, department: str | None = None) -> dict[str, Any]:
        """The JSON twin. Without `per_department`, the overall figures only (what the plan
        publishes); with `department`, that one department's figures and trend."""
        scope = department or rules.OVERALL
        out = []
        for k in self.kpis:
            d = k.definition
            item: dict[str, Any] = {
                "key": d.key,
                "name": d.name,
                "name_en": d.name_en,
                "definition": d.definition,
                "numerator_is": d.numerator,
                "denominator_is": d.denominator,
                "target": d.target,
                "scope": scope,
                **_figure(k.figures.get(scope, rules.Ratio(0, 0)), d.target),
            }
            if per_department and department is None:
                item["departments"] = {
                    code: _figure(k.figures.get(code, rules.Ratio(0, 0)), d.target)
                    for code in self.departments
                }
            item["trend"] = [
                {"day": day.isoformat(), **_figure(rules.Ratio(*figs.get(scope, [0, 0])), d.target)}
                for day, figs in self.trend.get(d.key, [])
            ]
            out.append(item)
        doc: dict[str, Any] = {"as_of": self.as_of.isoformat(), "scope": scope, "kpis": out}
        if per_department:
            doc["departments"] = self.departments
        return doc

    def rows(self, *, per_department: bool, department: str | None = None) -> list[dict[str, Any]]:
        """The CSV twin: one row per day, scope and KPI (today's live figures first, then the
        snapshots), the same figures as the JSON."""
        doc = self.document(per_department=per_department, department=department)
        out = []
        for item in doc["kpis"]:
            base = {"kpi": item["key"], "name": item["name"], "target": item["target"]}
            scopes = [(item["scope"], item)]
            scopes += sorted(item.get("departments", {}).items())
            for scope, fig in scopes:
                out.append({"as_of": doc["as_of"], "source": "live", "scope": scope, **base, **_csv(fig)})
            for point in item["trend"]:
                out.append(
                    {
                        "as_of": point["day"],
                        "source": "snapshot",
                        "scope": item["scope"],
                        **base,
                        **_csv(point),
                    }
                )
        return out


CSV_COLUMNS = (
    "as_of",
    "source",
    "scope",
    "kpi",
    "name",
    "numerator",
    "denominator",
    "value",
    "target",
    "met",
)


def _csv(fig: dict[str, Any]) -> dict[str, Any]:
    return {k: fig[k] for k in ("numerator", "denominator", "value", "met")}


def _snapshot_figures(kpis: list[rules.Kpi]) -> dict[str, dict[str, list[int]]]:
    return {
        k.definition.key: {scope: [r.numerator, r.denominator] for scope, r in k.figures.items()}
        for k in kpis
    }


def today_cst(now: datetime | None = None) -> date:
    return (now or now_utc()).astimezone(CST).date()


async def trend(
    engine: AsyncEngine, since: date, until: date
) -> dict[str, list[tuple[date, dict[str, list[int]]]]]:
    async with AsyncSession(engine) as session:
        rows = (
            await session.exec(
                model_select(KpiSnapshot)
                .where(col(KpiSnapshot.day) >= since, col(KpiSnapshot.day) <= until)
                .order_by(col(KpiSnapshot.day))
            )
        ).all()
    out: dict[str, list[tuple[date, dict[str, list[int]]]]] = {}
    for row in rows:
        for key, figs in json.loads(row.figures).items():
            out.setdefault(key, []).append((row.day, figs))
    return out


async def kpi_report(
    engine: AsyncEngine,
    *,
    now: datetime | None = None,
    since: date | None = None,
    until: date | None = None,
    department: str | None = None,
) -> KpiReport:
    """The live figures and the trend (snapshots from `since`, default 90 days back, to `until`)."""
    now = now or now_utc()
    catalogue = await load_catalogue(engine)
    if department is not None and department not in catalogue.departments:
        raise WorkflowError(
            f"no department {department!r}; departments: {', '.join(sorted(catalogue.departments))}"
        )
    until = until or today_cst(now)
    since = since or until - timedelta(days=DEFAULT_TREND_DAYS)
    if since > until:
        raise WorkflowError(f"the period starts ({since}) after it ends ({until})")
    kpis = rules.compute(await gather(engine), now)
    names = {code: d.name for code, d in sorted(catalogue.departments.items())}
    return KpiReport(now, kpis, names, await trend(engine, since, until))


async def take_snapshot(engine: AsyncEngine, now: datetime | None = None) -> KpiSnapshot:
    """Record today's figures (CST day), replacing a snapshot already taken today."""
    now = now or now_utc()
    day = today_cst(now)
    figures = _snapshot_figures(rules.compute(await gather(engine), now))
    row = KpiSnapshot(day=day, taken_at=now, figures=json.dumps(figures, ensure_ascii=False, sort_keys=True))
    async with AsyncSession(engine) as session:
        await session.exec(delete(KpiSnapshot).where(col(KpiSnapshot.day) == day))
        session.add(row)
        try:
            await session.commit()
        except IntegrityError:  # another worker took it in the same instant: theirs stands
            await session.rollback()
            existing = await session.get(KpiSnapshot, day)
            assert existing is not None
            return existing
        await session.refresh(row)
    return row


async def snapshot_if_missing(engine: AsyncEngine, now: datetime | None = None) -> KpiSnapshot | None:
    async with AsyncSession(engine) as session:
        if await session.get(KpiSnapshot, today_cst(now)) is not None:
            return None
    return await take_snapshot(engine, now)


class KpiSnapshotTask(PeriodicTask):
    """SHUQIAO_KPI_SNAPSHOTS=on: the day's snapshot, once, if missing (checked hourly)."""

    name = "kpi-snapshot"

    def __init__(self, engine: AsyncEngine, every: float = 3600.0, first_after: float = 30.0) -> None:
        super().__init__(every, first_after)
        self.engine = engine
        self.taken = 0

    async def step(self) -> None:
        if await snapshot_if_missing(self.engine) is not None:
            self.taken += 1
            log.info("kpi snapshot taken for %s", today_cst())
