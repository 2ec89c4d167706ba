"""Grant changes on the audit log, through the same path as the identity events (one
`AccessEvent`, tier "identity", operation `grant.create|revoke|renew|list`, what it is about in
`reads[0]["identity"]`): who gave or took away access to what, when, and why."""

from __future__ import annotations

from typing import Any

from gateway.grants.models import GrantRecord
from gateway.identity.audit import IdentityAudit


def grant_detail(row: GrantRecord) -> dict[str, Any]:
    return {
        "grant_id": row.id,
        "tier": row.tier,
        "dataset": row.dataset_code,
        "fields": row.fields.split(),
        "clear_fields": row.clear_fields.split(),
        "purpose": row.purpose,
        "status": row.status,
        "expires_at": row.expires_at.isoformat() if row.expires_at else None,
        "revoke_reason": row.revoke_reason,
    }


async def record_grant_event(
    audit: IdentityAudit,
    operation: str,
    *,
    principal_kind: str,
    principal_id: str,
    row: GrantRecord | None = None,
    detail: dict[str, Any] | None = None,
    consumer: str | None = None,
) -> None:
    """Raises gateway.identity.audit.AuditUnavailable when the event cannot be written."""
    await audit.record(
        operation,
        status=200,
        principal_kind=principal_kind,
        principal_id=principal_id,
        consumer=row.consumer if row is not None else consumer,
        detail={**(grant_detail(row) if row is not None else {}), **(detail or {})},
    )
