"""Demo principals (DESIGN.md section 5): a client per department, the demo enterprises' API
keys, the demo grants, people (police's and tax's data stewards, an hrss developer, a security
officer, demo-credit's enterprise user) and applications in each
state (DESIGN.md section 9), a security officer who signs in to /audit with a password (the
`shuqiao-web` client it signs in through is made too when the issuer is known, else at the first
sign-in). Secrets are generated, never fixed, and written once to a 0600 file."""

from __future__ import annotations

import json
import os
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.demo.catalogue import DEMO_ENTERPRISES, DEPARTMENTS, demo_grants
from gateway.grants.models import GrantRecord
from gateway.grants.service import create_grant
from gateway.identity.apikeys import create_api_key
from gateway.identity.clients import create_client, ensure_enterprise
from gateway.identity.users import UserService
from gateway.secrets import SecretHasher
from gateway.web.session import ensure_web_client
from gateway.workbench.client import ensure_workbench_client
from gateway.workflow import applications as apps
from gateway.workflow.demo import seed_workflow_demo
from gateway.workflow.models import Application
from policies.workflow import Actor

# username -> (roles, department, display name): people who sign in through /oauth/authorize
DEMO_PEOPLE: dict[str, tuple[list[str], str | None, str]] = {
    "police-steward": (["steward"], "police", "公安厅数据管理员（演示）"),
    "hrss-developer": (["developer"], "hrss", "人社厅开发者（演示）"),
    "demo-officer": (["security_officer"], None, "演示安全管理员 Demo officer"),  # signs in to /audit
    "tax-steward": (["steward"], "tax", "税务局数据管理员（演示）"),  # decides on tax_credit_rating
}
# username -> (enterprise, display name): enterprises' people, who sign in to /enterprise
DEMO_ENTERPRISE_PEOPLE: dict[str, tuple[str, str]] = {
    "credit-developer": ("demo-credit", "示例征信开发者（演示）"),
}


async def setup_principals(
    engine: AsyncEngine, hasher: SecretHasher, credentials_file: Path, issuer: str | None = None
) -> dict[str, Any]:
    """Idempotent: once the credentials file exists, it is the record of what was made."""
    if issuer is not None:
        await ensure_web_client(engine, issuer)
        await ensure_workbench_client(engine, issuer)  # the query workbench's sign-in
    # demands and quality reports (idempotent on their own: a store upgraded later gets them too)
    await seed_workflow_demo(engine)
    if credentials_file.exists():
        recorded: dict[str, Any] = json.loads(credentials_file.read_text())
        if await _newer_people(engine, hasher, recorded):  # a store made before they were in the demo
            _write(credentials_file, recorded, replace=True)
        return recorded
    creds: dict[str, Any] = {"clients": {}, "api_keys": {}}
    for dept in DEPARTMENTS:
        client_id, secret = await create_client(
            engine, hasher, dept.code, name=f"{dept.name} 演示系统", client_id=f"demo-{dept.code}"
        )
        creds["clients"][dept.code] = {"client_id": client_id, "client_secret": secret}
    for ent in DEMO_ENTERPRISES:
        await ensure_enterprise(engine, ent.code, ent.name, ent.credit_code)
        key, _ = await create_api_key(engine, hasher, ent.code, name="demo")
        creds["api_keys"][ent.code] = key
    async with AsyncSession(engine) as session:
        existing = (await session.exec(select(func.count()).select_from(GrantRecord))).one()
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
    creds["users"] = {}
    await _newer_people(engine, hasher, creds)
    await seed_applications(engine)
    _write(credentials_file, creds)
    return creds


