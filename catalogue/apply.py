"""Applying a catalogue file to the live catalogue: the diff, then one transaction.

The file is authoritative for the departments it declares (catalogue.document): their datasets
become exactly the file's. The plan lists every change to the catalogue and to the pool tables;
what loses data (a dataset or field removed, a field's type changed: its column is dropped and
added again, empty) is applied only when allowed, and says how many rows or values it loses.

Everything — catalogue rows, pool DDL (CREATE TABLE, ADD/DROP COLUMN, indexes, through
Alembic's operations so it is the same on SQLite and PostgreSQL), the version bump that makes
running gateways rebuild their schemas — happens in one transaction: a failure anywhere leaves
catalogue and pool as they were (both databases have transactional DDL; on SQLite the
transaction is opened explicitly, as the sqlite3 module would run DDL outside one)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import Connection, column, func, inspect, select, table
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Session, col, delete
from sqlmodel import select as sm_select

from catalogue import service
from catalogue.document import CatalogueDoc, from_specs, to_specs
from catalogue.freshness import DatasetStatus
from catalogue.models import CatalogueState, Dataset, DatasetField, Department, utcnow
from catalogue.pool import pool_table, pool_table_name
from catalogue.protection import DataKey, is_protected
from catalogue.spec import DatasetSpec, DepartmentSpec, FieldSpec

_SKIP = {"fields", "version"}


def _value(v: Any) -> Any:
    if hasattr(v, "value"):
        return v.value
    if isinstance(v, tuple):
        return list(v)
    return v


def _attr_changes(old: Any, new: Any, skip: Iterable[str] = ()) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for f in fields(old):
        if f.name in skip:
            continue
        a, b = getattr(old, f.name), getattr(new, f.name)
        if a != b:
            out[f.name] = [_value(a), _value(b)]
    return out


@dataclass
class Change:
    action: str  # add | change | remove | retype
    kind: str  # department | dataset | field
    target: str  # xa_cgj, public_toilet, public_toilet.opening_hours
    changes: dict[str, list[Any]] = field(default_factory=dict)  # attribute: [old, new]
    pool: list[str] = field(default_factory=list)  # DDL, as said to the user
    loses: str | None = None  # what a destructive change loses
    note: str | None = None

    @property
    def destructive(self) -> bool:
        return self.loses is not None

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"action": self.action, "kind": self.kind, "target": self.target}
        for name in ("changes", "pool", "loses", "note"):
            if getattr(self, name):
                d[name] = getattr(self, name)
        d["destructive"] = self.destructive
        return d

    def render(self) -> str:
        sign = {"add": "+", "remove": "-", "change": "~", "retype": "!"}[self.action]
        lines = [f"{sign} {self.kind} {self.target}"]
        for name, (a, b) in self.changes.items():
            lines.append(f"    {name}: {a!r} → {b!r}")
        lines += [f"    pool: {p}" for p in self.pool]
        if self.loses:
            lines.append(f"    LOSES {self.loses}")
        if self.note:
            lines.append(f"    note: {self.note}")
        return "\n".join(lines)


@dataclass
class Plan:
    changes: list[Change]
    departments: list[str]  # the departments the file is authoritative for

    @property
    def destructive(self) -> list[Change]:
        return [c for c in self.changes if c.destructive]

    def as_dict(self) -> dict[str, Any]:
        return {
            "departments": self.departments,
            "changes": [c.as_dict() for c in self.changes],
            "destructive": len(self.destructive),
        }

    def render(self) -> str:
        if not self.changes:
            return "no changes: the live catalogue already matches the file"
        return "\n".join(c.render() for c in self.changes)


@dataclass
class ApplyResult:
    plan: Plan
    applied: bool
    version: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**self.plan.as_dict(), "applied": self.applied, "version": self.version}


class DestructiveRefused(service.CatalogueError):
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        lost = "; ".join(f"{c.kind} {c.target}: {c.loses}" for c in plan.destructive)
        super().__init__(f"destructive changes need --allow-destructive (would lose: {lost})")


class ScopeRefused(service.CatalogueError):
    """The file reaches beyond the departments the caller may change."""


# ---------------------------------------------------------------- planning


def _count(conn: Connection, table_name: str, column_name: str | None = None) -> int:
    if not inspect(conn).has_table(table_name):
        return 0
    t = table(table_name, column(column_name)) if column_name else table(table_name)
    query = select(func.count()).select_from(t)
    if column_name:
        query = query.where(t.c[column_name].is_not(None))
    return int(conn.execute(query).scalar_one())


def _grants_on(conn: Connection, dataset: str) -> int:
    grant = table("grant", column("dataset_code"))
    if not inspect(conn).has_table("grant"):
        return 0
    return int(
        conn.execute(
            select(func.count()).select_from(grant).where(grant.c.dataset_code == dataset)
        ).scalar_one()
    )


def _pool_diff(old: DatasetSpec, new: DatasetSpec) -> tuple[list[str], list[str], list[str], list[str]]:
    """Pool-table columns to add and drop, indexes to add and drop (by the catalogue's own
    definition of the table: columns someone else added are left alone)."""
    a, b = pool_table(old), pool_table(new)
    retyped = {f.name for f in new.fields if f.name in a.c and _type_of(old, f.name) not in (None, f.type)}
    add_cols = [c.name for c in b.columns if c.name not in a.c or c.name in retyped]
    drop_cols = [c.name for c in a.columns if c.name not in b.c or c.name in retyped]
    a_ix = {str(ix.name): ix for ix in a.indexes}
    b_ix = {str(ix.name): ix for ix in b.indexes}
    add_ix = sorted(n for n in b_ix if n not in a_ix or {c.name for c in b_ix[n].columns} & retyped)
    drop_ix = sorted(n for n in a_ix if n not in b_ix or {c.name for c in a_ix[n].columns} & set(drop_cols))
    return add_cols, drop_cols, add_ix, drop_ix


def _type_of(spec: DatasetSpec, name: str) -> Any:
    try:
        return spec.field(name).type
    except KeyError:
        return None


def make_plan(
    conn: Connection,
    live: service.Catalogue,
    departments: list[DepartmentSpec],
    datasets: list[DatasetSpec],
) -> Plan:
    scope = [d.code for d in departments]
    changes: list[Change] = []
    for d in departments:
        was = live.departments.get(d.code)
        if was is None:
            changes.append(Change("add", "department", d.code, {"name": [None, d.name]}))
        elif (changed := _attr_changes(was, d)) != {}:
            changes.append(Change("change", "department", d.code, changed))
    wanted = {s.code for s in datasets}
    by_resource = {s.resource_code: s.code for s in live.datasets.values()}
    for new in datasets:
        owner = by_resource.get(new.resource_code)
        # the other dataset keeps that code unless the file renames or removes it
        if owner is not None and owner not in wanted and live.datasets[owner].department not in scope:
            raise service.CatalogueError(
                f"dataset {new.code}: resource code {new.resource_code} belongs to dataset {owner}"
            )
        old = live.datasets.get(new.code)
        table_name = pool_table_name(new.code)
        if old is None:
            t = pool_table(new)
            ddl = [f"CREATE TABLE {table_name} ({len(t.columns)} columns, {len(t.indexes)} indexes)"]
            changes.append(Change("add", "dataset", new.code, {"fields": [None, len(new.fields)]}, ddl))
            continue
        diff = _attr_changes(old, new, _SKIP)
        if [f.name for f in old.fields] != [f.name for f in new.fields]:
            diff["field order"] = [[f.name for f in old.fields], [f.name for f in new.fields]]
        add_cols, drop_cols, add_ix, drop_ix = _pool_diff(old, new)
        pool = [f"DROP INDEX {n}" for n in drop_ix]
        pool += [f"ALTER TABLE {table_name} DROP COLUMN {c}" for c in drop_cols]
        pool += [f"ALTER TABLE {table_name} ADD COLUMN {c}" for c in add_cols]
        pool += [f"CREATE INDEX {n}" for n in add_ix]
        if diff or pool:
            changes.append(Change("change", "dataset", new.code, diff, pool))
        for f in new.fields:
            changes.extend(_field_changes(conn, new.code, _field_or_none(old, f.name), f))
        for f in old.fields:
            if _field_or_none(new, f.name) is None:
                values = _count(conn, table_name, f.name)
                changes.append(
                    Change(
                        "remove",
                        "field",
                        f"{new.code}.{f.name}",
                        loses=f"{values:,} values in column {f.name}",
                    )
                )
    for gone in live.datasets.values():
        if gone.department in scope and gone.code not in wanted:
            grants = _grants_on(conn, gone.code)
            if grants:
                raise service.CatalogueError(
                    f"dataset {gone.code} is not in the file but has {grants} grant(s): "
                    "a dataset with grants "
                    "cannot be removed (keep it with published: false, or revoke and delete its grants first)"
                )
            rows = _count(conn, pool_table_name(gone.code))
            changes.append(
                Change(
                    "remove",
                    "dataset",
                    gone.code,
                    pool=[f"DROP TABLE {pool_table_name(gone.code)}"],
                    loses=f"{rows:,} rows in {pool_table_name(gone.code)} and its data keys",
                )
            )
    return Plan(changes, scope)


def _field_or_none(spec: DatasetSpec, name: str) -> FieldSpec | None:
    try:
        return spec.field(name)
    except KeyError:
        return None


def _field_changes(conn: Connection, dataset: str, old: FieldSpec | None, new: FieldSpec) -> list[Change]:
    target = f"{dataset}.{new.name}"
    if old is None:
        return [Change("add", "field", target, {"type": [None, new.type.value]})]
    diff = _attr_changes(old, new)
    if not diff:
        return []
    note = loses = None
    if is_protected(old) != is_protected(new):
        values = _count(conn, pool_table_name(dataset), new.name)
        if values and is_protected(new):
            note = (
                f"{values:,} stored values must be encrypted (the CLI does it; else `shuqiao pool encrypt`)"
            )
        elif values:  # no longer protected: the stored ciphertexts would be served as they are
            loses = f"{values:,} values in column {new.name} stay ciphertext: reload them"
    if "type" in diff:
        values = _count(conn, pool_table_name(dataset), new.name)
        return [
            Change(
                "retype",
                "field",
                target,
                diff,
                loses=f"{values:,} values in column {new.name} (dropped and added again as {new.type.value})",
                note=note,
            )
        ]
    return [Change("change", "field", target, diff, loses=loses, note=note)]


# ---------------------------------------------------------------- applying


def _lock(conn: Connection) -> None:
    """Serialise applies: SQLite's write lock from the start; on PostgreSQL the state row."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        state = CatalogueState.__table__  # type: ignore[attr-defined]
        conn.execute(select(state.c.version).where(state.c.id == 1).with_for_update())


