"""SQLModel tables for the catalogue. Schema changes go through Alembic (gateway/migrations)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class Department(SQLModel, table=True):
    __tablename__ = "department"

    code: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=200)
    name_en: str = Field(default="", max_length=200)


class Dataset(SQLModel, table=True):
    __tablename__ = "dataset"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True, index=True, max_length=64)
    resource_code: str = Field(unique=True, max_length=64)
    name: str = Field(max_length=200)
    name_en: str = Field(default="", max_length=200)
    description: str = Field(default="")
    department_code: str = Field(foreign_key="department.code", index=True, max_length=32)
    category: str = Field(max_length=16)
    theme: str = Field(default="", max_length=100)
    update_cycle: str = Field(default="daily", max_length=32)
    format: str = Field(default="table", max_length=32)
    share: str = Field(max_length=16)
    share_conditions: str = Field(default="")
    open: str = Field(max_length=16)
    open_conditions: str = Field(default="")
    entity: str | None = Field(default=None, max_length=32)
    entity_field: str | None = Field(default=None, max_length=64)
    published: bool = Field(default=False)
    licence: str = Field(default="", max_length=200)
    contact: str = Field(default="")
    tags: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # composite pool-table indexes (DatasetSpec.indexes), each a list of columns
    indexes: list[list[str]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class DatasetField(SQLModel, table=True):
    __tablename__ = "dataset_field"

    id: int | None = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="dataset.id", index=True)
    position: int
    name: str = Field(max_length=64)
    type: str = Field(max_length=16)
    title: str = Field(max_length=200)
    description: str = Field(default="")
    level: int = Field(default=1)
    pi: str = Field(default="none", max_length=16)
    share: str | None = Field(default=None, max_length=16)
    open: str | None = Field(default=None, max_length=16)
    open_personal: bool = Field(default=False)
    mask: str | None = Field(default=None, max_length=32)
    nullable: bool = Field(default=True)
    indexed: bool = Field(default=False)
    references: str | None = Field(default=None, max_length=32)
    link_name: str | None = Field(default=None, max_length=64)
    watermark_tolerance: str | None = Field(default=None, max_length=40)  # a decimal, as text
    watermark_text: str | None = Field(default=None, max_length=20)  # policies.watermark_text scheme
    decision_relevant: bool = Field(default=False)
    # The values a 信息项 may take (an enumeration) and its greatest length, checked on loading
    allowed_values: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    max_length: int | None = Field(default=None)


class CatalogueState(SQLModel, table=True):
    """One row; `version` goes up on every catalogue change so every worker rebuilds its schemas."""

    __tablename__ = "catalogue_state"

    id: int = Field(default=1, primary_key=True)
    version: int = Field(default=0)
    changed_at: datetime = Field(default_factory=utcnow)
