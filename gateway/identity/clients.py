"""Department OAuth clients and enterprises."""

from __future__ import annotations

import secrets

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.catalogue.models import Department
from gateway.identity.models import Enterprise, OAuthClient
from gateway.identity.oauth import SCOPES
from gateway.secrets import SecretHasher


class IdentityError(ValueError):
    pass


async def create_client(
    engine: AsyncEngine,
    hasher: SecretHasher,
    department: str,
    *,
    name: str = "",
    scopes: list[str] | None = None,
    client_id: str | None = None,
) -> tuple[str, str]:
    """Register a department client; returns (client_id, secret). The secret is not stored."""
    scopes = scopes or ["share:read"]
    unknown = set(scopes) - set(SCOPES)
    if unknown:
        raise IdentityError(f"unknown scopes: {', '.join(sorted(unknown))}")
    client_id = client_id or f"{department}-{secrets.token_hex(4)}"
    secret = secrets.token_urlsafe(32)
    async with AsyncSession(engine) as session:
        if await session.get(Department, department) is None:
            raise IdentityError(f"no department {department!r}")
        if await session.get(OAuthClient, client_id) is not None:
            raise IdentityError(f"client {client_id!r} exists")
        session.add(
            OAuthClient(
                client_id=client_id,
                secret_hash=hasher.hash(secret),
                name=name,
                department_code=department,
                scopes=" ".join(scopes),
            )
        )
        await session.commit()
    return client_id, secret


async def ensure_enterprise(
    engine: AsyncEngine, code: str, name: str, credit_code: str | None = None
) -> None:
    async with AsyncSession(engine) as session:
        if await session.get(Enterprise, code) is None:
            session.add(Enterprise(code=code, name=name, credit_code=credit_code))
            await session.commit()
