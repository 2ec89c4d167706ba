"""Shared by the demand, quality-report and KPI tests: a fresh demo store per test module and
backend (these tests change demands and reports, and compare KPIs with hand-computed values, so
they do not share the session's demo store), the CLI, and the admin API's demand/quality/KPI
types in a small schema of their own (the lead merges them into /admin/graphql)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import strawberry
from sqlalchemy import select
from strawberry.tools import merge_types
from typer.testing import CliRunner

from tests.conftest import BACKENDS, DemoEnv, create_database, init_store, load_demo_env, settings_for


def fresh_demo(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, name: str
) -> Iterator[DemoEnv]:
    tmp = tmp_path_factory.mktemp(f"{name}-{request.param}")
    url, drop = create_database(request.param, tmp)
    settings = settings_for(url, tmp / "var")
    init_store(settings)
    creds = load_demo_env(settings)
    yield DemoEnv(request.param, settings, creds)
    drop()


def module_env(name: str) -> Any:
    @pytest.fixture(scope="module", params=BACKENDS)
    def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoEnv]:
        yield from fresh_demo(request, tmp_path_factory, name)

    return env


def cli(env: DemoEnv, *args: str, master_key_file: str | None = None) -> Any:
    from gateway.cli import app

    s = env.settings
    vars_ = {
        "SHUQIAO_DATABASE_URL": s.database_url,
        "SHUQIAO_VAR_DIR": str(s.var_dir),
        "SHUQIAO_MASTER_KEY_FILE": master_key_file or str(s.master_key_file),
    }
    return CliRunner().invoke(app, list(args), env=vars_)


def cli_json(env: DemoEnv, *args: str) -> Any:
    r = cli(env, *args, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def on_db(env: DemoEnv, fn: Any) -> Any:
    from gateway.db import create_engine

    async def go() -> Any:
        engine = create_engine(env.settings.database_url)
        try:
            return await fn(engine)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def identity_events(env: DemoEnv, pattern: str) -> list[dict[str, Any]]:
    """Audit events of the identity tier whose operation matches `pattern` (SQL LIKE), with their
    detail opened."""
    from gateway.audit.models import AuditEvent

    async def go(engine: Any) -> list[dict[str, Any]]:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(AuditEvent.__table__)
                .where(AuditEvent.tier == "identity", AuditEvent.operation_name.like(pattern))  # type: ignore[union-attr]
                .order_by(AuditEvent.seq)  # type: ignore[arg-type]
            )
            out = []
            for r in rows:
                doc = dict(r._mapping)
                doc["identity"] = json.loads(doc["detail"])["reads"][0]["identity"]
                out.append(doc)
            return out

    return on_db(env, go)


def schema() -> strawberry.Schema:
    from gateway.workflow.demands_graphql import DemandMutation, DemandQuery
    from gateway.workflow.kpi_graphql import KpiQuery
    from gateway.workflow.quality_graphql import QualityMutation, QualityQuery

    return strawberry.Schema(
        query=merge_types("Query", (DemandQuery, QualityQuery, KpiQuery)),
        mutation=merge_types("Mutation", (DemandMutation, QualityMutation)),
    )


def admin_actor(principal: str, department: str | None, *, approve: bool = False, admin: bool = False) -> Any:
    """The admin API's actor (policies.workflow.Actor's attributes), as its context carries it."""
    return SimpleNamespace(
        principal=principal,
        department=department,
        enterprise=None,
        apply=department is not None,
        approve=approve,
        admin=admin,
    )


def run_gql(
    env: DemoEnv, query: str, actor: Any, variables: dict[str, Any] | None = None, audit: bool = True
) -> Any:
    """Execute on the small schema with an admin-API-like context (engine, actor, audit, keyring)."""
    from catalogue.protection import load_keyring
    from catalogue.service import load_catalogue
    from gateway.identity.audit import cli_audit
    from gateway.secrets import load_master_key

    async def go(engine: Any) -> Any:
        keyring = await load_keyring(
            engine, load_master_key(env.settings.master_key_file), (await load_catalogue(engine)).published()
        )
        ctx = SimpleNamespace(
            engine=engine,
            actor=actor,
            audit=cli_audit(env.settings, engine) if audit else None,
            claims=None,
            keyring=keyring,
            rows=0,
        )
        result = await schema().execute(query, variable_values=variables, context_value=ctx)
        return result, ctx

    return on_db(env, go)