def _write_dataset(session: Session, spec: DatasetSpec) -> None:
    row = session.exec(sm_select(Dataset).where(col(Dataset.code) == spec.code)).one_or_none()
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
        for existing in session.exec(sm_select(DatasetField).where(col(DatasetField.dataset_id) == row.id)):
            old_fields[existing.name] = existing
    for name, value in service.dataset_columns(spec).items():
        setattr(row, name, value)
    row.updated_at = utcnow()
    session.add(row)
    session.flush()
    for position, f in enumerate(spec.fields):
        frow = old_fields.pop(f.name, None) or DatasetField(
            dataset_id=row.id or 0, position=position, name=f.name, type=f.type.value, title=f.title
        )
        service.fill_field_row(frow, f, position)
        session.add(frow)
    for gone in old_fields.values():
        session.delete(gone)
    session.flush()


def _remove_dataset(session: Session, code: str) -> None:
    row = session.exec(sm_select(Dataset).where(col(Dataset.code) == code)).one()
    session.exec(delete(DatasetField).where(col(DatasetField.dataset_id) == row.id))
    session.exec(delete(DataKey).where(col(DataKey.dataset_code) == code))
    # its size, freshness and sync source go with it: a dataset added later under the same code
    # starts unloaded, and `data sync --all` does not try a source for a dataset that is gone
    session.exec(delete(DatasetStatus).where(col(DatasetStatus.dataset_code) == code))
    session.delete(row)
    session.flush()


