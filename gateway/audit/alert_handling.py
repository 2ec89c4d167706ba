"""Officers handling alerts: acknowledge, assign to an officer, comment, close with a reason.

Which action is allowed in which state is policies/alert_handling.py (pure); this module applies
its decision to `audit_alert` by compare-and-set (the state and assignee read must still be the
stored ones, so two officers acting at once cannot both win) and records each action, in the same
transaction, in `audit_alert_action` (migration 0023): who, when, from and to which state, the
assignee, the reason, the comment. The HTTP, GraphQL and CLI callers make each action an audit
event of its own (the comment sealed in its variables)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Index, column, false, insert, select, table, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import Field, SQLModel

from gateway.audit.alerts import ALERTS, alert_json
from gateway.audit.chain import canonical_time
from gateway.db import table_of
from policies.alert_handling import AlertAction, Refusal, decide

OFFICER_ROLES = ("security_officer", "admin")


class AuditAlertAction(SQLModel, table=True):
    """One row per action on an alert, oldest first: the alert's history."""

    __tablename__ = "audit_alert_action"

    id: int | None = Field(default=None, primary_key=True)
    alert_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    at: datetime
    by: str = Field(max_length=200)
    action: str = Field(max_length=16)
    from_state: str = Field(max_length=16)
    to_state: str = Field(max_length=16)
    assignee: str | None = Field(default=None, max_length=100)
    reason: str | None = Field(default=None, max_length=32)
    comment: str | None = None

    __table_args__ = (Index("ix_audit_alert_action_alert", "alert_id", "id"),)


ACTIONS_TABLE = table_of(AuditAlertAction)


class HandlingError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def action_json(row: Any) -> dict[str, Any]:
    return {
        "at": canonical_time(row.at),
        "by": row.by,
        "action": row.action,
        "from_state": row.from_state,
        "to_state": row.to_state,
        "assignee": row.assignee,
        "reason": row.reason,
        "comment": row.comment,
    }


async def history(conn: AsyncConnection, alert_id: int) -> list[dict[str, Any]]:
    rows = await conn.execute(
        select(ACTIONS_TABLE).where(ACTIONS_TABLE.c.alert_id == alert_id).order_by(ACTIONS_TABLE.c.id)
    )
    return [action_json(r) for r in rows]


async def alert_with_history(conn: AsyncConnection, alert_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(select(ALERTS).where(ALERTS.c.id == alert_id))).first()
    if row is None:
        return None
    return {**alert_json(row), "history": await history(conn, alert_id)}


# The people table, named here rather than imported: the audit package does not reach into
# gateway.identity (pyproject's import contract); these columns are all it reads.
USERS = table("app_user", column("username"), column("display_name"), column("roles"), column("disabled"))


async def officers(conn: AsyncConnection) -> list[dict[str, str]]:
    """The people an alert can be assigned to: enabled, with the security_officer or admin role."""
    rows = await conn.execute(
        select(USERS.c.username, USERS.c.display_name, USERS.c.roles)
        .where(USERS.c.disabled == false())
        .order_by(USERS.c.username)
    )
    return [
        {"username": r.username, "display_name": r.display_name}
        for r in rows
        if set(str(r.roles).split()) & set(OFFICER_ROLES)
    ]


async def act(engine: AsyncEngine, alert_id: int, by: str, action: AlertAction) -> dict[str, Any]:
    """Apply one action; the alert with its history, or HandlingError (400, 404, 409)."""
    malformed = decide("open", None, action)  # the request's own faults first, whatever the state
    if isinstance(malformed, Refusal) and malformed.status == 400:
        raise HandlingError(400, malformed.code, malformed.message)
    now = datetime.now(UTC)
    assignee = (action.assignee or "").strip() or None
    comment = action.comment.strip() or None
    async with engine.begin() as conn:
        if action.action == "assign" and assignee not in {o["username"] for o in await officers(conn)}:
            raise HandlingError(400, "BAD_USER_INPUT", f"{assignee!r} is not an officer who can be assigned.")
        row = (await conn.execute(select(ALERTS).where(ALERTS.c.id == alert_id))).first()
        if row is None:
            raise HandlingError(404, "NOT_FOUND", "No alert with that id.")
        decision = decide(row.state, row.assignee, action)
        if isinstance(decision, Refusal):
            raise HandlingError(decision.status, decision.code, decision.message)
        values: dict[str, Any] = {"state": decision.state}
        if decision.acknowledges:
            values.update(acknowledged_at=now, acknowledged_by=by, ack_comment=comment)
        if action.action == "assign":
            values["assignee"] = assignee
        if action.action == "close":
            values.update(closed_at=now, closed_by=by, close_reason=action.reason)
        moved = await conn.execute(
            update(ALERTS)
            .where(
                ALERTS.c.id == alert_id,
                ALERTS.c.state == row.state,
                ALERTS.c.assignee.is_(None) if row.assignee is None else ALERTS.c.assignee == row.assignee,
            )
            .values(**values)
        )
        if moved.rowcount != 1:
            raise HandlingError(409, "CONFLICT", "The alert changed meanwhile; reload it.")
        await conn.execute(
            insert(ACTIONS_TABLE).values(
                alert_id=alert_id,
                at=now,
                by=by,
                action=action.action,
                from_state=row.state,
                to_state=decision.state,
                assignee=assignee if action.action == "assign" else None,
                reason=action.reason if action.action == "close" else None,
                comment=comment,
            )
        )
        doc = await alert_with_history(conn, alert_id)
    assert doc is not None
    return doc
