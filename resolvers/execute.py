"""The compiled executor: runs a validated operation against the pool.

graphql-core parses, validates and answers introspection; data fields are planned once
per request (resolvers.plan), read with one SQL statement per dataset and level, and
shaped straight into response dicts — no per-field resolver calls, no ORM objects.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import orjson
from graphql import ExecutionResult, FragmentDefinitionNode, OperationDefinitionNode, OperationType, execute
from graphql.execution.values import get_variable_values

from catalogue.protection import BLIND_SUFFIX
from resolvers import cursor, errors
from resolvers.cache_stats import PLAN_HIT, PLAN_MISS
from resolvers.context import DatasetRead, ExecutionContext
from resolvers.errors import FieldError, RequestError
from resolvers.plan import (
    ConnectionPlan,
    EntityDatasetPlan,
    EntityLookupPlan,
    EntityPlan,
    Kind,
    NodePlan,
    Planner,
    RepresentationsPlan,
    ServicePlan,
    forbidden_dataset,
)
from resolvers.selection import collect, subselection
from resolvers.sql import Reader, connection_statement, count_statement, entity_statement, fetch_all
from schema.build import TierSchema

INTROSPECTION_ROOTS = frozenset({"__schema", "__type"})


@dataclass
class Outcome:
    """What the HTTP layer needs to answer and the audit log to record."""

    data: dict[str, Any] | None
    errors: list[dict[str, Any]] = field(default_factory=list)
    request_error: bool = False  # nothing was executed (parse, validation, limits, variables)
    operation_name: str | None = None
    operation_type: str | None = None

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.errors:
            out["errors"] = self.errors
        if not self.request_error:
            out["data"] = self.data
        return out

    @property
    def error_codes(self) -> list[str]:
        return sorted({e.get("extensions", {}).get("code", "") for e in self.errors} - {""})


def _request_failure(errs: list[RequestError] | tuple[RequestError, ...], op: str | None = None) -> Outcome:
    return Outcome(None, [e.formatted() for e in errs], request_error=True, operation_name=op)


@dataclass
class OperationPlan:
    """Everything decided before the first SQL statement: cacheable per query text,
    operation, variables and consumer, for as long as the grants it relied on are valid."""

    op_name: str | None
    document: Any
    coerced: Any
    plans: list[tuple[str, Any]]
    accesses: dict[tuple[str, str], Any]
    valid_until: datetime | None


class PlanCache:
    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[Any, ...], OperationPlan] = OrderedDict()

    def get(self, key: tuple[Any, ...], now: datetime) -> OperationPlan | None:
        hit = self._entries.get(key)
        if hit is None:
            return None
        if hit.valid_until is not None and now >= hit.valid_until:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return hit

    def put(self, key: tuple[Any, ...], plan: OperationPlan) -> None:
        self._entries[key] = plan
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)


async def run(
    tier: TierSchema,
    query: str,
    variables: dict[str, Any] | None,
    operation_name: str | None,
    ctx: ExecutionContext,
    conn: Reader,
    *,
    cache: Any,
    plans: PlanCache | None = None,
) -> Outcome:
    key = (
        query,
        operation_name,
        ctx.principal.consumer,
        # the grants the plan may rely on: an API key scoped to some datasets sees fewer of
        # its enterprise's grants than another key of the same enterprise
        tuple(sorted(g.id for g in ctx.grants if g.consumer == ctx.principal.consumer)),
        ctx.encryptor is not None,
        ctx.watermark.key.kid if ctx.watermark is not None else None,
        orjson.dumps(variables or {}, option=orjson.OPT_SORT_KEYS),
    )
    planned = plans.get(key, ctx.now) if plans is not None else None
    if plans is not None:
        (PLAN_MISS if planned is None else PLAN_HIT).inc()
    if planned is None:
        result = _plan(tier, query, variables, operation_name, ctx, cache)
        if isinstance(result, Outcome):
            return result
        planned = result
        if plans is not None:
            plans.put(key, planned)
    else:
        ctx.accesses.update(planned.accesses)
    return await _execute(tier, planned, ctx, conn)


def _plan(
    tier: TierSchema,
    query: str,
    variables: dict[str, Any] | None,
    operation_name: str | None,
    ctx: ExecutionContext,
    cache: Any,
) -> OperationPlan | Outcome:
    prepared = cache.get(query)
    if prepared.errors:
        return _request_failure(prepared.errors, operation_name)
    document = prepared.document
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is None and len(operations) > 1:
        return _request_failure(
            [RequestError("Several operations: say which with operationName.", errors.BAD_USER_INPUT)]
        )
    op = next(
        (
            o
            for o in operations
            if operation_name is None or (o.name is not None and o.name.value == operation_name)
        ),
        None,
    )
    if op is None:
        return _request_failure(
            [RequestError(f"Unknown operation {operation_name!r}.", errors.BAD_USER_INPUT)]
        )
    op_name = op.name.value if op.name else None
    if op.operation is not OperationType.QUERY:
        return _request_failure(
            [
                RequestError(
                    f"Only queries are served here; {op.operation.value} operations are not.",
                    errors.OPERATION_NOT_SUPPORTED,
                )
            ],
            op_name,
        )
    coerced = get_variable_values(tier.graphql, op.variable_definitions or (), variables or {}, max_errors=20)
    if isinstance(coerced, list):
        return _request_failure([RequestError(e.message, errors.BAD_USER_INPUT) for e in coerced], op_name)
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    roots = collect([op.selection_set], fragments, coerced)

    planner = Planner(tier.graphql, tier.bindings, ctx, fragments, coerced)
    plans: list[tuple[str, Any]] = []
    total_cost = 0
    try:
        for key, nodes in roots.items():
            name = nodes[0].name.value
            if name == "__typename":
                plans.append((key, "Query"))
            elif name in INTROSPECTION_ROOTS:
                plans.append((key, None))
            elif name == "_service" and tier.federation_sdl is not None:
                plans.append((key, ServicePlan(subselection(nodes, fragments, coerced), tier.federation_sdl)))
            elif name == "_entities" and tier.federation_sdl is not None:
                entities = planner.representations(key, nodes)
                total_cost += entities.cost()
                plans.append((key, entities))
            elif name in tier.bindings.root_datasets:
                plan = planner.connection(key, nodes, tier.bindings.root_datasets[name])
                total_cost += plan.cost() if plan.access.allowed else 1
                plans.append((key, plan))
            elif name in tier.bindings.root_entities:
                lookup = planner.entity_lookup(key, nodes, tier.bindings.root_entities[name])
                total_cost += lookup.entity.cost()
                plans.append((key, lookup))
            else:  # no data behind it (an empty schema's placeholder): graphql-core answers null
                plans.append((key, None))
    except FieldError as err:
        # Planning errors are about arguments (page size, filters): refuse the operation
        # whole, so a client never mistakes a partial answer for a complete one.
        return _request_failure([RequestError(err.message, err.code, **err.extensions)], op_name)
    if total_cost > ctx.limits.max_cost:
        return _request_failure(
            [
                RequestError(
                    f"The query would cost {total_cost}; the limit is {ctx.limits.max_cost}. "
                    "Ask for smaller pages or fewer nested fields.",
                    errors.QUERY_TOO_COMPLEX,
                    cost=total_cost,
                    limit=ctx.limits.max_cost,
                )
            ],
            op_name,
        )

    valid_until = None
    for access in planner.accesses():
        expires = access.grant.expires_at if access.grant is not None else None
        if expires is not None and (valid_until is None or expires < valid_until):
            valid_until = expires
    return OperationPlan(op_name, document, coerced, plans, dict(ctx.accesses), valid_until)


async def _execute(tier: TierSchema, planned: OperationPlan, ctx: ExecutionContext, conn: Reader) -> Outcome:
    plans = planned.plans
    op_name = planned.op_name
    data: dict[str, Any] = {}
    errs: list[dict[str, Any]] = []
    if any(p is None for _, p in plans):
        # Introspection only: no resolver is async, so graphql-core answers synchronously.
        intro = cast(
            ExecutionResult,
            execute(tier.graphql, planned.document, None, None, dict(planned.coerced.coerced), op_name),
        )
        for e in intro.errors or ():
            errs.append(dict(e.formatted))
    for key, plan in plans:
        if plan is None:
            data[key] = (intro.data or {}).get(key)
        elif isinstance(plan, str):
            data[key] = plan
        elif isinstance(plan, ConnectionPlan):
            data[key] = await _connection(plan, ctx, conn, errs)
        elif isinstance(plan, ServicePlan):
            data[key] = plan.answer()
        elif isinstance(plan, RepresentationsPlan):
            data[key] = await _representations(plan, ctx, conn, errs)
        else:
            data[key] = await _lookup(plan, ctx, conn, errs)
    return Outcome(data, errs, operation_name=op_name, operation_type="query")


async def _connection(
    plan: ConnectionPlan,
    ctx: ExecutionContext,
    conn: Reader,
    errs: list[dict[str, Any]],
) -> dict[str, Any] | None:
    if not plan.access.allowed:
        errs.extend(_denied_dataset(plan.dataset, plan.access, plan.node, [plan.key], plan.locations))
        return None
    if plan.statement is None:
        plan.statement, plan.names = connection_statement(plan)
    statement, names = plan.statement, plan.names
    assert names is not None
    rows = await fetch_all(conn, statement)
    has_next = len(rows) > plan.first
    rows = rows[: plan.first]
    _record_read(ctx, plan.dataset.code, len(rows), plan.access, _blind_keys(plan.where), plan.node)
    total = 0
    if plan.want_total:
        if rows:
            total = rows[0][len(names)]
        elif plan.after:
            total = (await fetch_all(conn, count_statement(plan)))[0][0]
    nodes_out: list[dict[str, Any]] = []
    if plan.node is not None:
        nodes_out, row_errs = _shape(plan.node, rows)
        await _links(plan.node, rows, nodes_out, row_errs, ctx, conn)
        for i, rel in enumerate(row_errs):
            for e in rel:
                e["path"] = [plan.key, "edges", i, plan.node_key, *e["path"]]
                errs.append(e)
    cursors: list[str] = []
    if plan.wants_cursor and rows:
        positions = [names.index(c) for c, _ in plan.order] + [len(names) - 1]
        cursors = [cursor.encode([r[p] for p in positions]) for r in rows]
    out: dict[str, Any] = {}
    for key, name in plan.conn_entries:
        if name == "totalCount":
            out[key] = total
        elif name == "__typename":
            out[key] = plan.type_names[0]
        elif name == "pageInfo":
            page: dict[str, Any] = {}
            for pkey, pname in plan.page_entries:
                if pname == "hasNextPage":
                    page[pkey] = has_next
                elif pname == "endCursor":
                    page[pkey] = cursors[-1] if cursors else None
                else:
                    page[pkey] = plan.type_names[2]
            out[key] = page
        else:
            edges = []
            for i in range(len(rows)):
                edge: dict[str, Any] = {}
                for ekey, ename in plan.edge_entries:
                    if ename == "node":
                        edge[ekey] = nodes_out[i]
                    elif ename == "cursor":
                        edge[ekey] = cursors[i]
                    else:
                        edge[ekey] = plan.type_names[1]
                edges.append(edge)
            out[key] = edges
    return out


def _denied_dataset(
    ds: Any, access: Any, node: NodePlan | None, path: list[str | int], loc: list[dict[str, int]] | None
) -> Errors:
    """A dataset the caller may not read: field by field (FORBIDDEN_FIELD for each field
    asked for, all at the dataset's path, since no row is returned), or one FORBIDDEN
    when no field was asked for."""
    denied = [e for e in node.entries if e.kind is Kind.DENIED] if node is not None else []
    if not denied:
        return [{**forbidden_dataset(ds, access, loc), "path": path}]
    return [{**e.payload, "path": path} for e in denied]


def _record_read(
    ctx: ExecutionContext,
    dataset: str,
    rows: int,
    access: Any,
    keys: tuple[str, ...] = (),
    node: NodePlan | None = None,
) -> None:
    grants = access.grant if access is not None else None
    ids = grants.ids if grants is not None else ()
    purposes = grants.purposes if grants is not None else ()
    mark = None
    if ctx.watermark is not None and node is not None and rows and (marked := node.marked):
        mark = ctx.watermark.evidence(marked)
    ctx.reads.append(
        DatasetRead(dataset, rows, ids[0] if ids else None, "; ".join(purposes) or None, ids, keys, mark)
    )


def _blind_keys(where: list[tuple[str, str, Any]] | None) -> tuple[str, ...]:
    """The blind-index values an equality filter on an encrypted field looked up (for the audit)."""
    out: list[str] = []
    for column, op, value in where or ():
        if column.endswith(BLIND_SUFFIX) and op in ("eq", "in"):
            out.extend(value if isinstance(value, list) else [value])
    return tuple(out)


Errors = list[dict[str, Any]]


def _shape(plan: NodePlan, rows: Sequence[Any]) -> tuple[list[dict[str, Any]], list[Errors]]:
    """Rows → node dicts, and per row the errors with paths relative to the node."""
    shape = plan.shaper()
    out = [shape(row) for row in rows]
    denied = [e for e in plan.entries if e.kind is Kind.DENIED]
    if not denied and not plan.links:
        return out, [_NO_ERRORS] * len(rows)
    return out, [[{**e.payload, "path": [e.key]} for e in denied] for _ in rows]


_NO_ERRORS: Errors = []


async def _links(
    plan: NodePlan,
    rows: Sequence[Any],
    nodes: list[dict[str, Any]],
    row_errs: list[Errors],
    ctx: ExecutionContext,
    conn: Reader,
) -> None:
    for entry in plan.links:
        key_of = entry.transform or (lambda v: v)  # encrypted reference columns are decrypted first
        row_keys = [None if row[entry.index] is None else key_of(row[entry.index]) for row in rows]
        keys = sorted({k for k in row_keys if k is not None})
        entities, key_errs = await _entities(entry.payload.entity, keys, ctx, conn)
        for k, node, errs in zip(row_keys, nodes, row_errs, strict=True):
            node[entry.key] = entities.get(k) if k is not None else None
            for e in key_errs.get(k, ()) if k is not None else ():
                errs.append({**e, "path": [entry.key, *e["path"]]})


async def _entities(
    plan: EntityPlan, keys: list[str], ctx: ExecutionContext, conn: Reader
) -> tuple[dict[str, dict[str, Any]], dict[str, Errors]]:
    """Entity objects for many keys, one statement per dataset the selection asks for;
    errors per key with paths relative to the entity object."""
    out: dict[str, dict[str, Any]] = {k: {} for k in keys}
    key_errs: dict[str, Errors] = {k: [] for k in keys}
    for entry in plan.entries:
        if entry.kind is Kind.TYPENAME:
            for obj in out.values():
                obj[entry.key] = plan.type_name
        elif entry.kind is Kind.KEY:
            for k, obj in out.items():
                obj[entry.key] = k
        else:
            ds_plan: EntityDatasetPlan = entry.payload
            if ds_plan.denial is not None or not keys:
                for k, obj in out.items():
                    obj[entry.key] = None
                    if ds_plan.denial is not None:
                        key_errs[k].extend(ds_plan.denial_errors([entry.key]))
                continue
            node = ds_plan.node
            assert node is not None
            # Encrypted keys are looked up (and rows grouped) by their blind-index values.
            by_lookup = {ds_plan.blind(k): k for k in keys} if ds_plan.blind else {k: k for k in keys}
            rows = await fetch_all(conn, entity_statement(ds_plan, list(by_lookup)))
            _record_read(
                ctx,
                ds_plan.dataset.code,
                len(rows),
                ds_plan.access,
                tuple(by_lookup) if ds_plan.blind else (),
                node,
            )
            shaped, row_errs = _shape(node, rows)
            await _links(node, rows, shaped, row_errs, ctx, conn)
            key_index = node.columns.index(ds_plan.key_column)
            grouped: dict[str, list[dict[str, Any]]] = {k: [] for k in keys}
            for row, obj, errs in zip(rows, shaped, row_errs, strict=True):
                k = by_lookup[row[key_index]]
                for e in errs:
                    key_errs[k].append({**e, "path": [entry.key, len(grouped[k]), *e["path"]]})
                grouped[k].append(obj)
            for k, obj in out.items():
                obj[entry.key] = grouped[k]
    return out, key_errs


async def _lookup(
    plan: EntityLookupPlan, ctx: ExecutionContext, conn: Reader, errs: list[dict[str, Any]]
) -> dict[str, Any] | None:
    entities, key_errs = await _entities(plan.entity, [plan.value], ctx, conn)
    for e in key_errs.get(plan.value, ()):
        errs.append({**e, "path": [plan.key, *e["path"]]})
    return entities.get(plan.value)


async def _representations(
    plan: RepresentationsPlan, ctx: ExecutionContext, conn: Reader, errs: list[dict[str, Any]]
) -> list[dict[str, Any] | None]:
    """Apollo Federation `_entities`: one object per representation, in order, each read under
    the caller's own policies exactly as `legalEntity(creditCode:)` / `person(idNumber:)` are;
    errors at `[_entities, i, ...]`."""
    out: list[dict[str, Any] | None] = [None] * len(plan.items)
    for type_name, entity in plan.entities.items():
        indexes = [i for i, (t, _) in enumerate(plan.items) if t == type_name]
        keys = sorted({plan.items[i][1] for i in indexes})
        objects, key_errs = await _entities(entity, keys, ctx, conn)
        for i in indexes:
            k = plan.items[i][1]
            out[i] = dict(objects[k])
            for e in key_errs.get(k, ()):
                errs.append({**e, "path": [plan.key, i, *e["path"]]})
    for i, problem in plan.refused.items():
        errs.append({**problem, "path": [plan.key, i]})
    return out
