"""An enterprise's own affairs, as its users (role `enterprise_user`) and the CLI act on them: its
API keys (create — the secret returned once —, rotate, revoke), its grants on the open tier, and
its calls per key per day against its limits.

Ownership is checked here, on every call: an enterprise's user acts for their own enterprise
only (read off their account, `Actor.enterprise`), an administrator names the enterprise; a key
of another enterprise is "not found", never "not yours", so prefixes cannot be probed. Key
changes go through `gateway.identity.apikeys` and are recorded like the admin API's
(`gateway.identity.audit.record_admin_event`: `apikey.create|rotate|revoke`, the key's prefix
and limits, never the key or its hash); a key whose event cannot be written is revoked before
`AuditUnavailable` propagates. Applications are the workflow's (`gateway.workflow.applications`,
tier "open"): one model for departments and enterprises.

An enterprise cannot set its own limits: a key it makes gets the gateway's defaults
(`SHUQIAO_API_KEY_RATE_PER_MINUTE`, `SHUQIAO_API_KEY_DAILY_QUOTA`), a rotated one keeps what an
administrator gave the old one (`shuqiao apikey create --daily-quota …`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col
from sqlmodel import select as model_select  # typed rows from session.exec; the Core report uses select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.audit.models import AuditEvent
from gateway.db import table_of
from gateway.grants import service as grants
from gateway.grants.models import GrantRecord
from gateway.identity import apikeys
from gateway.identity.audit import IdentityAudit, key_change, record_admin_event
from gateway.identity.models import ApiKey, Enterprise
from gateway.secrets import SecretHasher
from policies.model import Tier
from policies.workflow import Actor

MAX_ACTIVE_KEYS = 10  # per enterprise; revoke one to make another
MAX_OVERLAP_HOURS = 168  # a rotated key keeps working at most a week
MAX_EXPIRY_DAYS = 730
MAX_USAGE_DAYS = 90
CST = timezone(timedelta(hours=8))  # usage days are China Standard Time calendar days
EVENTS = table_of(AuditEvent)


class EnterpriseError(ValueError):
    """A request that cannot be met; `code` is the error code (BAD_USER_INPUT, FORBIDDEN,
    NOT_FOUND, CONFLICT) and the message says what would be valid."""

    def __init__(self, message: str, code: str = "BAD_USER_INPUT") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class KeyDefaults:
    """The gateway's limits for a key that sets none."""

    rate_per_minute: int = 120
    daily_quota: int = 10_000


def acting_for(actor: Actor, enterprise: str | None = None) -> str:
    """The enterprise `actor` acts for: an enterprise's user their own (naming another is
    FORBIDDEN), an administrator the one named."""
    if actor.enterprise is not None:
        if enterprise not in (None, "", actor.enterprise):
            raise EnterpriseError(
                f"you act for {actor.enterprise}; only an administrator may act for {enterprise}", "FORBIDDEN"
            )
        return actor.enterprise
    if actor.admin:
        if not enterprise:
            raise EnterpriseError("an administrator names the enterprise (enterprise)")
        return enterprise
    raise EnterpriseError(
        "only an enterprise's user (role enterprise_user) or an administrator may do this", "FORBIDDEN"
    )


async def enterprise_row(engine: AsyncEngine, code: str) -> Enterprise:
    async with AsyncSession(engine) as session:
        row = await session.get(Enterprise, code)
    if row is None:
        raise EnterpriseError(f"no enterprise {code!r}", "NOT_FOUND")
    return row


async def list_keys(engine: AsyncEngine, enterprise: str) -> list[ApiKey]:
    return await apikeys.list_api_keys(engine, enterprise)


async def owned_key(engine: AsyncEngine, enterprise: str, prefix: str) -> ApiKey:
    """The enterprise's key with this prefix; another's (or none) is NOT_FOUND alike."""
    async with AsyncSession(engine) as session:
        row = (await session.exec(model_select(ApiKey).where(col(ApiKey.prefix) == prefix))).one_or_none()
    if row is None or row.enterprise_code != enterprise:
        raise EnterpriseError(f"{enterprise} has no API key {prefix!r}", "NOT_FOUND")
    return row


