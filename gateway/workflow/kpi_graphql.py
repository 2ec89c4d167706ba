"""The plan's KPIs on the admin GraphQL API. Merged into its root types by adding `KpiQuery` to
QUERY_TYPES.

    query kpis(department: String, since: String, until: String): KpiReport!

Any department's caller of the admin API (a department's system or person, a steward, an
administrator; not an enterprise's user) sees the per-department figures; the public sees the
overall ones at GET /kpi.json (gateway.workflow.kpi_http).
`since`/`until` bound the trend (daily snapshots; default the last 90 days)."""

from __future__ import annotations

from datetime import date
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.types import Info

from gateway.workflow import kpi
from gateway.workflow.graphql_support import run


@strawberry.type(description="A ratio: numerator / denominator (value null when nothing is counted).")
class KpiFigure:
    numerator: int
    denominator: int
    value: float | None
    met: bool | None = strawberry.field(description="value ≥ target; null: no data")


@strawberry.type
class KpiDepartmentFigure:
    department: str
    figure: KpiFigure


@strawberry.type
class KpiTrendPoint:
    day: str
    figure: KpiFigure


@strawberry.type(name="Kpi", description="One of the plan's KPIs: definition, target, figures, trend.")
class KpiType:
    key: str
    name: str
    name_en: str
    definition: str
    numerator_is: str
    denominator_is: str
    target: float
    scope: str = strawberry.field(description='"*" (overall) or the department asked for')
    figure: KpiFigure
    departments: list[KpiDepartmentFigure]
    trend: list[KpiTrendPoint]


@strawberry.type
class KpiReportType:
    as_of: str
    scope: str
    kpis: list[KpiType]


def _figure(doc: dict[str, Any]) -> KpiFigure:
    return KpiFigure(
        numerator=doc["numerator"], denominator=doc["denominator"], value=doc["value"], met=doc["met"]
    )


def _day(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise GraphQLError(
            f"{name} {value!r} is not a date (YYYY-MM-DD)", extensions={"code": "BAD_USER_INPUT"}
        ) from None


@strawberry.type
class KpiQuery:
    @strawberry.field(
        description="编目率, 归集率, 数据共享率, 数据开放率, 问题数据及时整改率: now, and their trend."
    )
    async def kpis(
        self, info: Info, department: str | None = None, since: str | None = None, until: str | None = None
    ) -> KpiReportType:
        given = info.context.actor
        if not (getattr(given, "department", None) or getattr(given, "admin", False)):
            # an enterprise's user reaches this API for its own keys and applications only;
            # the public figures are GET /kpi.json
            raise GraphQLError(
                "per-department KPIs are for departments' principals; see GET /kpi.json",
                extensions={"code": "FORBIDDEN"},
            )
        report = await run(
            kpi.kpi_report(
                info.context.engine,
                since=_day(since, "since"),
                until=_day(until, "until"),
                department=department,
            )
        )
        doc = report.document(per_department=True, department=department)
        return KpiReportType(
            as_of=doc["as_of"],
            scope=doc["scope"],
            kpis=[
                KpiType(
                    key=k["key"],
                    name=k["name"],
                    name_en=k["name_en"],
                    definition=k["definition"],
                    numerator_is=k["numerator_is"],
                    denominator_is=k["denominator_is"],
                    target=k["target"],
                    scope=k["scope"],
                    figure=_figure(k),
                    departments=[
                        KpiDepartmentFigure(department=code, figure=_figure(f))
                        for code, f in k.get("departments", {}).items()
                    ],
                    trend=[KpiTrendPoint(day=p["day"], figure=_figure(p)) for p in k["trend"]],
                )
                for k in doc["kpis"]
            ],
        )
