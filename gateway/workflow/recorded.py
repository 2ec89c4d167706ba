"""Demand and quality-report steps with their audit events: the one path the CLI and the admin
API take. Each change is one event (`demand.create|answer|fulfil`, `quality.report|resolve`,
`kpi.snapshot`; tier "identity", through gateway.identity.audit.record_admin_event, as grant and
identity changes are). Fail closed: if the event cannot be written the change is taken back
(a new row deleted, a changed row restored) and AuditUnavailable propagates."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.identity.audit import IdentityAudit, record_admin_event
from gateway.workflow import demands, quality
from gateway.workflow.common import Actor

if TYPE_CHECKING:
    from starlette.requests import Request

    from catalogue.protection import PoolKeyring


def _values(row: SQLModel) -> dict[str, Any]:
    return {name: getattr(row, name) for name in type(row).model_fields}


async def _delete(engine: AsyncEngine, model: type[SQLModel], key: Any) -> None:
    async with AsyncSession(engine) as session:
        row = await session.get(model, key)
        if row is not None:
            await session.delete(row)
            await session.commit()


async def _restore(engine: AsyncEngine, model: type[SQLModel], key: Any, values: dict[str, Any]) -> None:
    async with AsyncSession(engine) as session:
        row = await session.get(model, key)
        if row is not None:
            for name, value in values.items():
                setattr(row, name, value)
            session.add(row)
            await session.commit()


def _demand_detail(row: demands.Demand) -> dict[str, Any]:
    doc = demands.describe(row)
    # what the step did, not the free text (the description stays with the demand)
    return {k: doc[k] for k in ("id", "requester", "provider", "state", "promised_date", "dataset")}


def _report_detail(row: quality.QualityReport) -> dict[str, Any]:
    doc = quality.describe(row)
    keys = ("id", "reporter", "provider", "dataset", "key_field", "record_ref", "field", "state", "deadline")
    return {k: doc[k] for k in keys}


async def _record(
    audit: IdentityAudit | None,
    actor: Actor,
    operation: str,
    *,
    target: str,
    consumer: str | None,
    detail: dict[str, Any],
    undo: Any,
    request: Request | None,
) -> None:
    if audit is None:
        return
    await record_admin_event(
        audit,
        operation,
        status=200,
        principal_kind=actor.kind,
        principal_id=actor.id,
        target=target,
        consumer=consumer,
        detail=detail,
        request=request,
        undo=undo,
    )


async def create_demand(
    engine: AsyncEngine,
    audit: IdentityAudit | None,
    actor: Actor,
    *,
    request: Request | None = None,
    **kw: Any,
) -> demands.Demand:
    row = await demands.create_demand(engine, actor, **kw)
    await _record(
        audit,
        actor,
        "demand.create",
        target=f"demand:{row.id}",
        consumer=row.requester,
        detail=_demand_detail(row),
        undo=lambda: _delete(engine, demands.Demand, row.id),
        request=request,
    )
    return row


async def _before(engine: AsyncEngine, model: type[SQLModel], key: int) -> dict[str, Any] | None:
    async with AsyncSession(engine) as session:
        row = await session.get(model, key)
        return _values(row) if row is not None else None


async def _recorded_change(
    engine: AsyncEngine,
    audit: IdentityAudit | None,
    actor: Actor,
    operation: str,
    model: type[SQLModel],
    key: int,
    change: Callable[[], Awaitable[Any]],
    describe: Callable[[Any], tuple[str, str | None, dict[str, Any]]],
    request: Request | None,
) -> Any:
    """A change to an existing row and its event; if the event cannot be written the row is put
    back as it was. `describe` gives the event's target, consumer and detail from the new row."""
    before = await _before(engine, model, key)
    row = await change()
    target, consumer, detail = describe(row)
    await _record(
        audit,
        actor,
        operation,
        target=target,
        consumer=consumer,
        detail=detail,
        undo=lambda: _restore(engine, model, key, before or {}),
        request=request,
    )
    return row


async def answer_demand(
    engine: AsyncEngine,
    audit: IdentityAudit | None,
    actor: Actor,
    demand_id: int,
    *,
    answer: str,
    promised_date: date | None = None,
    reason: str | None = None,
    request: Request | None = None,
) -> demands.Demand:
    return await _recorded_change(
        engine,
        audit,
        actor,
        "demand.answer",
        demands.Demand,
        demand_id,
        lambda: demands.answer_demand(
            engine, actor, demand_id, answer=answer, promised_date=promised_date, reason=reason
        ),
        lambda row: (f"demand:{row.id}", row.requester, _demand_detail(row)),
        request,
    )


async def fulfil_demand(
    engine: AsyncEngine,
    audit: IdentityAudit | None,
    actor: Actor,
    demand_id: int,
    *,
    dataset: str,
    request: Request | None = None,
) -> demands.Demand:
    return await _recorded_change(
        engine,
        audit,
        actor,
        "demand.fulfil",
        demands.Demand,
        demand_id,
        lambda: demands.fulfil_demand(engine, actor, demand_id, dataset=dataset),
        lambda row: (f"demand:{row.id}", row.requester, _demand_detail(row)),
        request,
    )


async def report_quality(
    engine: AsyncEngine,
    audit: IdentityAudit | None,
    actor: Actor,
    *,
    keyring: PoolKeyring | None = None,
    request: Request | None = None,
    **kw: Any,
) -> quality.QualityReport:
    row = await quality.report_quality(engine, actor, keyring=keyring, **kw)
    await _record(
        audit,
        actor,
        "quality.report",
        target=f"quality:{row.id}",
        consumer=row.reporter,
        detail=_report_detail(row),
        undo=lambda: _delete(engine, quality.QualityReport, row.id),
        request=request,
    )
    return row


async def resolve_quality(
    engine: AsyncEngine,
    audit: IdentityAudit | None,
    actor: Actor,
    report_id: int,
    *,
    resolution: str,
    reason: str,
    resolved_at: datetime | None = None,
    request: Request | None = None,
) -> quality.QualityReport:
    return await _recorded_change(
        engine,
        audit,
        actor,
        "quality.resolve",
        quality.QualityReport,
        report_id,
        lambda: quality.resolve_quality(
            engine, actor, report_id, resolution=resolution, reason=reason, resolved_at=resolved_at
        ),
        lambda row: (
            f"quality:{row.id}",
            row.reporter,
            {**_report_detail(row), "timeliness": quality.timeliness(row)},
        ),
        request,
    )