async def granted_datasets(engine: AsyncEngine, enterprise: str) -> list[str]:
    rows = await grants.list_grants(engine, consumer=enterprise, tier=Tier.OPEN, state="active")
    return sorted({r.dataset_code for r in rows})


async def _record(
    audit: IdentityAudit | None,
    actor: Actor,
    operation: str,
    row: ApiKey,
    previous: ApiKey | None = None,
    undo: Any = None,
) -> None:
    if audit is None:
        return
    await record_admin_event(
        audit,
        operation,
        status=200,
        principal_kind=actor.kind,
        principal_id=actor.principal,
        target=row.prefix,
        consumer=row.enterprise_code,
        detail={**key_change(row, previous), "acting_for": row.enterprise_code},
        undo=undo,
    )


async def create_key(
    engine: AsyncEngine,
    hasher: SecretHasher,
    audit: IdentityAudit | None,
    actor: Actor,
    *,
    enterprise: str | None = None,
    name: str = "",
    expires_days: int | None = None,
    datasets: list[str] | None = None,
) -> tuple[str, ApiKey]:
    """A new key (the secret is in the answer, once). `datasets` limits it to some of the
    enterprise's granted datasets (none: every dataset it is granted, now or later)."""
    code = acting_for(actor, enterprise)
    await enterprise_row(engine, code)
    if expires_days is not None and not 1 <= expires_days <= MAX_EXPIRY_DAYS:
        raise EnterpriseError(f"expiresDays is 1 to {MAX_EXPIRY_DAYS} (or none: no expiry)")
    wanted = sorted(set(datasets or []))
    if wanted:
        granted = await granted_datasets(engine, code)
        unknown = [d for d in wanted if d not in granted]
        if unknown:
            raise EnterpriseError(
                f"{code} holds no grant on {', '.join(unknown)}; granted: {', '.join(granted) or '(none)'}"
            )
    active = [k for k in await list_keys(engine, code) if apikeys.describe(k)["state"] == "active"]
    if len(active) >= MAX_ACTIVE_KEYS:
        raise EnterpriseError(
            f"{code} has {len(active)} active keys, the most allowed; revoke one first", "CONFLICT"
        )
    expires = datetime.now(UTC) + timedelta(days=expires_days) if expires_days else None
    key, row = await apikeys.create_api_key(
        engine, hasher, code, name.strip()[:200], expires, datasets=wanted
    )
    await _record(audit, actor, "apikey.create", row, undo=lambda: apikeys.revoke_api_key(engine, row.prefix))
    return key, row


async def rotate_key(
    engine: AsyncEngine,
    hasher: SecretHasher,
    audit: IdentityAudit | None,
    actor: Actor,
    prefix: str,
    *,
    enterprise: str | None = None,
    overlap_hours: float = 24.0,
) -> tuple[str, ApiKey, ApiKey]:
    """A new key with the old one's scope and limits; the old one works on for the overlap."""
    code = acting_for(actor, enterprise)
    old = await owned_key(engine, code, prefix)
    if not 0 <= overlap_hours <= MAX_OVERLAP_HOURS:
        raise EnterpriseError(f"overlapHours is 0 to {MAX_OVERLAP_HOURS}")
    state = apikeys.describe(old)["state"]
    if state != "active":
        raise EnterpriseError(f"API key {prefix} is {state}; only an active key is rotated", "CONFLICT")
    key, new, previous = await apikeys.rotate_api_key(engine, hasher, prefix, timedelta(hours=overlap_hours))
    await _record(
        audit, actor, "apikey.rotate", new, previous, undo=lambda: apikeys.revoke_api_key(engine, new.prefix)
    )
    return key, new, previous


async def revoke_key(
    engine: AsyncEngine,
    audit: IdentityAudit | None,
    actor: Actor,
    prefix: str,
    *,
    enterprise: str | None = None,
) -> ApiKey:
    """Refused on every worker within the key cache's lifetime (two seconds). A revocation
    stands even if its event cannot be written (taking it back would re-open access)."""
    code = acting_for(actor, enterprise)
    old = await owned_key(engine, code, prefix)
    if old.revoked_at is not None:
        raise EnterpriseError(f"API key {prefix} is already revoked", "CONFLICT")
    row = await apikeys.revoke_api_key(engine, prefix)
    await _record(audit, actor, "apikey.revoke", row)
    return row


