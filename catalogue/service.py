"""Reading and changing the catalogue. Every change bumps the catalogue version in the
same transaction, which is how every worker learns to rebuild its schemas."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import Enum
from typing import TypeVar

from sqlalchemy import Connection, inspect, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.schema import CreateIndex
from sqlmodel import Session as SyncSession
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from catalogue.models import CatalogueState, Dataset, DatasetField, Department, utcnow
from catalogue.pool import pool_table
from catalogue.protection import check_indexes, check_protectable, check_watermarkable
from catalogue.spec import DatasetSpec, DepartmentSpec, Entity, FieldSpec, FieldType
from policies.model import PI, Category, Level, MaskRule, Open, Share


class CatalogueError(ValueError):
    """A catalogue change that cannot be made (bad names, incompatible field changes…)."""


@dataclass(frozen=True)
class Catalogue:
    version: int
    departments: dict[str, DepartmentSpec] = field(default_factory=dict)
    datasets: dict[str, DatasetSpec] = field(default_factory=dict)

    def published(self) -> list[DatasetSpec]:
        return [d for d in self.datasets.values() if d.published]


E = TypeVar("E", bound=Enum)


def _opt(enum: type[E], value: str | None) -> E | None:
    return enum(value) if value else None


def _field_spec(row: DatasetField) -> FieldSpec:
    return FieldSpec(
        name=row.name,
        type=FieldType(row.type),
        title=row.title,
        description=row.description,
        level=Level(row.level),
        pi=PI(row.pi),
        share=_opt(Share, row.share),
        open=_opt(Open, row.open),
        open_personal=row.open_personal,
        mask=_opt(MaskRule, row.mask),
        nullable=row.nullable,
        indexed=row.indexed,
        references=_opt(Entity, row.references),
        link_name=row.link_name,
        watermark_tolerance=Decimal(row.watermark_tolerance) if row.watermark_tolerance else None,
        watermark_text=row.watermark_text,
        decision_relevant=row.decision_relevant,
        allowed_values=tuple(row.allowed_values) if row.allowed_values is not None else None,
        max_length=row.max_length,
    )


def _dataset_spec(row: Dataset, fields: list[DatasetField]) -> DatasetSpec:
    return DatasetSpec(
        code=row.code,
        resource_code=row.resource_code,
        name=row.name,
        name_en=row.name_en,
        department=row.department_code,
        category=Category(row.category),
        share=Share(row.share),
        open=Open(row.open),
        fields=tuple(_field_spec(f) for f in sorted(fields, key=lambda f: f.position)),
        description=row.description,
        theme=row.theme,
        update_cycle=row.update_cycle,
        format=row.format,
        share_conditions=row.share_conditions,
        open_conditions=row.open_conditions,
        entity=_opt(Entity, row.entity),
        entity_field=row.entity_field,
        published=row.published,
        licence=row.licence,
        contact=row.contact,
        tags=tuple(row.tags or ()),
        indexes=tuple(tuple(ix) for ix in row.indexes or ()),
    )


async def catalogue_version(conn: AsyncConnection) -> int:
    version = await conn.scalar(select(col(CatalogueState.version)).where(col(CatalogueState.id) == 1))
    return int(version or 0)


async def load_catalogue(engine: AsyncEngine) -> Catalogue:
    async with AsyncSession(engine) as session:
        state = await session.get(CatalogueState, 1)
        departments = (await session.exec(select(Department))).all()
        datasets = (await session.exec(select(Dataset).order_by(col(Dataset.id)))).all()
        fields = (await session.exec(select(DatasetField))).all()
    return _catalogue(state, departments, datasets, fields)


def load_catalogue_sync(conn: Connection) -> Catalogue:
    """The catalogue as `conn`'s transaction sees it (catalogue.apply reads it under its lock)."""
    session = SyncSession(bind=conn)
    state = session.get(CatalogueState, 1)
    departments = session.exec(select(Department)).all()
    datasets = session.exec(select(Dataset).order_by(col(Dataset.id))).all()
    fields = session.exec(select(DatasetField)).all()
    session.close()
    return _catalogue(state, departments, datasets, fields)