def _write(path: Path, creds: dict[str, Any], *, replace: bool = False) -> None:
    """The credentials file, 0600; `replace` swaps it atomically for a fuller one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path.with_name(path.name + ".new") if replace else path
    if replace:
        target.unlink(missing_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(creds, fh, ensure_ascii=False, indent=2)
    if replace:
        os.replace(target, path)


async def _newer_people(engine: AsyncEngine, hasher: SecretHasher, creds: dict[str, Any]) -> bool:
    """The demo people and enterprises (with a key) the credentials do not list yet, made now and added to
    `creds`; whether any was. A person who exists already (made by hand) is left alone."""
    users = UserService(engine)
    listed: dict[str, Any] = creds.setdefault("users", {})
    added = False
    keys: dict[str, str] = creds.setdefault("api_keys", {})
    for ent in DEMO_ENTERPRISES:
        if ent.code not in keys:
            await ensure_enterprise(engine, ent.code, ent.name, ent.credit_code)
            keys[ent.code], _ = await create_api_key(engine, hasher, ent.code, name="demo")
            added = True
    people: list[tuple[str, list[str], str | None, str | None, str]] = [
        (name, roles, dept, None, display) for name, (roles, dept, display) in DEMO_PEOPLE.items()
    ] + [
        (name, ["enterprise_user"], None, ent, display)
        for name, (ent, display) in DEMO_ENTERPRISE_PEOPLE.items()
    ]
    for username, roles, department, enterprise, display in people:
        if username in listed or await users.get(username) is not None:
            continue
        password = secrets.token_urlsafe(12)
        await users.create(
            username,
            password,
            roles=roles,
            department=department,
            enterprise=enterprise,
            display_name=display,
        )
        listed[username] = {"password": password, "roles": roles, "department": department}
        if enterprise:
            listed[username]["enterprise"] = enterprise
        added = True
    return added


async def seed_applications(engine: AsyncEngine, now: datetime | None = None) -> list[int]:
    """Applications in each state, so the console and the KPIs are not empty (idempotent: only
    into an empty table): one submitted for police's steward to decide (hrss asks for
    population's phone and household address), one rejected with its reason, one returned for
    more information, and one approved whose grant expires in 10 days (tax on social_insurance).
    Made through the workflow service, as the people and systems would, without audit events."""
    async with AsyncSession(engine) as session:
        if (await session.exec(select(func.count()).select_from(Application))).one():
            return []
    now = now or datetime.now(UTC)
    year = now + timedelta(days=365)

    def applicant(dept: str) -> Actor:
        return Actor(principal=f"demo-{dept}", kind="system", department=dept, apply=True)

    steward = {
        d: Actor(principal=f"{d}-steward", department=d, apply=True, approve=True) for d in ("police", "hrss")
    }

    async def made(
        dept: str, dataset: str, fields: dict[str, str | None], purpose: str, basis: str, end: datetime
    ) -> int:
        row = await apps.create(
            engine,
            None,
            applicant(dept),
            dataset=dataset,
            fields=fields,
            purpose=purpose,
            legal_basis=basis,
            period_end=end,
            submit_now=True,
        )
        return row.id or 0

    pending = await made(
        "hrss",
        "population",
        {"phone": "clear", "household_address": None},
        "社保待遇资格认证：联系参保人核验",
        "《社会保险法》第七十五条；《陕西省政务数据共享管理办法》",
        year,
    )
    rejected = await made(
        "samr",
        "population",
        {"id_number": None, "name": "clear"},
        "企业登记时核验法定代表人身份",
        "《市场主体登记管理条例》",
        year,
    )
    await apps.reject(
        engine,
        None,
        steward["police"],
        rejected,
        reason="人口基础信息不向登记业务批量共享；请使用身份核验接口逐条核验",
    )
    returned = await made(
        "tax",
        "population",
        {"household_address": None},
        "个人所得税汇算清缴：核实纳税人户籍地",
        "《个人所得税法》",
        year,
    )
    await apps.return_(
        engine,
        None,
        steward["police"],
        returned,
        reason="请补充法律依据的具体条款，并说明为何需要户籍地址而非所在区县",
    )
    approved = await made(
        "tax",
        "social_insurance",
        {"employer_name": None, "insurance_type": None, "status": None, "contribution_base": None},
        "社保费与个税申报比对",
        "《社会保险费征缴暂行条例》；省税务局与省人社厅数据共享协议",
        now + timedelta(days=10),
    )
    await apps.approve(engine, None, steward["hrss"], approved, reason="同意；按协议一年一审")
    return [pending, rejected, returned, approved]
