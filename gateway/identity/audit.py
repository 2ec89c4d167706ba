"""Identity events on the audit log: every token issued, refused, rotated, revoked or
introspected, every sign-in, every consent decision, every administrative action (clients,
people, trusted issuers, API keys; from the admin API or the CLI: `record_admin_event`).

Each is one `AccessEvent` with `tier="identity"` and `operation_name` such as
`token.issue` or `login.failure`. What the event is about goes in the existing columns
(principal = the client, person or administrator acting; consumer = their department or
enterprise; error_codes = the OAuth error) and the rest in `reads` as one entry
`{"identity": {...}}` (grant type, scopes, token `jti`, refresh family, API-key prefix).
Never a token, a secret, an API key or a password: only identifiers that are safe to log.

Recording is fail closed: `IdentityAudit.record` raises `AuditUnavailable` when the event
cannot be written, and the callers withhold what they were about to hand out."""

from __future__ import annotations

import getpass
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from gateway.access_log import AccessEvent, AccessLog
from gateway.client_address import client_address

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine
    from starlette.requests import Request

    from gateway.identity.models import ApiKey
    from gateway.settings import Settings

TIER = "identity"


class AuditUnavailable(Exception):
    """The identity event could not be recorded; withhold the answer."""


class IdentityAudit:
    def __init__(self, sink: AccessLog | None) -> None:
        self.sink = sink

    async def record(
        self,
        operation: str,
        *,
        status: int,
        principal_kind: str,
        principal_id: str | None,
        consumer: str | None = None,
        subject: str | None = None,
        error: str | None = None,
        detail: dict[str, Any] | None = None,
        request: Request | None = None,
        request_id: str | None = None,
        started: float | None = None,
    ) -> None:
        if self.sink is None:
            return
        if request_id is None:
            request_id = getattr(request.state, "request_id", "") if request is not None else ""
        event = AccessEvent(
            request_id=request_id or f"identity-{uuid.uuid4().hex}",
            tier=TIER,
            principal_kind=principal_kind,
            principal_id=principal_id or "unknown",
            consumer=consumer,
            client_address=client_address(request),
            operation_name=operation,
            operation_type=operation.split(".", 1)[0],
            query_digest=None,
            status=status,
            error_codes=[error] if error else [],
            latency_ms=round((time.perf_counter() - started) * 1000, 3) if started is not None else 0.0,
            reads=[{"identity": {k: v for k, v in (detail or {}).items() if v is not None}}],
            subject=subject,
        )
        try:
            await self.sink.record(event)
        except Exception as err:  # fail closed: the caller withholds its answer
            raise AuditUnavailable(str(err)) from err


def describe_key(row: ApiKey) -> dict[str, Any]:
    """What an API-key event says about the key: never the key or its hash."""
    return {
        "prefix": row.prefix,
        "enterprise": row.enterprise_code,
        "datasets": sorted((row.datasets or "").split()) or None,
        "rate_per_minute": row.rate_per_minute,
        "daily_quota": row.daily_quota,
        "expires_at": row.expires_at.isoformat() if row.expires_at else None,
        "replaced_by": row.replaced_by,
    }


def key_change(row: ApiKey, previous: ApiKey | None = None) -> dict[str, Any]:
    """An API-key event's detail; a rotation also names the key it replaces."""
    detail = describe_key(row)
    if previous is not None:
        detail["previous_prefix"] = previous.prefix
        detail["previous_expires_at"] = previous.expires_at.isoformat() if previous.expires_at else None
    return detail


async def record_admin_event(
    audit: IdentityAudit,
    operation: str,
    *,
    status: int,
    principal_kind: str,
    principal_id: str | None,
    subject: str | None = None,
    target: str | None = None,
    consumer: str | None = None,
    detail: dict[str, Any] | None = None,
    error: str | None = None,
    request: Request | None = None,
    started: float | None = None,
    undo: Callable[[], Awaitable[Any]] | None = None,
) -> None:
    """The one path for every administrative action, from the admin API and from the CLI:
    who (principal), what (`admin.client.create`, `apikey.rotate`, ...), on what (`target`:
    a client id, username, issuer, key prefix) and the outcome. `detail` is a `describe_*`
    of the row, which never holds a secret, hash or key material. If the event cannot be
    recorded, `undo` takes back what was just handed out (a key revoked, a client disabled)
    before `AuditUnavailable` propagates: nothing issued goes unrecorded."""
    try:
        await audit.record(
            operation,
            status=status,
            principal_kind=principal_kind,
            principal_id=principal_id,
            consumer=consumer,
            subject=subject,
            error=error,
            detail={"target": target, **(detail or {})},
            request=request,
            started=started,
        )
    except AuditUnavailable:
        if undo is not None:
            await undo()
        raise


def cli_audit(settings: Settings, engine: AsyncEngine) -> IdentityAudit:
    """The audit sink the `shuqiao client|user|apikey|issuer …` commands write to: the gateway's own."""
    from gateway.access_log import LoggingAccessLog
    from gateway.audit import ChainedAuditLog, VariableCipher
    from gateway.secrets import load_master_key

    if settings.audit_store == "log":
        return IdentityAudit(LoggingAccessLog())
    cipher = VariableCipher.from_master_key(load_master_key(settings.master_key_file))
    return IdentityAudit(ChainedAuditLog(engine, cipher))


def cli_operator() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no login name (containers): still say it came from the CLI
        return "cli"