def alter_pool(conn: Connection, old: DatasetSpec | None, new: DatasetSpec | None) -> None:
    """One dataset's pool table from `old`'s shape to `new`'s (None: no table)."""
    ops = Operations(MigrationContext.configure(conn))
    if new is None:
        assert old is not None
        if inspect(conn).has_table(pool_table_name(old.code)):
            ops.drop_table(pool_table_name(old.code))
        return
    if old is not None:
        name = pool_table_name(new.code)
        insp = inspect(conn)
        if insp.has_table(name):
            _, drop_cols, _, drop_ix = _pool_diff(old, new)
            existing_ix = {ix["name"] for ix in insp.get_indexes(name)}
            for ix in drop_ix:
                if ix in existing_ix:
                    ops.drop_index(ix, table_name=name)
            existing = {c["name"] for c in insp.get_columns(name)}
            for c in drop_cols:
                if c in existing:
                    ops.drop_column(name, c)
    service.sync_pool_table_sync(conn, new)


def _bump(session: Session) -> int:
    state = session.get(CatalogueState, 1)
    if state is None:
        state = CatalogueState(id=1, version=1)
    else:
        state.version += 1
        state.changed_at = utcnow()
    session.add(state)
    session.flush()
    return state.version


def _apply_sync(
    conn: Connection,
    departments: list[DepartmentSpec],
    datasets: list[DatasetSpec],
    dry_run: bool,
    allow_destructive: bool,
    allowed: frozenset[str] | None,
) -> ApplyResult:
    _lock(conn)
    live = service.load_catalogue_sync(conn)
    if allowed is not None:
        outside = sorted({d.code for d in departments} - allowed)
        moved = sorted(
            s.code
            for s in datasets
            if s.code in live.datasets and live.datasets[s.code].department not in allowed
        )
        if outside or moved:
            what = ", ".join([*(f"department {d}" for d in outside), *(f"dataset {d}" for d in moved)])
            raise ScopeRefused(f"the file changes what you may not change: {what}")
    plan = make_plan(conn, live, departments, datasets)
    if dry_run or not plan.changes:
        return ApplyResult(plan, applied=False, version=live.version)
    if plan.destructive and not allow_destructive:
        raise DestructiveRefused(plan)
    session = Session(bind=conn)
    for d in departments:
        row = session.get(Department, d.code) or Department(code=d.code, name=d.name)
        row.name, row.name_en = d.name, d.name_en
        session.add(row)
    session.flush()
    scope = {d.code for d in departments}
    wanted = {s.code for s in datasets}
    for gone in live.datasets.values():
        if gone.department in scope and gone.code not in wanted:
            _remove_dataset(session, gone.code)
            alter_pool(conn, gone, None)
    for spec in datasets:
        before = live.datasets.get(spec.code)
        if before is not None and before == spec:
            continue
        _write_dataset(session, spec)
        alter_pool(conn, before, spec)
    version = _bump(session)
    session.close()
    return ApplyResult(plan, applied=True, version=version)


