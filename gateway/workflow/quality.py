"""Data-quality reports (问题数据): a consumer flags a record or a field as wrong; the provider's
data steward marks it fixed or disputes it (with a reason) within 3 working days by the Chinese
calendar (policies.workdays).

    open ──resolve──▶ fixed (a note on what was corrected)
      └───resolve──▶ disputed (why the data is right)

The record is named by a key field (default: the dataset's entity key, e.g. credit_code or
id_number) and its value. A value of a protected field (L4 or sensitive: 身份证号) is never
stored: the report keeps its blind index (`bidx:<hex>`, HMAC-SM3 under the dataset's index key,
catalogue.protection), which is what the pool's `<field>__bidx` column holds, so the provider finds
the row and nobody reads the number from the report. A description that carries an ID number is
refused for the same reason.

A deadline computed past the calendar's known years is provisional (Mon-Fri assumed) and is
recomputed here once the installed calendar knows the year (`refresh_deadlines`)."""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from catalogue.models import utcnow
from catalogue.protection import is_protected
from catalogue.service import load_catalogue
from gateway.identifiers import is_valid_id_number
from gateway.workflow.common import (
    Actor,
    WorkflowError,
    WorkflowNotFound,
    append_history,
    aware,
    iso,
    listing,
    now_utc,
    save_step,
)
from policies.workdays import add_working_days

if TYPE_CHECKING:
    from catalogue.protection import PoolKeyring

log = logging.getLogger("shuqiao.workflow")

STATES = ("open", "fixed", "disputed")
RESOLUTIONS = ("fixed", "disputed")
WORKING_DAYS = 3  # the plan: 问题数据 corrected within 3 working days
BLIND_PREFIX = "bidx:"
_ID_LIKE = re.compile(r"(?<![0-9A-Za-z])[0-9]{17}[0-9Xx](?![0-9A-Za-z])")


class QualityReport(SQLModel, table=True):
    __tablename__ = "quality_report"

    id: int | None = Field(default=None, primary_key=True)
    reporter: str = Field(foreign_key="department.code", index=True, max_length=32)  # the consumer
    provider: str = Field(foreign_key="department.code", index=True, max_length=32)  # the dataset's
    dataset_code: str = Field(max_length=64, index=True)
    key_field: str = Field(max_length=64)  # the field that names the record (credit_code, id_number)
    record_ref: str = Field(max_length=200)  # its value, or bidx:<hex> for a protected field
    field: str | None = Field(default=None, max_length=64)  # the field said to be wrong; None: the record
    description: str
    state: str = Field(default="open", index=True, max_length=16)
    reason: str | None = None  # disputed: why the data is right; fixed: what was corrected
    opened_at: datetime = Field(default_factory=utcnow)
    deadline: datetime
    deadline_provisional: bool = Field(default=False)
    resolved_at: datetime | None = None
    resolved_by: str | None = Field(default=None, max_length=128)
    created_by: str = Field(default="", max_length=128)
    history: str = Field(default="[]")


def timeliness(row: QualityReport, now: datetime | None = None) -> str:
    """open (not yet due) | overdue | fixed_in_time | fixed_late | disputed_in_time | disputed_late."""
    now = now or now_utc()
    deadline = aware(row.deadline)
    assert deadline is not None
    if row.state == "open":
        return "overdue" if deadline < now else "open"
    resolved = aware(row.resolved_at) or now
    return f"{row.state}_{'in_time' if resolved <= deadline else 'late'}"


def describe(row: QualityReport, now: datetime | None = None) -> dict[str, Any]:
    return {
        "id": row.id,
        "reporter": row.reporter,
        "provider": row.provider,
        "dataset": row.dataset_code,
        "key_field": row.key_field,
        "record_ref": row.record_ref,
        "field": row.field,
        "description": row.description,
        "state": row.state,
        "reason": row.reason,
        "opened_at": iso(row.opened_at),
        "deadline": iso(row.deadline),
        "deadline_provisional": row.deadline_provisional,
        "timeliness": timeliness(row, now),
        "resolved_at": iso(row.resolved_at),
        "resolved_by": row.resolved_by,
        "created_by": row.created_by,
        "history": json.loads(row.history or "[]"),
    }


def _no_id_numbers(text: str, what: str) -> None:
    if any(is_valid_id_number(m.upper()) for m in _ID_LIKE.findall(text)):
        raise WorkflowError(
            f"the {what} carries an ID number (身份证号); name the record with --key-field/--record "
            "(a protected value is kept only as its blind index) and leave it out of the text"
        )


