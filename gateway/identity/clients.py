"""Department OAuth clients, enterprises and trusted external issuers."""

from __future__ import annotations

import secrets
from typing import Any

import orjson
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from catalogue.models import Department, utcnow
from gateway.identity.models import Enterprise, OAuthClient, TrustedIssuer, end_credentials_of
from gateway.identity.oauth import SCOPES, SECRET_METHODS
from gateway.secrets import SecretHasher

KNOWN_METHODS = {"client_secret_basic", "client_secret_post", "private_key_jwt", "none"}
# the last: RFC 8693 token exchange, for federation routers (gateway.identity.oauth)
KNOWN_GRANTS = {
    "client_credentials",
    "authorization_code",
    "refresh_token",
    "urn:ietf:params:oauth:grant-type:token-exchange",
}


class IdentityError(ValueError):
    pass


def _public_jwks(jwks: dict[str, Any] | str) -> str:
    data: Any = orjson.loads(jwks) if isinstance(jwks, str) else jwks  # import_key_set checks its shape
    if "keys" not in data:
        data = {"keys": [data]}
    if any(k.get("kty") == "oct" or "d" in k for k in data["keys"]):
        raise IdentityError("register public keys only (no symmetric or private keys)")
    try:
        KeySet.import_key_set(data)
    except (JoseError, ValueError, TypeError) as err:
        raise IdentityError(f"not a usable JWK set: {err}") from None
    return orjson.dumps(data).decode()


async def create_client(
    engine: AsyncEngine,
    hasher: SecretHasher,
    department: str,
    *,
    name: str = "",
    scopes: list[str] | None = None,
    client_id: str | None = None,
    auth_methods: list[str] | None = None,
    grant_types: list[str] | None = None,
    redirect_uris: list[str] | None = None,
    jwks: dict[str, Any] | str | None = None,
) -> tuple[str, str | None]:
    """Register a client; returns (client_id, secret or None). The secret is not stored."""
    scopes = scopes or ["share:read"]
    unknown = set(scopes) - set(SCOPES)
    if unknown:
        raise IdentityError(f"unknown scopes: {', '.join(sorted(unknown))}")
    methods = auth_methods or (["private_key_jwt"] if jwks else list(SECRET_METHODS))
    if set(methods) - KNOWN_METHODS:
        raise IdentityError(f"unknown auth methods: {', '.join(sorted(set(methods) - KNOWN_METHODS))}")
    grants = grant_types or ["client_credentials"]
    if set(grants) - KNOWN_GRANTS:
        raise IdentityError(f"unknown grant types: {', '.join(sorted(set(grants) - KNOWN_GRANTS))}")
    if "authorization_code" in grants and not redirect_uris:
        raise IdentityError("the authorization_code grant needs at least one --redirect-uri")
    if "private_key_jwt" in methods and not jwks:
        raise IdentityError("private_key_jwt needs the client's public keys (--jwks)")
    if "none" in methods and "client_credentials" in grants:
        raise IdentityError("a public client (none) cannot use client_credentials")
    client_id = client_id or f"{department}-{secrets.token_hex(4)}"
    secret = secrets.token_urlsafe(32) if set(methods) & set(SECRET_METHODS) else None
    async with AsyncSession(engine) as session:
        if await session.get(Department, department) is None:
            raise IdentityError(f"no department {department!r}")
        if await session.get(OAuthClient, client_id) is not None:
            raise IdentityError(f"client {client_id!r} exists")
        session.add(
            OAuthClient(
                client_id=client_id,
                secret_hash=hasher.hash(secret) if secret else "",
                name=name,
                department_code=department,
                scopes=" ".join(scopes),
                auth_methods=" ".join(methods),
                grant_types=" ".join(grants),
                redirect_uris=" ".join(redirect_uris or []),
                jwks=_public_jwks(jwks) if jwks else None,
            )
        )
        await session.commit()
    return client_id, secret


def describe_client(row: OAuthClient) -> dict[str, Any]:
    return {
        "client_id": row.client_id,
        "name": row.name,
        "department": row.department_code,
        "scopes": row.scopes.split(),
        "auth_methods": row.auth_methods.split(),
        "grant_types": row.grant_types.split(),
        "redirect_uris": row.redirect_uris.split(),
        "has_jwks": bool(row.jwks),
        "disabled": row.disabled,
    }


