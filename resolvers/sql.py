"""SQL for a plan, through SQLAlchemy Core: only the planned columns, filters, ordering
and keyset pagination all in the database, every value a bound parameter."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import ColumnElement, Select, Table, and_, false, func, or_, select, true
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from catalogue.pool import ROW_ID, pool_table
from catalogue.spec import DatasetSpec
from resolvers import errors
from resolvers.errors import FieldError
from resolvers.plan import ConnectionPlan, EntityDatasetPlan, Scope


@lru_cache(maxsize=1024)
def table_for(spec: DatasetSpec) -> Table:
    return pool_table(spec)


def _conditions(table: Table, where: list[tuple[str, str, Any]]) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    for name, op, value in where:
        col = table.c[name]
        if op == "eq":
            out.append(col == value)
        elif op == "neq":
            out.append(or_(col != value, col.is_(None)))
        elif op == "in":  # its length is checked when planning (Limits.max_in_list)
            out.append(col.in_(value))
        elif op == "gt":
            out.append(col > value)
        elif op == "gte":
            out.append(col >= value)
        elif op == "lt":
            out.append(col < value)
        elif op == "lte":
            out.append(col <= value)
        elif op == "prefix":
            out.append(col.startswith(value, autoescape=True))
        elif op == "isNull":
            out.append(col.is_(None) if value else col.is_not(None))
        else:  # the schema offers no other operator; refuse rather than ignore
            raise FieldError(f"Unknown operator {op!r}.", errors.BAD_USER_INPUT)
    return out


def _scoped(table: Table, scope: Scope | None) -> list[ColumnElement[bool]]:
    """The caller's row scope (rows any conjunction admits), or nothing when it has none."""
    if scope is None:
        return []
    return [or_(false(), *(and_(true(), *_conditions(table, conj)) for conj in scope))]


def _after(table: Table, order: list[tuple[str, bool]], values: list[Any]) -> ColumnElement[bool]:
    """Rows strictly after `values` in (order…, _id) with NULLs sorting last ascending
    (first descending) — the same rule in SQL's ORDER BY below, on both databases."""
    keys = [(table.c[name], desc) for name, desc in order] + [(table.c[ROW_ID], False)]
    clauses = []
    for k, ((col, desc), v) in enumerate(zip(keys, values, strict=True)):
        beyond: ColumnElement[bool]
        if v is None:
            beyond = col.is_not(None) if desc else false()
        else:
            beyond = (col < v) if desc else or_(col > v, col.is_(None))
        equal_before = [
            c.is_(None) if pv is None else c == pv for (c, _), pv in zip(keys[:k], values[:k], strict=True)
        ]
        clauses.append(and_(*equal_before, beyond))
    return or_(*clauses)


def connection_statement(plan: ConnectionPlan) -> tuple[Select, list[str]]:
    """The page query and the names of the columns it returns, in order (a `_total`
    count follows them when the plan wants it)."""
    ds = plan.dataset
    table = table_for(ds)
    conditions = _scoped(table, plan.scope) + _conditions(table, plan.where)
    names = list(plan.node.columns) if plan.node else []
    order_cols = [c for c, _ in plan.order]
    names += [c for c in order_cols if c not in names]  # cursors need the last row's ordering values
    names.append(ROW_ID)
    columns: list[Any] = [table.c[c] for c in names]
    if plan.want_total:
        total = select(func.count()).select_from(table).where(*conditions).scalar_subquery()
        columns.append(total.label("_total"))
    stmt = select(*columns).where(*conditions)
    if plan.after_values is not None:
        stmt = stmt.where(_after(table, plan.order, plan.after_values))
    ordering = []
    for name, desc in plan.order:
        col = table.c[name]
        ordering.append(col.desc().nulls_first() if desc else col.asc().nulls_last())
    ordering.append(table.c[ROW_ID].asc())
    return stmt.order_by(*ordering).limit(plan.first + 1), names


def count_statement(plan: ConnectionPlan) -> Select:
    table = table_for(plan.dataset)
    conditions = _scoped(table, plan.scope) + _conditions(table, plan.where)
    return select(func.count()).select_from(table).where(true(), *conditions)