async def report_quality(
    engine: AsyncEngine,
    actor: Actor,
    *,
    dataset: str,
    record: str,
    description: str,
    field: str | None = None,
    key_field: str | None = None,
    reporter: str | None = None,
    keyring: PoolKeyring | None = None,
    opened_at: datetime | None = None,
) -> QualityReport:
    """Flag a record (or one of its fields) of a published dataset as wrong."""
    who = actor.acting_for(reporter, "report a data-quality problem")
    if not description.strip():
        raise WorkflowError("a report says what is wrong (description)")
    _no_id_numbers(description, "description")
    if not record.strip():
        raise WorkflowError("a report names the record (--record: the value of its key field)")
    catalogue = await load_catalogue(engine)
    spec = catalogue.datasets.get(dataset)
    published = sorted(d.code for d in catalogue.published())
    if spec is None or not spec.published:
        raise WorkflowError(f"no published dataset {dataset!r}; published: {listing(published)}")
    if who not in catalogue.departments:
        raise WorkflowError(f"no department {who!r}; departments: {listing(catalogue.departments)}")
    names = [f.name for f in spec.fields]
    key_name = key_field or spec.entity_field
    if key_name is None:
        raise WorkflowError(
            f"{dataset} has no entity key: name the record's key field (--key-field); {names}"
        )
    if key_name not in names:
        raise WorkflowError(f"{dataset} has no field {key_name!r}; fields: {listing(names)}")
    if field is not None and field not in names:
        raise WorkflowError(f"{dataset} has no field {field!r}; fields: {listing(names)}")
    if is_protected(spec.field(key_name)):
        if keyring is None:
            raise WorkflowError(
                f"{dataset}.{key_name} is protected (kept only as a blind index) and this endpoint has no "
                "data key loaded; file the report with `shuqiao quality report`"
            )
        ref = BLIND_PREFIX + keyring.cipher(dataset).blind(key_name, record)
    else:
        _no_id_numbers(record, "record key")
        ref = record.strip()
    opened = opened_at or now_utc()
    due = add_working_days(opened, WORKING_DAYS)
    if due.provisional:
        log.warning(
            "quality report deadline %s assumes Mon-Fri: the installed chinesecalendar does not know "
            "the year (upgrade it); it is recomputed once it does",
            due.due.date(),
        )
    row = QualityReport(
        reporter=who,
        provider=spec.department,
        dataset_code=dataset,
        key_field=key_name,
        record_ref=ref,
        field=field,
        description=description.strip(),
        opened_at=opened,
        deadline=due.due,
        deadline_provisional=due.provisional,
        created_by=actor.label(),
    )
    row.history = append_history("[]", actor, "report", "open", at=opened, deadline=due.due.isoformat())
    async with AsyncSession(engine) as session:
        session.add(row)
        await session.commit()
        await session.refresh(row)
    return row


async def _get(session: AsyncSession, report_id: int) -> QualityReport:
    row = await session.get(QualityReport, report_id)
    if row is None:
        raise WorkflowNotFound(f"no quality report {report_id}; `shuqiao quality list` lists them")
    return row


async def resolve_quality(
    engine: AsyncEngine,
    actor: Actor,
    report_id: int,
    *,
    resolution: str,
    reason: str,
    resolved_at: datetime | None = None,
) -> QualityReport:
    """The provider's answer: fixed (with a note on what was corrected) or disputed (with why the
    data is right). Once, from open."""
    if resolution not in RESOLUTIONS:
        raise WorkflowError(f"the resolution is fixed or disputed, not {resolution!r}")
    if not reason.strip():
        what = "what was corrected" if resolution == "fixed" else "why the data is right"
        raise WorkflowError(f"{resolution} needs a note saying {what} (--reason)")
    _no_id_numbers(reason, "note")
    async with AsyncSession(engine) as session:
        row = await _get(session, report_id)
        seen = row.history
        actor.check_steward_of(row.provider, "resolve this report")
        if row.state != "open":
            raise WorkflowError(f"report {report_id} is already {row.state}")
        row.state = resolution
        row.reason = reason.strip()
        row.resolved_at = resolved_at or now_utc()
        row.resolved_by = actor.label()
        row.history = append_history(
            row.history, actor, "resolve", resolution, at=row.resolved_at, reason=row.reason
        )
        await save_step(session, row, seen, f"report {report_id}")
    return row


async def refresh_deadlines(engine: AsyncEngine) -> int:
    """Recompute provisional deadlines the installed calendar now covers; how many changed."""
    changed = 0
    async with AsyncSession(engine) as session:
        rows = (
            await session.exec(select(QualityReport).where(col(QualityReport.deadline_provisional).is_(True)))
        ).all()
        for row in rows:
            opened = aware(row.opened_at)
            assert opened is not None
            due = add_working_days(opened, WORKING_DAYS)
            if not due.provisional:
                row.deadline, row.deadline_provisional = due.due, False
                row.history = json.dumps(
                    [
                        *json.loads(row.history or "[]"),
                        {
                            "at": now_utc().isoformat(),
                            "by": "calendar",
                            "action": "deadline",
                            "state": row.state,
                            "deadline": due.due.isoformat(),
                        },
                    ],
                    ensure_ascii=False,
                )
                session.add(row)
                changed += 1
        await session.commit()
    return changed


async def list_reports(
    engine: AsyncEngine,
    actor: Actor,
    *,
    role: str = "all",
    state: str | None = None,
    department: str | None = None,
) -> list[QualityReport]:
    """Reports the actor may see: filed by its department (`"mine"`), addressed to it as provider
    (`"addressed"`), or both; an administrator sees all, or `department`'s."""
    if role not in ("mine", "addressed", "all"):
        raise WorkflowError("role is mine, addressed or all")
    if state is not None and state not in (*STATES, "overdue"):
        raise WorkflowError(f"no state {state!r}; states: {', '.join((*STATES, 'overdue'))}")
    await refresh_deadlines(engine)
    query = select(QualityReport).order_by(col(QualityReport.id))
    dept = department if actor.admin else actor.acting_for(department, "list quality reports")
    if dept is not None:
        mine, addressed = col(QualityReport.reporter) == dept, col(QualityReport.provider) == dept
        query = query.where({"mine": mine, "addressed": addressed, "all": or_(mine, addressed)}[role])
    if state == "overdue":
        query = query.where(col(QualityReport.state) == "open", col(QualityReport.deadline) < now_utc())
    elif state is not None:
        query = query.where(col(QualityReport.state) == state)
    async with AsyncSession(engine) as session:
        return list((await session.exec(query)).all())


async def get_report(engine: AsyncEngine, actor: Actor, report_id: int) -> QualityReport:
    async with AsyncSession(engine) as session:
        row = await _get(session, report_id)
    if not actor.admin and actor.department not in (row.reporter, row.provider):
        raise WorkflowNotFound(f"no quality report {report_id}")
    return row