async def list_clients(engine: AsyncEngine) -> list[OAuthClient]:
    async with AsyncSession(engine) as s:
        return list((await s.exec(select(OAuthClient).order_by(col(OAuthClient.client_id)))).all())


async def set_client_disabled(engine: AsyncEngine, client_id: str, disabled: bool) -> OAuthClient:
    async with AsyncSession(engine) as s:
        row = await s.get(OAuthClient, client_id)
        if row is None:
            raise IdentityError(f"no client {client_id!r}")
        row.disabled = disabled
        if disabled:
            row.tokens_not_before = utcnow()
            await s.exec(end_credentials_of(client_id=client_id))
        s.add(row)
        await s.commit()
        await s.refresh(row)
        return row


async def rotate_client_secret(engine: AsyncEngine, hasher: SecretHasher, client_id: str) -> tuple[str, str]:
    """A new secret for a client that authenticates with one; the old one stops working at once.
    Returns (the new secret, shown once; the previous hash, only for `restore_client_secret`
    when the change cannot be recorded)."""
    async with AsyncSession(engine) as s:
        row = await s.get(OAuthClient, client_id)
        if row is None:
            raise IdentityError(f"no client {client_id!r}")
        if not set(row.auth_methods.split()) & set(SECRET_METHODS):
            raise IdentityError(f"client {client_id!r} does not authenticate with a secret")
        secret = secrets.token_urlsafe(32)
        previous, row.secret_hash = row.secret_hash, hasher.hash(secret)
        s.add(row)
        await s.commit()
        return secret, previous


async def restore_client_secret(engine: AsyncEngine, client_id: str, previous_hash: str) -> None:
    async with AsyncSession(engine) as s:
        row = await s.get(OAuthClient, client_id)
        if row is not None:
            row.secret_hash = previous_hash
            s.add(row)
            await s.commit()


async def ensure_enterprise(
    engine: AsyncEngine, code: str, name: str, credit_code: str | None = None
) -> None:
    async with AsyncSession(engine) as session:
        if await session.get(Enterprise, code) is None:
            session.add(Enterprise(code=code, name=name, credit_code=credit_code))
            await session.commit()


async def add_issuer(
    engine: AsyncEngine,
    issuer: str,
    discovery_url: str,
    audience: str,
    *,
    department_claim: str = "dept",
    department_map: dict[str, str] | None = None,
    roles_claim: str = "roles",
    scopes: list[str] | None = None,
    algorithms: list[str] | None = None,
) -> TrustedIssuer:
    mapping = department_map or {}
    async with AsyncSession(engine) as s:
        for dept in set(mapping.values()):
            if await s.get(Department, dept) is None:
                raise IdentityError(f"no department {dept!r}")
        row = await s.get(TrustedIssuer, issuer) or TrustedIssuer(
            issuer=issuer, discovery_url="", audience=""
        )
        row.discovery_url = discovery_url
        row.audience = audience
        row.department_claim = department_claim
        row.department_map = orjson.dumps(mapping).decode()
        row.roles_claim = roles_claim
        row.scopes = " ".join(scopes or ["share:read"])
        row.algorithms = " ".join(algorithms or ["RS256", "ES256", "PS256"])
        row.enabled = True
        s.add(row)
        await s.commit()
        await s.refresh(row)
        return row


async def list_issuers(engine: AsyncEngine) -> list[TrustedIssuer]:
    async with AsyncSession(engine) as s:
        return list((await s.exec(select(TrustedIssuer))).all())


async def remove_issuer(engine: AsyncEngine, issuer: str) -> None:
    async with AsyncSession(engine) as s:
        row = await s.get(TrustedIssuer, issuer)
        if row is None:
            raise IdentityError(f"no trusted issuer {issuer!r}")
        await s.delete(row)
        await s.commit()


def describe_issuer(row: TrustedIssuer) -> dict[str, Any]:
    return {
        "issuer": row.issuer,
        "discovery_url": row.discovery_url,
        "audience": row.audience,
        "department_claim": row.department_claim,
        "department_map": orjson.loads(row.department_map),
        "roles_claim": row.roles_claim,
        "scopes": row.scopes.split(),
        "algorithms": row.algorithms.split(),
        "enabled": row.enabled,
    }
