"""What the GraphQL endpoints ask identity after knowing who calls: may this request run
now (rate limits and quotas), and which grants may an API key use (its scopes)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from starlette.requests import Request

from gateway.client_address import client_address
from gateway.identity.ratelimit import Decision, RateLimiter
from policies.model import Grant
from resolvers.context import Principal, PrincipalKind


async def check_rate(limiter: RateLimiter, request: Request, principal: Principal) -> Decision:
    if principal.kind is PrincipalKind.ENTERPRISE:
        limits = getattr(request.state, "api_key_limits", (None, None))
        return await limiter.for_api_key(principal.id, *limits)
    if principal.kind is PrincipalKind.ANONYMOUS:
        address = client_address(request) or "unknown"
        decision = await limiter.for_address(address)
        if decision.allowed:
            return decision
        # without credentials, a refused burst is one audit event per window, not one per request
        return replace(decision, record=await limiter.first_refusal(address, "anonymous"))
    if principal.kind is PrincipalKind.DEPARTMENT:
        return await limiter.for_client(principal.id)
    return Decision(True)


def restrict_grants(principal: Principal, grants: Iterable[Grant]) -> tuple[Grant, ...]:
    """An API key scoped to some datasets uses only its enterprise's grants on those."""
    if principal.kind is not PrincipalKind.ENTERPRISE or not principal.scopes:
        return tuple(grants)
    return tuple(g for g in grants if g.consumer != principal.consumer or g.dataset in principal.scopes)
