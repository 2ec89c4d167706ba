"""Data-quality reports (问题数据) on the admin GraphQL API. Merged into its root types by adding
`QualityQuery` to QUERY_TYPES and `QualityMutation` to MUTATION_TYPES.

    query    qualityReports(role: "mine"|"addressed"|"all" = "all", state, department): [QualityReport!]!
             (state: open, overdue, fixed, disputed)
             qualityReport(id): QualityReport!
    mutation reportQuality(dataset, record, description, field, keyField, reporter): QualityReport!
             resolveQuality(id, resolution: "fixed"|"disputed", reason): QualityReport!

A consumer department reports for itself; only the provider's steward (or an administrator)
resolves. `recordRef` is the key's value, or `bidx:<hex>` (its blind index) for a protected key
such as 身份证号: the number itself is never stored or returned."""

from __future__ import annotations

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from gateway.workflow import quality, recorded
from gateway.workflow.graphql_support import actor_of, context_value, counted, run


@strawberry.type(name="QualityReport", description="A data-quality report (问题数据).")
class QualityReportType:
    id: int
    reporter: str
    provider: str
    dataset: str
    key_field: str
    record_ref: str
    field: str | None
    description: str
    state: str = strawberry.field(description="open, fixed or disputed")
    reason: str | None
    opened_at: str | None
    deadline: str | None = strawberry.field(description="3 working days (Chinese calendar) after opening")
    deadline_provisional: bool = strawberry.field(
        description="the calendar did not know the year: Mon-Fri assumed until it does"
    )
    timeliness: str = strawberry.field(
        description="open, overdue, fixed_in_time, fixed_late, disputed_in_time or disputed_late"
    )
    resolved_at: str | None
    resolved_by: str | None
    created_by: str
    history: JSON

    @staticmethod
    def of(row: quality.QualityReport) -> QualityReportType:
        return QualityReportType(**quality.describe(row))


@strawberry.type
class QualityQuery:
    @strawberry.field(description="Reports your department filed (mine), received (addressed), or both.")
    async def quality_reports(
        self, info: Info, role: str = "all", state: str | None = None, department: str | None = None
    ) -> list[QualityReportType]:
        rows = await run(
            quality.list_reports(
                info.context.engine, actor_of(info), role=role, state=state, department=department
            )
        )
        counted(info, len(rows))
        return [QualityReportType.of(r) for r in rows]

    @strawberry.field
    async def quality_report(self, info: Info, id: int) -> QualityReportType:
        row = await run(quality.get_report(info.context.engine, actor_of(info), id))
        counted(info, 1)
        return QualityReportType.of(row)


@strawberry.type
class QualityMutation:
    @strawberry.mutation(description="Flag a record (or one field of it) as wrong; due in 3 working days.")
    async def report_quality(
        self,
        info: Info,
        dataset: str,
        record: str,
        description: str,
        field: str | None = None,
        key_field: str | None = None,
        reporter: str | None = None,
    ) -> QualityReportType:
        ctx = info.context
        row = await run(
            recorded.report_quality(
                ctx.engine,
                ctx.audit,
                actor_of(info),
                keyring=context_value(info, "keyring"),
                request=context_value(info, "request"),
                dataset=dataset,
                record=record,
                description=description,
                field=field,
                key_field=key_field,
                reporter=reporter,
            )
        )
        counted(info, 1)
        return QualityReportType.of(row)

    @strawberry.mutation(description="The provider's answer: fixed (what was corrected) or disputed (why).")
    async def resolve_quality(self, info: Info, id: int, resolution: str, reason: str) -> QualityReportType:
        ctx = info.context
        row = await run(
            recorded.resolve_quality(
                ctx.engine,
                ctx.audit,
                actor_of(info),
                id,
                resolution=resolution,
                reason=reason,
                request=context_value(info, "request"),
            )
        )
        counted(info, 1)
        return QualityReportType.of(row)
