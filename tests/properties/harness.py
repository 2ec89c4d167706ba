"""One store and one running app per module; each generated example becomes a new dataset.

The previous example's dataset is unpublished before the next is saved, so every schema
holds one generated dataset and stays as cheap to build as the first. Rows and grants go
in through the catalogue and grant services, the way `shuqiao catalog import` and an
approval would put them there; requests go through the real HTTP app."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from catalogue.pool import pool_table
from catalogue.protection import RowEncoder, load_keyring, protected_fields
from catalogue.service import save_dataset, save_department, set_published
from catalogue.spec import DatasetSpec, DepartmentSpec
from policies.model import Tier
from tests.conftest import create_database, init_store, settings_for
from tests.properties.oracle import Caller, GrantDraw
from tests.properties.strategies import Cell, Example, GrantPlan, cell

PROVIDER = "pprov"  # provides every generated dataset
KEYED = "pkeyed"  # a consuming department with a registered SM2 key
PLAIN = "pplain"  # a consuming department without one
GRANTED_ENTERPRISE = "egrant"  # may hold an open-tier grant
BARE_ENTERPRISE = "ebare"  # never does

CALLERS = (
    Caller("anonymous", Tier.OPEN, None),
    Caller("enterprise-granted", Tier.OPEN, GRANTED_ENTERPRISE),
    Caller("enterprise-bare", Tier.OPEN, BARE_ENTERPRISE),
    Caller("provider", Tier.SHARE, PROVIDER),
    Caller("dept-keyed", Tier.SHARE, KEYED, has_sm2_key=True),
    Caller("dept-plain", Tier.SHARE, PLAIN),
)


@dataclass
class Applied:
    spec: DatasetSpec
    cells: dict[str, list[Cell]]  # field name → one cell per row
    grants: list[GrantDraw]
    now: datetime
    unpublished: str | None = None  # the previous example's dataset, withdrawn before this one


class Store:
    def __init__(self, backend: str, tmp: Path) -> None:
        from starlette.testclient import TestClient

        from gateway.app import create_app
        from gateway.db import create_engine
        from gateway.secrets import load_master_key

        self.backend = backend
        self.url, self._drop = create_database(backend, tmp)
        # Hundreds of requests a minute from one address and one key: lift the open tier's
        # rate limits, which are not what these properties are about.
        self.settings = replace(
            settings_for(self.url, tmp / "var"),
            anonymous_rate="1000000/minute",
            api_key_rate_per_minute=1_000_000,
            api_key_daily_quota=100_000_000,
        )
        init_store(self.settings)
        self.master_key = load_master_key(self.settings.master_key_file)
        self._runner = asyncio.Runner()
        self.engine: AsyncEngine = create_engine(self.url)
        self.credentials = self.run(self._principals())
        self._client_cm = TestClient(create_app(self.settings))
        self.client = self._client_cm.__enter__()
        self.headers = {c.name: self._headers(c) for c in CALLERS}
        self._serial = itertools.count(1)
        self._previous: str | None = None

    def run(self, coro: Any) -> Any:
        return self._runner.run(coro)

    def close(self) -> None:
        self._client_cm.__exit__(None, None, None)
        self.run(self.engine.dispose())
        self._runner.close()
        self._drop()

    async def _principals(self) -> dict[str, Any]:
        from gateway.crypto.service import register_department_key
        from gateway.identity.apikeys import create_api_key
        from gateway.identity.clients import create_client, ensure_enterprise
        from gateway.secrets import SecretHasher
        from keys import sm2

        hasher = SecretHasher(self.master_key)
        creds: dict[str, Any] = {"clients": {}, "api_keys": {}}
        for dept in (PROVIDER, KEYED, PLAIN):
            await save_department(self.engine, DepartmentSpec(dept, f"性质测试部门 {dept}"))
            creds["clients"][dept] = await create_client(self.engine, hasher, dept, name=dept)
        for ent in (GRANTED_ENTERPRISE, BARE_ENTERPRISE):
            await ensure_enterprise(self.engine, ent, f"性质测试企业 {ent}")
            creds["api_keys"][ent] = (await create_api_key(self.engine, hasher, ent, name="props"))[0]
        key = sm2.generate_private_key()
        await register_department_key(self.engine, KEYED, key.public_key.to_pem())
        creds["keyed_private_key"] = key
        return creds

    def _headers(self, caller: Caller) -> dict[str, str]:
        h = {"Accept": "application/graphql-response+json"}
        if caller.tier is Tier.OPEN:
            if caller.consumer is not None:
                h["X-API-Key"] = self.credentials["api_keys"][caller.consumer]
            return h
        client_id, secret = self.credentials["clients"][caller.consumer]
        r = self.client.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
        )
        assert r.status_code == 200, r.text
        h["Authorization"] = f"Bearer {r.json()['access_token']}"
        return h

    def post(self, caller: Caller, query: str, variables: dict[str, Any] | None = None) -> Any:
        return self.client.post(
            f"/{caller.tier.value}/graphql",
            json={"query": query, "variables": variables or {}},
            headers=self.headers[caller.name],
        )

    # -- examples
    def apply(self, example: Example) -> Applied:
        n = next(self._serial)
        code = f"prop_{self.backend[:2]}{n:04d}"
        spec = example.dataset.spec(code, f"PROP-{self.backend[:2].upper()}-{n:06d}", PROVIDER)
        rows = example.dataset.rows
        cells = {
            f.name: [cell(f, n * 100 + i * 10 + r) for r in range(rows)] for i, f in enumerate(spec.fields)
        }
        for f in spec.fields:
            if f.references is not None:  # row r refers to the entity of row r + 1
                keys = cells[spec.entity_field or ""]
                cells[f.name] = [keys[(r + 1) % rows] for r in range(rows)]
        now = datetime.now(UTC)
        grants = [
            self._grant(KEYED, Tier.SHARE, example.keyed_grant, now),
            self._grant(PLAIN, Tier.SHARE, example.plain_grant, now),
            self._grant(GRANTED_ENTERPRISE, Tier.OPEN, example.open_grant, now),
        ]
        applied = Applied(spec, cells, [g for g in grants if g is not None], now, self._previous)
        self.run(self._apply(applied, self._previous))
        self._previous = code
        return applied

    @staticmethod
    def _grant(consumer: str, tier: Tier, plan: GrantPlan | None, now: datetime) -> GrantDraw | None:
        if plan is None:
            return None
        expires = {"none": None, "future": now + timedelta(days=30), "past": now - timedelta(days=1)}
        return GrantDraw(
            consumer, tier, frozenset(plan.fields), frozenset(plan.clear_fields), expires[plan.expiry]
        )

    async def _apply(self, applied: Applied, previous: str | None) -> None:
        from sqlmodel.ext.asyncio.session import AsyncSession

        from catalogue.service import bump_version
        from gateway.grants.models import GrantRecord

        spec = applied.spec
        if previous is not None:
            await set_published(self.engine, previous, False)
        await save_dataset(self.engine, spec)
        cipher = None
        if protected_fields(spec):
            keyring = await load_keyring(self.engine, self.master_key, [spec])
            cipher = keyring.cipher(spec.code)
        encoder = RowEncoder(spec, cipher)
        rows = [
            encoder.encode(tuple(applied.cells[f.name][r].stored for f in spec.fields))
            for r in range(len(next(iter(applied.cells.values()))))
        ]
        async with self.engine.begin() as conn:
            await conn.execute(
                pool_table(spec).insert(), [dict(zip(encoder.columns, row, strict=True)) for row in rows]
            )
        # Grant rows as they may stand in the store (an expired one, one from before today's
        # validation): written directly, so the policy is tested on every row it may meet;
        # create_grant's validation has its own tests (tests/integration/test_grants.py).
        async with AsyncSession(self.engine) as session:
            for g in applied.grants:
                session.add(
                    GrantRecord(
                        tier=g.tier.value,
                        dataset_code=spec.code,
                        consumer=g.consumer,
                        fields=" ".join(sorted(g.fields)),
                        clear_fields=" ".join(sorted(g.clear_fields)),
                        purpose="性质测试",
                        expires_at=g.expires_at,
                    )
                )
            await bump_version(session)
            await session.commit()