async def apply_document(
    engine: AsyncEngine,
    doc: CatalogueDoc,
    *,
    dry_run: bool = False,
    allow_destructive: bool = False,
    allowed_departments: frozenset[str] | None = None,
) -> ApplyResult:
    """Diff the file against the live catalogue and (unless `dry_run`) apply it, all or nothing.
    `allowed_departments`: a steward's, None for an administrator."""
    departments, datasets = to_specs(doc)
    for spec in datasets:
        service.validate(spec)
    async with engine.connect() as conn, conn.begin() as tx:
        result: ApplyResult = await conn.run_sync(
            _apply_sync, departments, datasets, dry_run, allow_destructive, allowed_departments
        )
        if not result.applied:
            await tx.rollback()
    return result


async def export_document(engine: AsyncEngine, departments: Iterable[str] | None = None) -> CatalogueDoc:
    """The live catalogue (or the named departments' part of it) as a catalogue document."""
    live = await service.load_catalogue(engine)
    only = set(departments) if departments is not None else None
    depts = [d for d in live.departments.values() if only is None or d.code in only]
    codes = {d.code for d in depts}
    specs = [s for s in live.datasets.values() if s.department in codes]  # in creation order
    # departments in the order their first dataset was created (a file's own order, applied
    # to an empty catalogue), then those without datasets by code
    first: dict[str, int] = {}
    for i, s in enumerate(specs):
        first.setdefault(s.department, i)
    depts.sort(key=lambda d: (first.get(d.code, len(specs)), d.code))
    return from_specs(depts, specs)
