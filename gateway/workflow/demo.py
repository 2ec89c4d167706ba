"""The demo's demands and quality reports (called from gateway.demo.principals, as the demo's
grants are), so the console and the KPIs are not empty:

  demand 1  hrss asks police for 死亡登记信息 (death registrations)        open
  demand 2  samr asks tax for 欠税公告信息 (tax arrears notices)           will_provide, in 30 days
  report 1  hrss on samr's enterprise_registration (an address), opened 20 days ago, still open: overdue
  report 2  samr on tax's tax_credit_rating (a rating year), opened 10 days ago, fixed an hour later

Records are named by credit code (public, L1) from the loaded pool. Idempotent: nothing is
seeded once there are demands or quality reports."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select as model_select  # typed rows from session.exec; Core queries use select
from sqlmodel.ext.asyncio.session import AsyncSession

from catalogue.pool import ROW_ID, pool_table
from catalogue.service import load_catalogue
from gateway.workflow import demands, quality
from gateway.workflow.common import now_utc, operator_actor
from policies.workdays import CST


async def _first_key(engine: AsyncEngine, dataset: str, key: str) -> str | None:
    spec = (await load_catalogue(engine)).datasets.get(dataset)
    if spec is None:
        return None
    table = pool_table(spec)
    async with engine.connect() as conn:
        value = await conn.scalar(select(table.c[key]).order_by(table.c[ROW_ID]).limit(1))
    return None if value is None else str(value)


async def seed_workflow_demo(engine: AsyncEngine, now: datetime | None = None) -> dict[str, int]:
    now = now or now_utc()
    async with AsyncSession(engine) as session:
        existing = (await session.exec(model_select(func.count()).select_from(demands.Demand))).one()
        existing += (await session.exec(model_select(func.count()).select_from(quality.QualityReport))).one()
    if existing:
        return {"demands": 0, "quality_reports": 0}
    seeder = operator_actor("demo")
    await demands.create_demand(
        engine,
        seeder,
        requester="hrss",
        provider="police",
        description="死亡登记信息（姓名、身份证号、死亡日期）",
        fields_wanted="name, id_number, death_date",
        purpose="社保待遇资格认证：停发已故人员养老金",
    )
    promised = await demands.create_demand(
        engine,
        seeder,
        requester="samr",
        provider="tax",
        description="欠税公告信息",
        fields_wanted="credit_code, arrears_amount, notice_date",
        purpose="企业信用监管：经营异常名录核查",
    )
    assert promised.id is not None
    await demands.answer_demand(
        engine,
        seeder,
        promised.id,
        answer="will_provide",
        promised_date=(now + timedelta(days=30)).astimezone(CST).date(),
    )
    reports = 0
    enterprise = await _first_key(engine, "enterprise_registration", "credit_code")
    if enterprise is not None:
        await quality.report_quality(
            engine,
            seeder,
            reporter="hrss",
            dataset="enterprise_registration",
            record=enterprise,
            field="registered_address",
            description="登记住所与参保登记地址不一致，疑似未及时变更",
            opened_at=now - timedelta(days=20),
        )
        reports += 1
    rated = await _first_key(engine, "tax_credit_rating", "credit_code")
    if rated is not None:
        opened = now - timedelta(days=10)
        row = await quality.report_quality(
            engine,
            seeder,
            reporter="samr",
            dataset="tax_credit_rating",
            record=rated,
            field="rating_year",
            description="评价年度应为上一年度",
            opened_at=opened,
        )
        assert row.id is not None
        await quality.resolve_quality(
            engine,
            seeder,
            row.id,
            resolution="fixed",
            reason="已按上一年度重新发布",
            resolved_at=opened + timedelta(hours=1),
        )
        reports += 1
    return {"demands": 2, "quality_reports": reports}
