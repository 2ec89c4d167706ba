"""Creating grants and reading the active ones as policy values."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from catalogue.models import Dataset
from catalogue.service import CatalogueError, bump_version
from gateway.grants.models import GrantRecord
from policies.model import Grant, Tier


def _aware(dt: datetime | None) -> datetime | None:
    return dt.replace(tzinfo=UTC) if dt is not None and dt.tzinfo is None else dt


def to_policy(row: GrantRecord) -> Grant:
    return Grant(
        id=row.id or 0,
        dataset=row.dataset_code,
        consumer=row.consumer,
        tier=Tier(row.tier),
        fields=frozenset(row.fields.split()),
        clear_fields=frozenset(row.clear_fields.split()),
        purpose=row.purpose,
        expires_at=_aware(row.expires_at),
        approved=row.status == "approved",
    )


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
) -> GrantRecord:
    fields = fields or []
    clear_fields = clear_fields or []
    async with AsyncSession(engine) as session:
        ds = (await session.exec(select(Dataset).where(Dataset.code == dataset))).scalar_one_or_none()
        if ds is None:
            raise CatalogueError(f"no dataset {dataset!r}")
        if not purpose.strip():
            raise CatalogueError("a grant needs a declared purpose")
        if not set(clear_fields) <= set(fields):
            raise CatalogueError("clear fields must also be granted fields")
        row = GrantRecord(
            tier=tier.value,
            dataset_code=dataset,
            consumer=consumer,
            fields=" ".join(fields),
            clear_fields=" ".join(clear_fields),
            purpose=purpose,
            expires_at=expires_at,
        )
        session.add(row)
        await bump_version(session)  # grants change decisions: every worker reloads them
        await session.commit()
        await session.refresh(row)
    return row


async def load_grants(engine: AsyncEngine) -> tuple[Grant, ...]:
    async with AsyncSession(engine) as session:
        rows = (await session.exec(select(GrantRecord).where(GrantRecord.status == "approved"))).scalars()
        return tuple(to_policy(r) for r in rows)
