"""An enterprise's keys and usage on the admin GraphQL API (`POST /admin/graphql`), the machine
twin of the /enterprise pages and of `shuqiao enterprise …`. Merged into its root types by
`EnterpriseQuery` in QUERY_TYPES and `EnterpriseMutation` in MUTATION_TYPES
(gateway.workflow.admin_graphql); applications and grants are that API's own (`myApplications`,
`createApplication(input: {tier: "open", …})`, `grants`), one model for departments and
enterprises.

    query    myEnterprise: Enterprise!            (who the caller acts for)
             apiKeys(enterprise): [ApiKey!]!
             usage(days: 14, enterprise): Usage!
    mutation createApiKey(name, expiresDays, datasets, enterprise): NewApiKey!   (the key, once)
             rotateApiKey(prefix, overlapHours: 24, enterprise): NewApiKey!
             revokeApiKey(prefix, enterprise): ApiKey!

`enterprise` is for administrators; an enterprise's user acts for their own only. Context read
by attribute (gateway.workflow.graphql_support): engine, actor, audit, and `hasher` (the server's
keyed hash for API keys) and `key_defaults` (gateway.enterprise.service.KeyDefaults)."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.scalars import JSON
from strawberry.types import Info

from gateway.enterprise import service
from gateway.identity import apikeys
from gateway.identity.models import ApiKey
from gateway.workflow.graphql_support import counted


async def _run(step: Any) -> Any:
    try:
        return await step
    except service.EnterpriseError as err:
        raise GraphQLError(str(err), extensions={"code": err.code}) from None
    except apikeys.ApiKeyError as err:
        raise GraphQLError(str(err), extensions={"code": "BAD_USER_INPUT"}) from None


@strawberry.type(name="Enterprise", description="The enterprise the caller acts for.")
class EnterpriseType:
    code: str
    name: str
    credit_code: str | None
    user: str


@strawberry.type(name="ApiKey", description="An API key as it may be shown: never its secret.")
class ApiKeyType:
    prefix: str
    enterprise: str
    name: str
    datasets: list[str] = strawberry.field(description="Empty: every dataset the enterprise is granted")
    rate_per_minute: int | None = strawberry.field(description="null: the gateway default")
    daily_quota: int | None = strawberry.field(description="null: the gateway default")
    expires_at: str | None
    revoked_at: str | None
    replaced_by: str | None
    state: str = strawberry.field(description="active, expired or revoked")

    @staticmethod
    def of(row: ApiKey) -> ApiKeyType:
        return ApiKeyType(**apikeys.describe(row))  # type: ignore[arg-type]


@strawberry.type(description="A key just made: `apiKey` is shown this once and never again.")
class NewApiKey:
    api_key: str = strawberry.field(description="X-API-Key: store it now")
    key: ApiKeyType
    previous: ApiKeyType | None = strawberry.field(default=None, description="rotation: the key replaced")


@strawberry.type(description="Calls per key per day (China Standard Time) from the audit log.")
class Usage:
    enterprise: str
    timezone: str
    from_: str = strawberry.field(name="from")
    to: str
    keys: JSON = strawberry.field(
        description="[{prefix, name, state, ratePerMinute, dailyQuota, callsToday, remainingToday, "
        "days: [{date, calls, refused, rows}]}]"
    )
    total: JSON = strawberry.field(description="[{date, calls}]")


def _ctx(info: Info) -> Any:
    return info.context


def _camel(value: Any) -> Any:
    if isinstance(value, list):
        return [_camel(v) for v in value]
    if isinstance(value, dict):
        return {_camel_key(k): _camel(v) for k, v in value.items()}
    return value


def _camel_key(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


@strawberry.type
class EnterpriseQuery:
    @strawberry.field(description="The enterprise you act for (an enterprise's user).")
    async def my_enterprise(self, info: Info, enterprise: str | None = None) -> EnterpriseType:
        ctx = _ctx(info)
        code = await _run(_acting(ctx, enterprise))
        row = await _run(service.enterprise_row(ctx.engine, code))
        return EnterpriseType(
            code=row.code, name=row.name, credit_code=row.credit_code, user=ctx.actor.principal
        )

    @strawberry.field(description="Your enterprise's API keys, oldest first (never their secrets).")
    async def api_keys(self, info: Info, enterprise: str | None = None) -> list[ApiKeyType]:
        ctx = _ctx(info)
        code = await _run(_acting(ctx, enterprise))
        rows = await service.list_keys(ctx.engine, code)
        counted(info, len(rows))
        return [ApiKeyType.of(r) for r in rows]

    @strawberry.field(description="Calls per key per day, with each key's limits (days: 1 to 90).")
    async def usage(self, info: Info, days: int = 14, enterprise: str | None = None) -> Usage:
        ctx = _ctx(info)
        code = await _run(_acting(ctx, enterprise))
        doc = await _run(service.usage(ctx.engine, code, days=days, defaults=ctx.key_defaults))
        counted(info, len(doc["keys"]))
        return Usage(
            enterprise=doc["enterprise"],
            timezone=doc["timezone"],
            from_=doc["from"],
            to=doc["to"],
            keys=_camel(doc["keys"]),
            total=doc["total"],
        )


async def _acting(ctx: Any, enterprise: str | None) -> str:
    return service.acting_for(ctx.actor, enterprise)


def _hasher(ctx: Any) -> Any:
    hasher = getattr(ctx, "hasher", None)
    if hasher is None:
        raise GraphQLError("API keys cannot be made here.", extensions={"code": "UNAVAILABLE"})
    return hasher


@strawberry.type
class EnterpriseMutation:
    @strawberry.mutation(
        description="A new API key for your enterprise; the answer holds it once. datasets: limit it to "
        "some granted datasets; expiresDays: 1 to 730 (none: no expiry)."
    )
    async def create_api_key(
        self,
        info: Info,
        name: str = "",
        expires_days: int | None = None,
        datasets: list[str] | None = None,
        enterprise: str | None = None,
    ) -> NewApiKey:
        ctx = _ctx(info)
        key, row = await _run(
            service.create_key(
                ctx.engine,
                _hasher(ctx),
                ctx.audit,
                ctx.actor,
                enterprise=enterprise,
                name=name,
                expires_days=expires_days,
                datasets=datasets,
            )
        )
        counted(info, 1)
        return NewApiKey(api_key=key, key=ApiKeyType.of(row))

    @strawberry.mutation(
        description="Replace a key: a new one (shown once) with the same scope and limits; the old "
        "one keeps working for overlapHours (0 to 168)."
    )
    async def rotate_api_key(
        self, info: Info, prefix: str, overlap_hours: float = 24.0, enterprise: str | None = None
    ) -> NewApiKey:
        ctx = _ctx(info)
        key, new, old = await _run(
            service.rotate_key(
                ctx.engine,
                _hasher(ctx),
                ctx.audit,
                ctx.actor,
                prefix,
                enterprise=enterprise,
                overlap_hours=overlap_hours,
            )
        )
        counted(info, 1)
        return NewApiKey(api_key=key, key=ApiKeyType.of(new), previous=ApiKeyType.of(old))

    @strawberry.mutation(description="Revoke a key: refused everywhere within two seconds.")
    async def revoke_api_key(self, info: Info, prefix: str, enterprise: str | None = None) -> ApiKeyType:
        ctx = _ctx(info)
        row = await _run(service.revoke_key(ctx.engine, ctx.audit, ctx.actor, prefix, enterprise=enterprise))
        counted(info, 1)
        return ApiKeyType.of(row)
