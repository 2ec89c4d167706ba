"""What demands and quality reports share: who is acting, the refusals, the history entries."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update
from sqlmodel.ext.asyncio.session import AsyncSession

ADMIN_SCOPE = "admin"
STEWARD_SCOPES = frozenset({"grants:approve", "catalog:write"})


class WorkflowError(ValueError):
    """A change that cannot be made; the message says what would be valid (shown to the caller)."""

    code = "BAD_USER_INPUT"


class WorkflowForbidden(WorkflowError):
    """The caller may not do this (wrong department or role); the message says who may."""

    code = "FORBIDDEN"


class WorkflowNotFound(WorkflowError):
    code = "NOT_FOUND"


class WorkflowConflict(WorkflowError):
    """Someone else took a step on the same demand or report meanwhile; look again."""

    code = "CONFLICT"


@dataclass(frozen=True)
class Actor:
    """Who acts: a department's system or person (`department`), an administrator (`admin`
    scope: any department), or the CLI's operator (an administrator on this machine)."""

    kind: str  # client | user | operator
    id: str
    department: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)

    @property
    def admin(self) -> bool:
        return ADMIN_SCOPE in self.scopes

    @property
    def steward(self) -> bool:
        return bool(STEWARD_SCOPES & self.scopes)

    def label(self) -> str:
        return f"{self.kind}:{self.id}"

    def acting_for(self, department: str | None, what: str) -> str:
        """The department this actor acts for: its own; an administrator names one."""
        if self.admin:
            chosen = department or self.department
            if not chosen:
                raise WorkflowError(f"an administrator names the department to {what} for")
            return chosen
        if not self.department:
            raise WorkflowForbidden(f"only a department's principal may {what}")
        if department and department != self.department:
            raise WorkflowForbidden(
                f"you act for {self.department}; only an administrator may {what} for {department}"
            )
        return self.department

    def check_steward_of(self, department: str, what: str) -> None:
        """Provider-side steps: that department's data steward (grants:approve or catalog:write
        scope, its own department only) or an administrator."""
        if self.admin:
            return
        if self.department != department or not self.steward:
            raise WorkflowForbidden(f"only {department}'s data steward (or an administrator) may {what}")


async def save_step(session: AsyncSession, row: Any, seen_history: str, what: str) -> None:
    """Write a step's changes only if nobody took a step since the row was read (its history is
    as it was): two stewards answering at once cannot both win, nor one overwrite the other."""
    model = type(row)
    values = {name: getattr(row, name) for name in model.model_fields if name != "id"}
    session.expunge(row)
    result = await session.exec(
        update(model).where(model.id == row.id, model.history == seen_history).values(**values)
    )
    if result.rowcount != 1:
        await session.rollback()
        raise WorkflowConflict(f"{what} changed meanwhile; list it again and retry")
    await session.commit()


def operator_actor(name: str) -> Actor:
    return Actor("operator", name, None, frozenset({ADMIN_SCOPE}))


def now_utc() -> datetime:
    return datetime.now(UTC)


def aware(dt: datetime | None) -> datetime | None:
    return dt.replace(tzinfo=UTC) if dt is not None and dt.tzinfo is None else dt


def iso(dt: datetime | None) -> str | None:
    value = aware(dt)
    return value.isoformat() if value is not None else None


def append_history(
    history: str, actor: Actor, action: str, state: str, at: datetime | None = None, **detail: Any
) -> str:
    """The JSON history column with one more step (who, when, what, the state after it)."""
    steps = json.loads(history or "[]")
    steps.append(
        {
            "at": (aware(at) or now_utc()).isoformat(),
            "by": actor.label(),
            "action": action,
            "state": state,
            **{k: v for k, v in detail.items() if v is not None},
        }
    )
    return json.dumps(steps, ensure_ascii=False)


def listing(values: Any) -> str:
    names = sorted(values)
    return ", ".join(names) if names else "(none)"
