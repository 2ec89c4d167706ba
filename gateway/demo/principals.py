"""Demo principals (DESIGN.md section 5): a client per department, demo-bank's API key, the
demo grants, a security officer who signs in to /audit with a password (the `shuqiao-web`
client it signs in through is made too when the issuer is known, else at the first sign-in).
Secrets are generated, never fixed, and written once to a 0600 file."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.demo.catalogue import DEMO_ENTERPRISES, DEPARTMENTS, demo_grants
from gateway.grants.models import GrantRecord
from gateway.grants.service import create_grant
from gateway.identity.apikeys import create_api_key
from gateway.identity.clients import create_client, ensure_enterprise
from gateway.identity.users import UserService
from gateway.secrets import SecretHasher
from gateway.web.session import ensure_web_client

DEMO_OFFICER = "demo-officer"


async def setup_principals(
    engine: AsyncEngine, hasher: SecretHasher, credentials_file: Path, issuer: str | None = None
) -> dict[str, Any]:
    """Idempotent: once the credentials file exists, it is the record of what was made."""
    if issuer is not None:
        await ensure_web_client(engine, issuer)
    if credentials_file.exists():
        return json.loads(credentials_file.read_text())
    creds: dict[str, Any] = {"clients": {}, "api_keys": {}, "users": {}}
    for dept in DEPARTMENTS:
        client_id, secret = await create_client(
            engine, hasher, dept.code, name=f"{dept.name} 演示系统", client_id=f"demo-{dept.code}"
        )
        creds["clients"][dept.code] = {"client_id": client_id, "client_secret": secret}
    for ent in DEMO_ENTERPRISES:
        await ensure_enterprise(engine, ent.code, ent.name, ent.credit_code)
        key, _ = await create_api_key(engine, hasher, ent.code, name="demo")
        creds["api_keys"][ent.code] = key
    password = secrets.token_urlsafe(15)
    users = UserService(engine)
    if await users.get(DEMO_OFFICER) is None:
        await users.create(
            DEMO_OFFICER, password, roles=["security_officer"], display_name="演示安全管理员 Demo officer"
        )
        creds["users"]["security_officer"] = {"username": DEMO_OFFICER, "password": password}
    async with AsyncSession(engine) as session:
        existing = (await session.exec(select(func.count()).select_from(GrantRecord))).scalar_one()
    if existing == 0:
        for g in demo_grants():
            await create_grant(
                engine,
                tier=g.tier,
                dataset=g.dataset,
                consumer=g.consumer,
                fields=list(g.fields),
                clear_fields=list(g.clear_fields),
                purpose=g.purpose,
                expires_at=g.expires_at,
            )
    credentials_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(credentials_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(creds, fh, ensure_ascii=False, indent=2)
    return creds
