"""Demands (需求清单): a department asks a provider for data the catalogue does not have yet.

    open ──answer──▶ will_provide (promised date) ──fulfil──▶ fulfilled (the catalogued dataset)
      │                   │  └──answer (new date, or cannot)
      ├──answer──▶ cannot_provide (reason)
      └──fulfil──▶ fulfilled

The requester is the caller's department; the answer and the fulfilment are the provider's data
steward's (or an administrator's). Every step is kept in the demand's history and written to
the audit log by the caller (CLI, admin API). Demands are part of the sharing rate's denominator
(policies.kpi)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import or_
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from catalogue.models import Dataset, Department, utcnow
from gateway.workflow.common import (
    Actor,
    WorkflowError,
    WorkflowNotFound,
    append_history,
    iso,
    listing,
    now_utc,
    save_step,
)
from policies.workdays import CST

STATES = ("open", "will_provide", "cannot_provide", "fulfilled")
ANSWERS = ("will_provide", "cannot_provide")


class Demand(SQLModel, table=True):
    __tablename__ = "demand"

    id: int | None = Field(default=None, primary_key=True)
    requester: str = Field(foreign_key="department.code", index=True, max_length=32)
    provider: str = Field(foreign_key="department.code", index=True, max_length=32)
    description: str  # the data wanted
    fields_wanted: str = Field(default="")  # free text: the 信息项 wanted, as the requester names them
    purpose: str = Field(default="")
    state: str = Field(default="open", index=True, max_length=16)
    promised_date: date | None = None  # will_provide: by when (CST date)
    reason: str | None = None  # cannot_provide: why
    dataset_code: str | None = Field(default=None, max_length=64)  # fulfilled: the catalogued dataset
    created_at: datetime = Field(default_factory=utcnow)
    created_by: str = Field(default="", max_length=128)
    answered_at: datetime | None = None
    answered_by: str | None = Field(default=None, max_length=128)
    fulfilled_at: datetime | None = None
    fulfilled_by: str | None = Field(default=None, max_length=128)
    history: str = Field(default="[]")  # JSON list of steps: at, by, action, state, detail


def describe(row: Demand) -> dict[str, Any]:
    """A demand as the CLI's --json, the admin API and the audit event show it."""
    import json

    return {
        "id": row.id,
        "requester": row.requester,
        "provider": row.provider,
        "description": row.description,
        "fields_wanted": row.fields_wanted,
        "purpose": row.purpose,
        "state": row.state,
        "promised_date": row.promised_date.isoformat() if row.promised_date else None,
        "reason": row.reason,
        "dataset": row.dataset_code,
        "created_at": iso(row.created_at),
        "created_by": row.created_by,
        "answered_at": iso(row.answered_at),
        "answered_by": row.answered_by,
        "fulfilled_at": iso(row.fulfilled_at),
        "fulfilled_by": row.fulfilled_by,
        "history": json.loads(row.history or "[]"),
    }


async def _departments(session: AsyncSession) -> list[str]:
    return list((await session.exec(select(Department.code))).all())


async def _get(session: AsyncSession, demand_id: int) -> Demand:
    row = await session.get(Demand, demand_id)
    if row is None:
        raise WorkflowNotFound(f"no demand {demand_id}; `shuqiao demand list` lists them")
    return row


async def create_demand(
    engine: AsyncEngine,
    actor: Actor,
    *,
    provider: str,
    description: str,
    fields_wanted: str = "",
    purpose: str,
    requester: str | None = None,
) -> Demand:
    """Record a demand from the actor's department (an administrator names `requester`)."""
    who = actor.acting_for(requester, "file a demand")
    if not description.strip():
        raise WorkflowError("a demand describes the data wanted (description)")
    if not purpose.strip():
        raise WorkflowError("a demand declares its purpose (用途)")
    async with AsyncSession(engine) as session:
        departments = await _departments(session)
        for role, code in (("requester", who), ("provider", provider)):
            if code not in departments:
                raise WorkflowError(f"no department {code!r} ({role}); departments: {listing(departments)}")
        if who == provider:
            raise WorkflowError(f"{who} cannot demand data from itself")
        row = Demand(
            requester=who,
            provider=provider,
            description=description.strip(),
            fields_wanted=fields_wanted.strip(),
            purpose=purpose.strip(),
            created_by=actor.label(),
        )
        row.history = append_history("[]", actor, "create", "open")
        session.add(row)
        await session.commit()
        await session.refresh(row)
    return row


