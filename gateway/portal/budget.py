"""The explorer page's own rate budget (docs/portal.md §Limits): its catalogue and preview requests
count against a limiter key `explorer` per client address (`SHUQIAO_EXPLORER_RATE`), not against the
visitor's anonymous API allowance (`SHUQIAO_ANONYMOUS_RATE`), so browsing never uses up what a
script from the same address may call. An API key entered on the page still uses its own limits.

The preview endpoint is the open tier's GraphQL endpoint itself — same schema, executor, policies
and audit — with only the limit swapped."""

from __future__ import annotations

from starlette.requests import Request

from gateway.client_address import client_address
from gateway.graphql_http import GraphQLEndpoint
from gateway.identity.ratelimit import Decision
from gateway.problems import Problem
from gateway.state import GatewayState
from policies.model import Tier
from resolvers.context import Principal, PrincipalKind

PREVIEW_PATH = "/explore/api/graphql"


async def explorer_decision(state: GatewayState, request: Request) -> Decision:
    """The page's budget for this address; a refused burst is one audit event per window."""
    address = client_address(request) or "unknown"
    limiter = state.identity.limiter
    decision = await limiter.for_budget("explorer", state.settings.explorer_rate, address)
    if decision.allowed:
        return decision
    return Decision(
        False,
        decision.headers,
        decision.retry_after,
        decision.policy,
        record=await limiter.first_refusal(address, "explorer"),
    )


def rate_problem(decision: Decision) -> Problem:
    return Problem(
        429,
        f"Rate limit exceeded ({decision.policy}); retry after {decision.retry_after} s.",
        "RATE_LIMITED",
        decision.headers,
    )


class ExplorerPreview(GraphQLEndpoint):
    """`POST /explore/api/graphql`: the open tier for the explorer page, on the page's budget."""

    def __init__(self, state: GatewayState) -> None:
        super().__init__(Tier.OPEN, state)

    async def _limit(self, request: Request, principal: Principal) -> None:
        if principal.kind is not PrincipalKind.ANONYMOUS:
            await super()._limit(request, principal)
            return
        decision = await explorer_decision(self.state, request)
        if not decision.allowed:
            request.state.quiet_refusal = not decision.record
            raise rate_problem(decision)
        request.state.ratelimit_headers = decision.headers
