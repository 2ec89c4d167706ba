"""What the demand, quality-report and KPI resolvers need of the admin API's context
(gateway.workflow.admin_graphql.AdminContext): `engine`, `actor` (policies.workflow.Actor:
principal, department, apply/approve/admin), `audit` (or None), `claims`, optionally `keyring`
(the pool keyring, for a report keyed by a protected field) and a `rows` counter for the call's
own audit event. Read by attribute, so any context with these names serves (the tests' own)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

from graphql import GraphQLError
from strawberry.types import Info

from gateway.workflow.common import Actor, WorkflowError

T = TypeVar("T")


def actor_of(info: Info) -> Actor:
    """The admin API's actor as a demand/quality actor: approve → a steward's scope (its own
    department only), admin → every department."""
    ctx = info.context
    given = ctx.actor
    if isinstance(given, Actor):
        return given
    claims = getattr(ctx, "claims", None)
    person = claims is not None and claims.subject != claims.client_id
    scopes = {
        scope
        for scope, held in (
            ("share:read", getattr(given, "apply", False)),
            ("grants:approve", getattr(given, "approve", False)),
            ("admin", getattr(given, "admin", False)),
        )
        if held
    }
    return Actor("user" if person else "client", given.principal, given.department, frozenset(scopes))


def counted(info: Info, n: int) -> None:
    """Records handed out, for the call's own audit event."""
    ctx = info.context
    if hasattr(ctx, "rows"):
        ctx.rows += n


async def run(step: Awaitable[T]) -> T:
    """A workflow refusal as a GraphQL error with its code (BAD_USER_INPUT, FORBIDDEN, NOT_FOUND)."""
    try:
        return await step
    except WorkflowError as err:
        raise GraphQLError(str(err), extensions={"code": err.code}) from None


def context_value(info: Info, name: str) -> Any:
    return getattr(info.context, name, None)