def _catalogue(
    state: CatalogueState | None,
    departments: Sequence[Department],
    datasets: Sequence[Dataset],
    fields: Sequence[DatasetField],
) -> Catalogue:
    by_dataset: dict[int, list[DatasetField]] = {}
    for f in fields:
        by_dataset.setdefault(f.dataset_id, []).append(f)
    return Catalogue(
        version=state.version if state else 0,
        departments={d.code: DepartmentSpec(d.code, d.name, d.name_en) for d in departments},
        datasets={d.code: _dataset_spec(d, by_dataset.get(d.id or 0, [])) for d in datasets},
    )


async def bump_version(session: AsyncSession) -> None:
    state = await session.get(CatalogueState, 1)
    if state is None:
        session.add(CatalogueState(id=1, version=1))
    else:
        state.version += 1
        state.changed_at = utcnow()
        session.add(state)


async def save_department(engine: AsyncEngine, spec: DepartmentSpec) -> None:
    async with AsyncSession(engine) as session:
        row = await session.get(Department, spec.code) or Department(code=spec.code, name=spec.name)
        row.name, row.name_en = spec.name, spec.name_en
        session.add(row)
        await bump_version(session)
        await session.commit()


def validate(spec: DatasetSpec) -> None:
    """Raise CatalogueError if the spec cannot be stored."""
    names = [f.name for f in spec.fields]
    if len(set(names)) != len(names):
        raise CatalogueError(f"dataset {spec.code}: duplicate field names")
    for name in [spec.code, *names]:
        if not name.isidentifier() or not name.islower() or name.startswith("_"):
            raise CatalogueError(f"{name!r} is not a lower snake_case identifier")
    if any("__" in n for n in names):
        raise CatalogueError(f"dataset {spec.code}: field names may not contain '__' (reserved)")
    problem = check_protectable(spec)
    if problem:
        raise CatalogueError(problem)
    marks = check_watermarkable(spec)
    if marks:
        raise CatalogueError("; ".join(m for _, m in marks))
    if spec.entity_field and spec.entity_field not in names:
        raise CatalogueError(f"dataset {spec.code}: entity field {spec.entity_field} missing")
    problem = check_indexes(spec)
    if problem:
        raise CatalogueError(problem)


def dataset_columns(spec: DatasetSpec) -> dict[str, object]:
    """The `dataset` row's values for a spec (besides its code)."""
    return {
        "resource_code": spec.resource_code,
        "name": spec.name,
        "name_en": spec.name_en,
        "description": spec.description,
        "department_code": spec.department,
        "category": spec.category.value,
        "theme": spec.theme,
        "update_cycle": spec.update_cycle,
        "format": spec.format,
        "share": spec.share.value,
        "share_conditions": spec.share_conditions,
        "open": spec.open.value,
        "open_conditions": spec.open_conditions,
        "entity": spec.entity.value if spec.entity else None,
        "entity_field": spec.entity_field,
        "published": spec.published,
        "licence": spec.licence,
        "contact": spec.contact,
        "tags": list(spec.tags),
        "indexes": [list(ix) for ix in spec.indexes] or None,
    }


def fill_field_row(frow: DatasetField, f: FieldSpec, position: int) -> None:
    frow.position, frow.type, frow.title, frow.description = position, f.type.value, f.title, f.description
    frow.level, frow.pi = int(f.level), f.pi.value
    frow.share = f.share.value if f.share else None
    frow.open = f.open.value if f.open else None
    frow.open_personal, frow.mask = f.open_personal, f.mask.value if f.mask else None
    frow.nullable, frow.indexed = f.nullable, f.indexed
    frow.references = f.references.value if f.references else None
    frow.link_name = f.link_name
    frow.watermark_tolerance = str(f.watermark_tolerance) if f.watermark_tolerance is not None else None
    frow.watermark_text = f.watermark_text
    frow.decision_relevant = f.decision_relevant
    frow.allowed_values = list(f.allowed_values) if f.allowed_values is not None else None
    frow.max_length = f.max_length


_validate = validate  # the name tests/demo knows


