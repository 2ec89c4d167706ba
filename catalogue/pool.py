"""The data pool: one table per dataset, its columns the dataset's fields."""

from __future__ import annotations

import hashlib

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    Numeric,
    Table,
    Text,
)
from sqlalchemy.types import TypeEngine

from catalogue.protection import blind_column, protected_fields
from catalogue.spec import DatasetSpec, FieldSpec, FieldType

ROW_ID = "_id"  # internal surrogate key: the keyset-pagination tie-breaker, never exposed

_SQL_TYPES: dict[FieldType, TypeEngine] = {
    FieldType.STRING: Text(),
    FieldType.INTEGER: BigInteger(),
    FieldType.FLOAT: Float(),
    FieldType.DECIMAL: Numeric(20, 2),
    FieldType.DATE: Date(),
    FieldType.DATETIME: DateTime(timezone=True),
    FieldType.BOOLEAN: Boolean(),
}


def pool_table_name(dataset_code: str) -> str:
    return f"pool_{dataset_code}"


def _column(f: FieldSpec) -> Column:
    return Column(f.name, _SQL_TYPES[f.type], nullable=f.nullable)


def pool_table(spec: DatasetSpec, metadata: MetaData | None = None) -> Table:
    """The SQLAlchemy Core table for a dataset (not bound to any ORM class).

    Protected (L4 / sensitive) fields are stored encrypted and get a blind-index column;
    lookups on them use that column, so it is what gets indexed."""
    md = metadata if metadata is not None else MetaData()
    name = pool_table_name(spec.code)
    protected = {f.name for f in protected_fields(spec)}
    columns = [
        # INTEGER PRIMARY KEY is SQLite's rowid alias; BIGINT elsewhere.
        Column(ROW_ID, BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
        *(_column(f) for f in spec.fields),
        *(Column(blind_column(n), Text(), nullable=True) for n in sorted(protected)),
    ]
    wanted = {f.name for f in spec.fields if f.indexed or f.references}
    if spec.entity_field:
        wanted.add(spec.entity_field)
    indexed = {blind_column(n) if n in protected else n for n in wanted}
    indexes = [Index(f"ix_{name}_{col}", col) for col in sorted(indexed)]
    indexes += [Index(composite_index_name(name, cols), *cols) for cols in spec.indexes]
    return Table(name, md, *columns, *indexes)


def composite_index_name(table: str, columns: tuple[str, ...]) -> str:
    """`ix_<table>__<col>__<col>…` ('__' cannot occur in a column name, so it never meets a
    single-column index's name), shortened with a digest of the full name past PostgreSQL's
    63-byte identifiers."""
    full = f"ix_{table}__{'__'.join(columns)}"
    if len(full.encode()) <= _MAX_IDENTIFIER:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:10]
    return f"{full[: _MAX_IDENTIFIER - 11]}_{digest}"


_MAX_IDENTIFIER = 63
