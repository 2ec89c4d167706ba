"""Demands (需求清单) on the admin GraphQL API. Merged into its root types by adding
`DemandQuery` to QUERY_TYPES and `DemandMutation` to MUTATION_TYPES (gateway.workflow.admin_graphql).

    query    demands(role: "mine"|"addressed"|"all" = "all", state, department): [Demand!]!
             demand(id): Demand!
    mutation createDemand(provider, description, purpose, fieldsWanted, requester): Demand!
             answerDemand(id, answer: "will_provide"|"cannot_provide", promisedDate, reason): Demand!
             fulfilDemand(id, dataset): Demand!

A department files demands for itself and sees those it filed or that are addressed to it; only
the provider's steward (or an administrator) answers and fulfils. Every change is an audit event
(gateway.workflow.recorded)."""

from __future__ import annotations

from datetime import date

import strawberry
from graphql import GraphQLError
from strawberry.scalars import JSON
from strawberry.types import Info

from gateway.workflow import demands, recorded
from gateway.workflow.graphql_support import actor_of, context_value, counted, run


@strawberry.type(name="Demand", description="A demand (需求清单): data asked of a provider.")
class DemandType:
    id: int
    requester: str
    provider: str
    description: str
    fields_wanted: str
    purpose: str
    state: str = strawberry.field(description="open, will_provide, cannot_provide or fulfilled")
    promised_date: str | None
    reason: str | None
    dataset: str | None = strawberry.field(description="fulfilled: the catalogued dataset")
    created_at: str | None
    created_by: str
    answered_at: str | None
    answered_by: str | None
    fulfilled_at: str | None
    fulfilled_by: str | None
    history: JSON

    @staticmethod
    def of(row: demands.Demand) -> DemandType:
        return DemandType(**demands.describe(row))


def _date(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise GraphQLError(
            f"promisedDate {value!r} is not a date (YYYY-MM-DD)", extensions={"code": "BAD_USER_INPUT"}
        ) from None


@strawberry.type
class DemandQuery:
    @strawberry.field(description="Demands your department filed (mine), received (addressed), or both.")
    async def demands(
        self, info: Info, role: str = "all", state: str | None = None, department: str | None = None
    ) -> list[DemandType]:
        ctx = info.context
        rows = await run(
            demands.list_demands(ctx.engine, actor_of(info), role=role, state=state, department=department)
        )
        counted(info, len(rows))
        return [DemandType.of(r) for r in rows]

    @strawberry.field
    async def demand(self, info: Info, id: int) -> DemandType:
        row = await run(demands.get_demand(info.context.engine, actor_of(info), id))
        counted(info, 1)
        return DemandType.of(row)


@strawberry.type
class DemandMutation:
    @strawberry.mutation(description="Ask a provider for data the catalogue does not have yet.")
    async def create_demand(
        self,
        info: Info,
        provider: str,
        description: str,
        purpose: str,
        fields_wanted: str = "",
        requester: str | None = None,
    ) -> DemandType:
        ctx = info.context
        row = await run(
            recorded.create_demand(
                ctx.engine,
                ctx.audit,
                actor_of(info),
                request=context_value(info, "request"),
                provider=provider,
                description=description,
                purpose=purpose,
                fields_wanted=fields_wanted,
                requester=requester,
            )
        )
        counted(info, 1)
        return DemandType.of(row)

    @strawberry.mutation(description="The provider's answer: will_provide (promisedDate) or cannot_provide.")
    async def answer_demand(
        self,
        info: Info,
        id: int,
        answer: str,
        promised_date: str | None = None,
        reason: str | None = None,
    ) -> DemandType:
        ctx = info.context
        row = await run(
            recorded.answer_demand(
                ctx.engine,
                ctx.audit,
                actor_of(info),
                id,
                answer=answer,
                promised_date=_date(promised_date),
                reason=reason,
                request=context_value(info, "request"),
            )
        )
        counted(info, 1)
        return DemandType.of(row)

    @strawberry.mutation(description="The data is catalogued: link the demand to the provider's dataset.")
    async def fulfil_demand(self, info: Info, id: int, dataset: str) -> DemandType:
        ctx = info.context
        row = await run(
            recorded.fulfil_demand(
                ctx.engine,
                ctx.audit,
                actor_of(info),
                id,
                dataset=dataset,
                request=context_value(info, "request"),
            )
        )
        counted(info, 1)
        return DemandType.of(row)