async def answer_demand(
    engine: AsyncEngine,
    actor: Actor,
    demand_id: int,
    *,
    answer: str,
    promised_date: date | None = None,
    reason: str | None = None,
    today: date | None = None,
) -> Demand:
    """The provider's answer: will_provide by `promised_date`, or cannot_provide with a `reason`.
    An open demand or a promise (a new date, or a change of mind) can be answered."""
    if answer not in ANSWERS:
        raise WorkflowError(f"the answer is one of {', '.join(ANSWERS)}, not {answer!r}")
    today = today or now_utc().astimezone(CST).date()
    if answer == "will_provide":
        if promised_date is None:
            raise WorkflowError("will_provide needs the date the data will be provided by (--by YYYY-MM-DD)")
        if promised_date < today:
            raise WorkflowError(f"the promised date {promised_date} is in the past")
        reason = None
    else:
        if not (reason or "").strip():
            raise WorkflowError("cannot_provide needs a reason (--reason)")
        promised_date = None
    async with AsyncSession(engine) as session:
        row = await _get(session, demand_id)
        seen = row.history
        actor.check_steward_of(row.provider, "answer this demand")
        if row.state not in ("open", "will_provide"):
            raise WorkflowError(
                f"demand {demand_id} is {row.state}; only an open or promised demand is answered"
            )
        row.state = answer
        row.promised_date = promised_date
        row.reason = reason.strip() if reason else None
        row.answered_at = now_utc()
        row.answered_by = actor.label()
        row.history = append_history(
            row.history,
            actor,
            "answer",
            answer,
            promised_date=promised_date.isoformat() if promised_date else None,
            reason=row.reason,
        )
        await save_step(session, row, seen, f"demand {demand_id}")
    return row


async def fulfil_demand(engine: AsyncEngine, actor: Actor, demand_id: int, *, dataset: str) -> Demand:
    """The data is catalogued: link the demand to the provider's published dataset."""
    async with AsyncSession(engine) as session:
        row = await _get(session, demand_id)
        seen = row.history
        actor.check_steward_of(row.provider, "fulfil this demand")
        if row.state not in ("open", "will_provide"):
            raise WorkflowError(
                f"demand {demand_id} is {row.state}; only an open or promised demand is fulfilled"
            )
        own = (
            await session.exec(
                select(Dataset.code).where(
                    col(Dataset.department_code) == row.provider, col(Dataset.published).is_(True)
                )
            )
        ).all()
        if dataset not in own:
            raise WorkflowError(
                f"{dataset!r} is not a published dataset of {row.provider}; theirs: {listing(own)}"
            )
        row.state = "fulfilled"
        row.dataset_code = dataset
        row.fulfilled_at = now_utc()
        row.fulfilled_by = actor.label()
        row.history = append_history(row.history, actor, "fulfil", "fulfilled", dataset=dataset)
        await save_step(session, row, seen, f"demand {demand_id}")
    return row


async def list_demands(
    engine: AsyncEngine,
    actor: Actor,
    *,
    role: str = "all",
    state: str | None = None,
    department: str | None = None,
) -> list[Demand]:
    """Demands the actor may see: those its department filed (`role="mine"`), those addressed to
    it (`"addressed"`), or both (`"all"`). An administrator sees every department's, or
    `department`'s."""
    if role not in ("mine", "addressed", "all"):
        raise WorkflowError("role is mine, addressed or all")
    if state is not None and state not in STATES:
        raise WorkflowError(f"no state {state!r}; states: {', '.join(STATES)}")
    query = select(Demand).order_by(col(Demand.id))
    dept = department if actor.admin else actor.acting_for(department, "list demands")
    if dept is not None:
        mine, addressed = col(Demand.requester) == dept, col(Demand.provider) == dept
        query = query.where({"mine": mine, "addressed": addressed, "all": or_(mine, addressed)}[role])
    if state is not None:
        query = query.where(col(Demand.state) == state)
    async with AsyncSession(engine) as session:
        return list((await session.exec(query)).all())


async def get_demand(engine: AsyncEngine, actor: Actor, demand_id: int) -> Demand:
    async with AsyncSession(engine) as session:
        row = await _get(session, demand_id)
    if not actor.admin and actor.department not in (row.requester, row.provider):
        raise WorkflowNotFound(f"no demand {demand_id}")  # not theirs: not even its existence
    return row