async def save_dataset(engine: AsyncEngine, spec: DatasetSpec) -> None:
    """Create or update a catalogue entry and its pool table, in one transaction.

    New fields become new nullable columns; a field's type cannot change in place
    (that would rewrite data, which is a migration, not a catalogue edit)."""
    validate(spec)
    async with AsyncSession(engine) as session:
        row = (await session.exec(select(Dataset).where(col(Dataset.code) == spec.code))).one_or_none()
        old_fields: dict[str, DatasetField] = {}
        if row is None:
            row = Dataset(
                code=spec.code,
                resource_code=spec.resource_code,
                name=spec.name,
                department_code=spec.department,
                category=spec.category.value,
                share=spec.share.value,
                open=spec.open.value,
            )
        else:
            for existing in await session.exec(
                select(DatasetField).where(col(DatasetField.dataset_id) == row.id)
            ):
                old_fields[existing.name] = existing
        for name, value in dataset_columns(spec).items():
            setattr(row, name, value)
        row.updated_at = utcnow()
        session.add(row)
        await session.flush()
        for position, f in enumerate(spec.fields):
            old = old_fields.pop(f.name, None)
            if old is not None and old.type != f.type.value:
                raise CatalogueError(f"{spec.code}.{f.name}: type change {old.type} → {f.type}")
            frow = old or DatasetField(
                dataset_id=row.id or 0, position=position, name=f.name, type=f.type.value, title=f.title
            )
            fill_field_row(frow, f, position)
            session.add(frow)
        if old_fields:
            raise CatalogueError(
                f"{spec.code}: removing fields ({', '.join(sorted(old_fields))}) is not a catalogue edit"
            )
        await bump_version(session)
        conn = await session.connection()
        await conn.run_sync(sync_pool_table_sync, spec)
        await session.commit()


async def sync_pool_table(engine: AsyncEngine, spec: DatasetSpec) -> None:
    """Bring a dataset's pool table up to its definition (new columns, blind indexes, indexes)."""
    async with engine.begin() as conn:
        await conn.run_sync(sync_pool_table_sync, spec)


def sync_pool_table_sync(sync_conn: Connection, spec: DatasetSpec) -> None:
    table = pool_table(spec)
    inspector = inspect(sync_conn)
    if not inspector.has_table(table.name):
        table.create(sync_conn)
        return
    existing = {c["name"] for c in inspector.get_columns(table.name)}
    preparer = sync_conn.dialect.identifier_preparer
    for column in table.columns:
        if column.name not in existing:
            coltype = column.type.compile(dialect=sync_conn.dialect)
            sync_conn.exec_driver_sql(
                f"ALTER TABLE {preparer.quote(table.name)} ADD COLUMN {preparer.quote(column.name)} {coltype}"
            )
    existing_ix = {ix["name"] for ix in inspector.get_indexes(table.name)}
    for index in table.indexes:
        if index.name not in existing_ix:
            sync_conn.execute(CreateIndex(index))


async def set_published(engine: AsyncEngine, code: str, published: bool) -> DatasetSpec:
    async with AsyncSession(engine) as session:
        result = await session.exec(
            update(Dataset).where(col(Dataset.code) == code).values(published=published, updated_at=utcnow())
        )
        if result.rowcount == 0:
            raise CatalogueError(f"no dataset {code!r}")
        await bump_version(session)
        await session.commit()
    catalogue = await load_catalogue(engine)
    return catalogue.datasets[code]


async def update_field(engine: AsyncEngine, dataset: str, field_name: str, **changes: object) -> DatasetSpec:
    """Change a field's classification (level, pi, mask, share/open overrides…)."""
    catalogue = await load_catalogue(engine)
    spec = catalogue.datasets.get(dataset)
    if spec is None:
        raise CatalogueError(f"no dataset {dataset!r}")
    try:
        old = spec.field(field_name)
    except KeyError:
        raise CatalogueError(f"dataset {dataset!r} has no field {field_name!r}") from None
    new_fields = tuple(replace(f, **changes) if f is old else f for f in spec.fields)  # type: ignore[arg-type]
    new_spec = replace(spec, fields=new_fields)
    await save_dataset(engine, new_spec)
    return new_spec