async def list_grants(engine: AsyncEngine, enterprise: str, state: str = "all") -> list[GrantRecord]:
    try:
        return await grants.list_grants(engine, consumer=enterprise, tier=Tier.OPEN, state=state)
    except grants.GrantError as err:
        raise EnterpriseError(str(err)) from None


# ---------------------------------------------------------------- usage


def _days(days: int, now: datetime) -> list[tuple[str, datetime, datetime]]:
    """The last `days` calendar days (China Standard Time), oldest first: (date, start, end) in UTC."""
    today = now.astimezone(CST).replace(hour=0, minute=0, second=0, microsecond=0)
    out = []
    for back in range(days - 1, -1, -1):
        start = today - timedelta(days=back)
        out.append(
            (start.date().isoformat(), start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC))
        )
    return out


async def usage(
    engine: AsyncEngine,
    enterprise: str,
    *,
    days: int = 14,
    defaults: KeyDefaults | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Calls per key per day from the audit log (the open tier's events of the enterprise's
    keys: queries and downloads; `refused` those answered with an error — HTTP 400 or above,
    rate limits included, or a GraphQL error such as FORBIDDEN;
    `rows` the records delivered), and each key's limits. One query, bucketed in SQL by day."""
    if not 1 <= days <= MAX_USAGE_DAYS:
        raise EnterpriseError(f"days is 1 to {MAX_USAGE_DAYS}")
    defaults = defaults or KeyDefaults()
    now = now or datetime.now(UTC)
    buckets = _days(days, now)
    first, last = buckets[0][1], buckets[-1][2]
    when = EVENTS.c.occurred_at
    day = case(*((when < end, label) for label, _, end in buckets), else_=buckets[-1][0])
    query = (
        select(
            EVENTS.c.principal_id,
            day.label("day"),
            func.count(),
            func.sum(case(((EVENTS.c.status >= 400) | (EVENTS.c.error_codes != "[]"), 1), else_=0)),
            func.coalesce(func.sum(EVENTS.c.row_count), 0),
        )
        .where(
            EVENTS.c.tier == "open",
            EVENTS.c.principal_kind == "enterprise",
            EVENTS.c.consumer == enterprise,
            when >= first,
            when < last,
        )
        .group_by(EVENTS.c.principal_id, day)
    )
    async with engine.connect() as conn:
        counted = (await conn.execute(query)).all()
    by_key: dict[str, dict[str, tuple[int, int, int]]] = {}
    for prefix, label, calls, refused, rows in counted:
        by_key.setdefault(str(prefix), {})[str(label)] = (int(calls), int(refused or 0), int(rows or 0))
    keys: list[dict[str, Any]] = []
    for row in await list_keys(engine, enterprise):
        seen = by_key.pop(row.prefix, {})
        described = apikeys.describe(row)
        if described["state"] != "active" and not seen:
            continue  # an old key with no calls in the window says nothing
        quota = row.daily_quota or defaults.daily_quota
        per_day: list[dict[str, Any]] = [
            {
                "date": label,
                "calls": seen.get(label, (0, 0, 0))[0],
                "refused": seen.get(label, (0, 0, 0))[1],
                "rows": seen.get(label, (0, 0, 0))[2],
            }
            for label, _, _ in buckets
        ]
        keys.append(
            {
                "prefix": row.prefix,
                "name": row.name,
                "state": described["state"],
                "rate_per_minute": row.rate_per_minute or defaults.rate_per_minute,
                "daily_quota": quota,
                "calls_today": per_day[-1]["calls"],
                "remaining_today": max(0, quota - per_day[-1]["calls"]),
                "days": per_day,
            }
        )
    return {
        "enterprise": enterprise,
        "timezone": "Asia/Shanghai",
        "from": buckets[0][0],
        "to": buckets[-1][0],
        "keys": keys,
        "total": [
            {"date": label, "calls": sum(k["days"][i]["calls"] for k in keys)}
            for i, (label, _, _) in enumerate(buckets)
        ],
    }
