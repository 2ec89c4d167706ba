"""Failed authentication, limited per client address (SHUQIAO_AUTH_FAILURE_RATE, "20/minute").

Every endpoint that checks a credential (the OAuth endpoints, the sign-in page, the admin API,
the GraphQL tiers) asks `check` first and tells `failed` when the credential was wrong. Past the
limit the address gets 429 with Retry-After, and the credential is not even tried, so neither
guessing nor growing the audit log works without credentials. Of a refused burst only the first
attempt in each window is recorded (`Throttled.record`): the log grows by one event per window,
not per attempt. The counters live where the other limits do (Redis when configured)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.client_address import client_address
from gateway.identity.ratelimit import Decision, RateLimiter

if TYPE_CHECKING:
    from starlette.requests import Request

    from gateway.identity.audit import IdentityAudit

THROTTLED = "auth.throttled"


@dataclass(frozen=True, slots=True)
class Throttled:
    decision: Decision
    record: bool  # the first refusal of this window: the one the audit log keeps

    @property
    def message(self) -> str:
        return (
            f"Too many failed authentications from this address; retry after {self.decision.retry_after} s."
        )


class FailureGuard:
    def __init__(self, limiter: RateLimiter, audit: IdentityAudit) -> None:
        self.limiter = limiter
        self.audit = audit

    async def check(self, request: Request) -> Throttled | None:
        """None when this address may present a credential; else why not."""
        address = client_address(request) or "unknown"
        decision = await self.limiter.auth_failure_blocked(address)
        if decision.allowed:
            return None
        return Throttled(decision, await self.limiter.first_refusal(address))

    async def failed(self, request: Request) -> None:
        await self.limiter.auth_failed(client_address(request) or "unknown")

    async def record_refusal(
        self, request: Request, throttled: Throttled, endpoint: str, claimed: str | None = None
    ) -> None:
        """The identity event for a refused burst (one per window); raises AuditUnavailable."""
        if not throttled.record:
            return
        await self.audit.record(
            THROTTLED,
            status=429,
            principal_kind="anonymous",
            principal_id=claimed,
            error="rate_limited",
            detail={
                "endpoint": endpoint,
                "policy": throttled.decision.policy,
                "retry_after": throttled.decision.retry_after,
            },
            request=request,
        )
