"""Grants as a managed set: create (adds to the consumer's grants, never replaces them), list,
revoke, renew; and the active ones as policy values.

Every change bumps the catalogue version, so every worker reloads the grants within its
catalogue poll interval (a revocation is honoured within a second). How several grants of one
consumer combine is policy, not storage: `policies.model.GrantSet`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from catalogue.models import Department
from catalogue.service import bump_version, load_catalogue
from gateway.db import utc_aware
from gateway.grants.models import GrantRecord
from policies import decisions
from policies.model import PI, DatasetPolicy, FieldPolicy, Grant, Level, Open, RowScope, Share, Tier
from schema.naming import camel

STATES = ("active", "expiring", "expired", "revoked", "pending", "all")
DEFAULT_WARNING_DAYS = 30


class GrantError(ValueError):
    """A grant change that cannot be made; the message says what would be valid."""


def _listing(values: Iterable[str]) -> str:
    names = sorted(values)
    return ", ".join(names) if names else "(none)"


def scope_value(text: str | None) -> RowScope | None:
    """A stored row scope (JSON, `policies.workflow.check_scope`'s shape) as policy sees it."""
    if not text:
        return None
    doc = orjson.loads(text)
    return tuple(
        sorted((col, tuple(cond["in"]) if "in" in cond else (cond["eq"],)) for col, cond in doc.items())
    )


def to_policy(row: GrantRecord) -> Grant:
    return Grant(
        id=row.id or 0,
        dataset=row.dataset_code,
        consumer=row.consumer,
        tier=Tier(row.tier),
        fields=frozenset(row.fields.split()),
        clear_fields=frozenset(row.clear_fields.split()),
        purpose=row.purpose,
        expires_at=utc_aware(row.expires_at),
        approved=row.status == "approved",
        row_scope=scope_value(row.row_scope),
    )


# ---------------------------------------------------------------- state


def grant_state(row: GrantRecord, now: datetime, warning_days: int = DEFAULT_WARNING_DAYS) -> str:
    """revoked | pending | expired | expiring (valid, ends within the warning period) | active."""
    if row.status == "revoked":
        return "revoked"
    if row.status != "approved":
        return "pending"
    expires = utc_aware(row.expires_at)
    if expires is not None and expires <= now:
        return "expired"
    if expires is not None and expires <= now + timedelta(days=warning_days):
        return "expiring"
    return "active"


def _state_matches(state: str, wanted: str) -> bool:
    # "active" is every grant honoured now, those about to expire included
    return wanted == "all" or state == wanted or (wanted == "active" and state == "expiring")


def describe(
    row: GrantRecord, now: datetime | None = None, warning_days: int = DEFAULT_WARNING_DAYS
) -> dict[str, Any]:
    """A grant as the CLI's --json and (later) the admin API show it."""
    now = now or datetime.now(UTC)

    def iso(dt: datetime | None) -> str | None:
        aware = utc_aware(dt)
        return aware.isoformat() if aware is not None else None

    return {
        "id": row.id,
        "tier": row.tier,
        "dataset": row.dataset_code,
        "consumer": row.consumer,
        "fields": row.fields.split(),
        "clear_fields": row.clear_fields.split(),
        "purpose": row.purpose,
        "status": row.status,
        "state": grant_state(row, now, warning_days),
        "expires_at": iso(row.expires_at),
        "created_at": iso(row.created_at),
        "created_by": row.created_by,
        "revoked_at": iso(row.revoked_at),
        "revoked_by": row.revoked_by,
        "revoke_reason": row.revoke_reason,
        "renewed_at": iso(row.renewed_at),
        "renewed_by": row.renewed_by,
        "application_id": row.application_id,
        "row_scope": orjson.loads(row.row_scope) if row.row_scope else None,
    }


# ---------------------------------------------------------------- validation


@dataclass(frozen=True)
class _Target:
    dataset: DatasetPolicy
    fields: dict[str, FieldPolicy]  # the ones a grant on this tier can give, by snake_case name


async def _consumers(session: AsyncSession, tier: Tier) -> list[str]:
    if tier is Tier.SHARE:
        return list(await session.exec(select(Department.code)))
    from gateway.identity.models import Enterprise

    return list(await session.exec(select(Enterprise.code)))


async def _target(engine: AsyncEngine, tier: Tier, dataset: str) -> _Target:
    catalogue = await load_catalogue(engine)
    if tier is Tier.SHARE:
        eligible = {c for c, d in catalogue.datasets.items() if d.share is not Share.NONE}
    else:
        eligible = {c for c, d in catalogue.datasets.items() if d.open is not Open.NONE}
    spec = catalogue.datasets.get(dataset)
    if spec is None:
        raise GrantError(
            f"no dataset {dataset!r}; datasets that can be granted on the {tier.value} tier: "
            f"{_listing(eligible)}"
        )
    if dataset not in eligible:
        attr = "不予共享 (share: none)" if tier is Tier.SHARE else "不予开放 (open: none)"
        raise GrantError(
            f"dataset {dataset!r} is {attr}: no grant can give access to it on the {tier.value} tier; "
            f"datasets that can be granted there: {_listing(eligible)}"
        )
    policy = spec.policy()
    fields: dict[str, FieldPolicy] = {}
    for f in spec.fields:
        fp = f.policy()
        # only what a grant on this tier can give: a field 不予共享 / absent from the open view cannot
        if tier is Tier.SHARE:
            grantable = decisions.field_share(policy, fp) is not Share.NONE
        else:
            grantable = decisions.open_field_exists(policy, fp)
        if grantable:
            fields[f.name] = fp
    return _Target(policy, fields)


def _resolve(requested: Sequence[str], valid: dict[str, FieldPolicy], what: str, dataset: str) -> list[str]:
    """Field names as stored (snake_case). CamelCase (as GraphQL and FORBIDDEN_FIELD name them)
    is accepted and converted where it names exactly one field."""
    by_camel = {camel(n): n for n in valid}
    if len(by_camel) < len(valid):  # two names with one camelCase form: take snake_case only
        by_camel = {}
    out: list[str] = []
    unknown: list[str] = []
    for name in requested:
        snake = name if name in valid else by_camel.get(name, name)
        if snake in valid:
            if snake not in out:
                out.append(snake)
        else:
            unknown.append(name)
    if unknown:
        raise GrantError(f"{what} {_listing(unknown)} not grantable on {dataset}; valid: {_listing(valid)}")
    return out


# ---------------------------------------------------------------- changes


async def create_grant(
    engine: AsyncEngine,
    *,
    tier: Tier,
    dataset: str,
    consumer: str,
    fields: list[str] | None = None,
    clear_fields: list[str] | None = None,
    purpose: str,
    expires_at: datetime | None = None,
    created_by: str | None = None,
    application_id: int | None = None,
    row_scope: dict[str, Any] | None = None,
) -> GrantRecord:
    """Record an approved grant. It adds to the consumer's other grants (they combine).
    `application_id`: the application (申请) whose approval this is, if any; `row_scope`: the
    rows it opens (checked by the caller: `gateway.workflow.applications`), None for all."""
    async with AsyncSession(engine) as session:
        consumers = await _consumers(session, tier)
        if consumer not in consumers:
            kind = "department" if tier is Tier.SHARE else "enterprise (API-key holder)"
            raise GrantError(f"no {kind} {consumer!r}; {kind}s: {_listing(consumers)}")
        target = await _target(engine, tier, dataset)
        if not purpose.strip():
            raise GrantError("a grant needs a declared purpose (--purpose)")
        names = _resolve(fields or [], target.fields, "field(s)", dataset)
        clear = _resolve(clear_fields or [], target.fields, "clear field(s)", dataset)
        if tier is Tier.SHARE and not names:
            raise GrantError(
                f"a share-tier grant lists the fields it grants (--field); valid: {_listing(target.fields)}"
            )
        if tier is Tier.OPEN and clear:
            raise GrantError(
                "--clear is for the share tier: open-tier fields are served as the open view has them"
            )
        if not set(clear) <= set(names):
            raise GrantError(
                f"clear field(s) {_listing(set(clear) - set(names))} are not granted fields; "
                f"granted: {_listing(names)} (add them with --field)"
            )
        always_encrypted = [
            n for n in clear if target.fields[n].level >= Level.L4 or target.fields[n].pi is PI.SENSITIVE
        ]
        if always_encrypted:
            raise GrantError(
                f"{_listing(always_encrypted)} L4 / sensitive: always delivered encrypted to the "
                "consumer's SM2 key, never in clear; drop it from --clear"
            )
        if expires_at is not None and utc_aware(expires_at) <= datetime.now(UTC):
            raise GrantError("the expiry is in the past")
        row = GrantRecord(
            tier=tier.value,
            dataset_code=dataset,
            consumer=consumer,
            fields=" ".join(names),
            clear_fields=" ".join(clear),
            purpose=purpose,
            expires_at=expires_at,
            created_by=created_by,
            application_id=application_id,
            row_scope=orjson.dumps(row_scope, option=orjson.OPT_SORT_KEYS).decode() if row_scope else None,
        )
        session.add(row)
        await bump_version(session)  # grants change decisions: every worker reloads them
        await session.commit()
        await session.refresh(row)
    return row


async def _get(session: AsyncSession, grant_id: int) -> GrantRecord:
    row = await session.get(GrantRecord, grant_id)
    if row is None:
        raise GrantError(f"no grant {grant_id}; `shuqiao grant list --state all` lists them")
    return row


async def revoke_grant(
    engine: AsyncEngine, grant_id: int, *, reason: str, by: str | None = None
) -> GrantRecord:
    """Stop honouring a grant (every worker within its catalogue poll interval). The row stays,
    with who revoked it and why, for the audit trail."""
    if not reason.strip():
        raise GrantError("revoking a grant needs a reason (--reason)")
    async with AsyncSession(engine) as session:
        row = await _get(session, grant_id)
        if row.status == "revoked":
            raise GrantError(
                f"grant {grant_id} was already revoked at {utc_aware(row.revoked_at)}: {row.revoke_reason}"
            )
        row.status = "revoked"
        row.revoked_at = datetime.now(UTC)
        row.revoked_by = by
        row.revoke_reason = reason.strip()
        session.add(row)
        await bump_version(session)
        await session.commit()
        await session.refresh(row)
    return row


async def renew_grant(
    engine: AsyncEngine, grant_id: int, *, until: datetime, by: str | None = None
) -> GrantRecord:
    """Extend an approved grant (an expired one comes back into force). Renewal only extends:
    to end a grant early, revoke it (with a reason)."""
    now = datetime.now(UTC)
    until = utc_aware(until)
    async with AsyncSession(engine) as session:
        row = await _get(session, grant_id)
        if row.status != "approved":
            raise GrantError(f"grant {grant_id} is {row.status}; only an approved grant can be renewed")
        if until <= now:
            raise GrantError(f"the new expiry {until:%Y-%m-%d %H:%M %Z} is in the past")
        current = utc_aware(row.expires_at)
        if current is None:
            raise GrantError(f"grant {grant_id} never expires: there is nothing to renew")
        if until <= current:
            raise GrantError(
                f"grant {grant_id} already runs until {current:%Y-%m-%d %H:%M %Z}; renewal extends it "
                "(to end it early, revoke it)"
            )
        row.expires_at = until
        row.renewed_at = now
        row.renewed_by = by
        session.add(row)
        await bump_version(session)
        await session.commit()
        await session.refresh(row)
    return row


# ---------------------------------------------------------------- reading


async def get_grant(engine: AsyncEngine, grant_id: int) -> GrantRecord:
    async with AsyncSession(engine) as session:
        return await _get(session, grant_id)


async def list_grants(
    engine: AsyncEngine,
    *,
    consumer: str | None = None,
    dataset: str | None = None,
    tier: Tier | None = None,
    state: str = "active",
    warning_days: int = DEFAULT_WARNING_DAYS,
    now: datetime | None = None,
) -> list[GrantRecord]:
    """Grants by consumer, dataset, tier and state (`STATES`; "active" includes "expiring")."""
    if state not in STATES:
        raise GrantError(f"no state {state!r}; states: {', '.join(STATES)}")
    now = now or datetime.now(UTC)
    query = select(GrantRecord).order_by(col(GrantRecord.id))
    if consumer is not None:
        query = query.where(col(GrantRecord.consumer) == consumer)
    if dataset is not None:
        query = query.where(col(GrantRecord.dataset_code) == dataset)
    if tier is not None:
        query = query.where(col(GrantRecord.tier) == tier.value)
    async with AsyncSession(engine) as session:
        rows = (await session.exec(query)).all()
    return [r for r in rows if _state_matches(grant_state(r, now, warning_days), state)]


async def load_grants(engine: AsyncEngine) -> tuple[Grant, ...]:
    async with AsyncSession(engine) as session:
        rows = await session.exec(select(GrantRecord).where(col(GrantRecord.status) == "approved"))
        return tuple(to_policy(r) for r in rows)