def entity_statement(plan: EntityDatasetPlan, keys: list[str]) -> Select:
    """Rows of one dataset for many entity keys, at most `first` per key, in one statement."""
    assert plan.node is not None
    ds = plan.dataset
    table = table_for(ds)
    key_col = table.c[plan.key_column]
    cols = [table.c[c] for c in plan.node.columns]
    rank = func.row_number().over(partition_by=key_col, order_by=table.c[ROW_ID]).label("_rn")
    inner = (
        select(*cols, table.c[ROW_ID], rank).where(key_col.in_(keys), *_scoped(table, plan.scope)).subquery()
    )
    return (
        select(*[inner.c[c] for c in plan.node.columns])
        .where(inner.c["_rn"] <= plan.first)
        .order_by(inner.c[ROW_ID])
    )


@dataclass(frozen=True, slots=True)
class DriverConnection:
    """A PostgreSQL connection lent as asyncpg's own (`driver`) with the engine's `dialect` (to
    compile statements for it), without SQLAlchemy's `AsyncConnection` around it: the gateway
    keeps a few of these between requests (gateway.read_connections)."""

    dialect: Dialect
    driver: Any  # asyncpg.Connection


Reader = AsyncConnection | DriverConnection  # what the executor reads through


async def fetch_all(conn: Reader, statement: Select) -> Sequence[Any]:
    """Rows as index-addressable tuples.

    The statement (built and compiled by SQLAlchemy Core) runs on the driver connection
    directly: on PostgreSQL SQLAlchemy's result layer costs more than the query on a 100-row
    page and asyncpg already returns native Python values; on SQLite each of SQLAlchemy's
    cursor calls is a hop to aiosqlite's thread. Compiled SQL is memoised per statement
    object, and plans (with their statements) are cached."""
    if type(conn) is DriverConnection:
        compiled = _compiled_for(statement, conn)
        assert compiled is not None  # PostgreSQL always compiles
        return await conn.driver.fetch(compiled[0], *compiled[1])
    assert isinstance(conn, AsyncConnection)
    name = conn.dialect.name
    if name not in ("postgresql", "sqlite") or conn.dialect.driver not in ("asyncpg", "aiosqlite"):
        return (await conn.execute(statement)).all()
    compiled = _compiled_for(statement, conn)
    if compiled is None:
        return (await conn.execute(statement)).all()
    sql, params, processors = compiled
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None
    if name == "postgresql":
        return await raw.fetch(sql, *params)
    # SQLite: aiosqlite's one-call fetch (two thread hops instead of SQLAlchemy's many, each of
    # which fought the event loop for the GIL), then SQLAlchemy's own result processors (dates,
    # decimals, booleans come back from SQLite as text and numbers).
    rows = await raw.execute_fetchall(sql, params)
    if not processors:
        return list(rows)
    return [tuple(p(v) if p else v for p, v in zip(processors, row, strict=True)) for row in rows]


_DRIVER_NATIVE = (str, int, float, bytes, type(None))
_UNSEEN: Any = object()
_Compiled = tuple[str, list[Any], list[Any] | None]


def _compiled_for(statement: Select, conn: Reader) -> _Compiled | None:
    """The memoised `_compile` of `statement` (one look-up; a None, "not for the raw path", is
    remembered too)."""
    compiled = _compiled.get(statement, _UNSEEN)
    if compiled is _UNSEEN:
        compiled = _compiled[statement] = _compile(statement, conn)
    return compiled


def _compile(statement: Select, conn: Reader) -> _Compiled | None:
    """(SQL, positional parameters, per-column result processors or None); None when the raw
    path does not apply (a SQLite parameter that would need SQLAlchemy's bind processing)."""
    c = statement.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    values = c.construct_params()
    params = [values[name] for name in c.positiontup or ()]
    if conn.dialect.name == "postgresql":
        return c.string, params, None  # asyncpg takes and returns native Python values
    if not all(isinstance(v, _DRIVER_NATIVE) and not isinstance(v, bool) for v in params):
        return None
    dialect = conn.dialect
    processors = [
        col.type.dialect_impl(dialect).result_processor(dialect, None) for col in statement.selected_columns
    ]
    return c.string, params, processors if any(processors) else None


_compiled: WeakKeyDictionary[Select, _Compiled | None] = WeakKeyDictionary()
