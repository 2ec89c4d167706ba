"""Applications (申请) and their history. Requested and approved fields are JSON objects
{field: treatment}; a row scope is a JSON object (policies.workflow.check_scope)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from catalogue.models import utcnow


class Application(SQLModel, table=True):
    __tablename__ = "application"

    id: int | None = Field(default=None, primary_key=True)
    tier: str = Field(max_length=8)  # share | open
    consumer: str = Field(index=True, max_length=64)  # department code or enterprise code
    applicant: str = Field(max_length=128)  # the person or client who applied
    provider: str = Field(index=True, max_length=32)  # the dataset's department, for the steward's queue
    dataset_code: str = Field(foreign_key="dataset.code", index=True, max_length=64)
    requested: str = Field(default="{}")  # JSON {field: clear|masked|encrypted}
    purpose: str = Field(default="")  # 用途
    legal_basis: str = Field(default="")
    period_start: datetime | None = None
    period_end: datetime
    row_scope: str | None = None  # JSON, or None: every row
    state: str = Field(default="draft", index=True, max_length=16)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    submitted_at: datetime | None = None
    decided_at: datetime | None = None
    decided_by: str | None = Field(default=None, max_length=128)
    decision_reason: str | None = None
    approved_fields: str | None = None  # JSON {field: treatment}: what the grant gives
    approved_scope: str | None = None
    approved_end: datetime | None = None
    grant_id: int | None = Field(default=None, foreign_key="grant.id")


class ApplicationEvent(SQLModel, table=True):
    """One step of an application's history: who, when, what, from which state to which, why."""

    __tablename__ = "application_event"

    id: int | None = Field(default=None, primary_key=True)
    application_id: int = Field(foreign_key="application.id", index=True)
    at: datetime = Field(default_factory=utcnow)
    actor: str = Field(max_length=128)
    actor_organisation: str | None = Field(default=None, max_length=64)
    step: str = Field(max_length=16)
    from_state: str | None = Field(default=None, max_length=16)
    to_state: str = Field(max_length=16)
    reason: str | None = None
    changes: str | None = None  # JSON: what the step changed (e.g. the narrowing of an approval)
