"""Planning: a validated operation + the caller's policy decisions → what to read and how
to shape it. Decisions are made once per column here, never per value."""

from __future__ import annotations

import decimal
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from types import CodeType
from typing import Any

from graphql import FieldNode, FragmentDefinitionNode, GraphQLField, GraphQLObjectType, GraphQLSchema
from graphql.execution.values import VariableValues, get_argument_values

from catalogue.protection import DatasetCipher, blind_column, is_protected
from catalogue.spec import ENTITY_KEY_NAMES, DatasetSpec, Entity, FieldSpec, FieldType
from policies import decisions
from policies.limits import connection_cost
from policies.masking import MASKERS
from policies.model import Action, DatasetAccess, Decision, Tier
from policies.watermark import Layout, MarkedColumn, RowMarker, row_marker
from resolvers import cursor, errors
from resolvers.context import ExecutionContext, FieldAccess
from resolvers.errors import FieldError
from resolvers.selection import Collected, collect, locations, subselection
from schema.bindings import Bindings, NodeBinding


class Kind(IntEnum):
    VALUE = 0  # a column, possibly transformed
    DENIED = 1  # null plus a FORBIDDEN_FIELD error at its path
    TYPENAME = 2
    LINK = 3  # an entity looked up by the key in a column
    KEY = 4  # the entity key itself
    DATASET = 5  # an entity's rows in one dataset


Transform = Callable[[Any], Any]


@dataclass(slots=True)
class Entry:
    key: str
    kind: Kind
    index: int = -1  # column index in the fetched row
    transform: Transform | None = None
    # DENIED: error template; TYPENAME: type name; LINK: LinkPlan; DATASET: EntityDatasetPlan
    payload: Any = None
    # VALUE marked with a watermark: its position among the node's `Marking` columns (the
    # marked value replaces `transform`, which the marker applies itself)
    mark: int = -1


@dataclass(slots=True)
class Marking:
    """A node's watermarked columns (policies.watermark.row_marker), marked a row at a time: one
    digest per row for all of them, keyed by the row's entity key (column `key_index`, opened
    first by `key_of` when stored encrypted)."""

    key_index: int
    key_of: Transform | None
    marker: Callable[[list[MarkedColumn]], RowMarker]  # row_marker bound to the recipient's key
    columns: list[MarkedColumn] = field(default_factory=list)

    def add(self, column: MarkedColumn) -> int:
        self.columns.append(column)
        return len(self.columns) - 1


@dataclass(slots=True)
class NodePlan:
    binding: NodeBinding
    type_name: str
    columns: list[str] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    links: list[Entry] = field(default_factory=list)
    marking: Marking | None = None
    _shaper: Callable[[Any], dict[str, Any]] | None = None

    @property
    def marked(self) -> list[str]:
        """The fields delivered with a watermark, each once, in the order first asked."""
        return list(dict.fromkeys(c.field for c in self.marking.columns)) if self.marking else []

    def column(self, name: str) -> int:
        if name not in self.columns:
            self.columns.append(name)
        return self.columns.index(name)

    def cost(self) -> int:
        return len(self.entries) + sum(e.payload.entity.cost() for e in self.links)

    def shaper(self) -> Callable[[Any], dict[str, Any]]:
        """row → response dict, compiled once per plan (plans are cached across requests)."""
        if self._shaper is None:
            self._shaper = compile_shaper(self.entries, self.marking)
        return self._shaper


# Rows any of these admit, each a conjunction of (column, "in", values): a grant's row scope.
Scope = list[list[tuple[str, str, Any]]]


@dataclass(slots=True)
class EntityDatasetPlan:
    dataset: DatasetSpec
    first: int
    node: NodePlan | None
    denial: dict[str, Any] | None  # set when the caller may not read these rows at all
    access: DatasetAccess | None = None
    key_column: str = ""  # the entity key's column, or its blind index when stored encrypted
    blind: Transform | None = None  # clear key → blind-index value
    scope: Scope | None = None  # the rows the caller's grants limit it to (None: every row)

    def denial_errors(self, path: list[str | int]) -> list[dict[str, Any]]:
        """Field by field where fields were asked for, else one dataset-level error."""
        denied = [e for e in self.node.entries if e.kind is Kind.DENIED] if self.node is not None else []
        if not denied:
            return [{**(self.denial or {}), "path": path}]
        return [{**e.payload, "path": path} for e in denied]


@dataclass(slots=True)
class EntityPlan:
    type_name: str
    entity: Entity
    entries: list[Entry] = field(default_factory=list)

    def cost(self) -> int:
        total = 1
        for e in self.entries:
            if e.kind is Kind.DATASET and e.payload.node is not None:
                total += connection_cost(e.payload.first, e.payload.node.cost())
        return total


@dataclass(slots=True)
class LinkPlan:
    entity: EntityPlan


@dataclass(slots=True)
class ConnectionPlan:
    key: str
    dataset: DatasetSpec
    access: DatasetAccess
    first: int
    after: str | None
    where: list[tuple[str, str, Any]]  # (column, operator, value)
    order: list[tuple[str, bool]]  # (column, descending)
    want_total: bool
    conn_entries: list[tuple[str, str]]  # (key, "totalCount" | "edges" | "pageInfo" | "__typename")
    edge_entries: list[tuple[str, str]]
    page_entries: list[tuple[str, str]]
    node: NodePlan | None
    node_key: str | None
    type_names: tuple[str, str, str]  # connection, edge, PageInfo
    after_values: list[Any] | None = None  # the decoded `after` cursor
    locations: list[dict[str, int]] | None = None
    statement: Any = None  # built once, reused while the plan is cached
    names: list[str] | None = None
    scope: Scope | None = None  # the rows the caller's grants limit it to (None: every row)

    @property
    def wants_cursor(self) -> bool:
        return any(n == "cursor" for _, n in self.edge_entries) or any(
            n == "endCursor" for _, n in self.page_entries
        )

    def cost(self) -> int:
        return connection_cost(self.first, self.node.cost() if self.node else 1)


@dataclass(slots=True)
class EntityLookupPlan:
    key: str
    value: str
    entity: EntityPlan


@dataclass(slots=True)
class ServicePlan:
    """Apollo Federation `_service { sdl }`."""

    selection: Collected
    sdl: str

    def answer(self) -> dict[str, Any]:
        return {k: self.sdl if n[0].name.value == "sdl" else "_Service" for k, n in self.selection.items()}


@dataclass(slots=True)
class RepresentationsPlan:
    """Apollo Federation `_entities(representations:)`: (type name, key) per representation,
    one entity plan per type asked for, and the representations refused (by index)."""

    key: str
    items: list[tuple[str, str]]
    entities: dict[str, EntityPlan]
    refused: dict[int, dict[str, Any]]

    def cost(self) -> int:
        return sum(self.entities[t].cost() for t, _ in self.items if t in self.entities)


def compile_shaper(entries: list[Entry], marking: Marking | None = None) -> Callable[[Any], dict[str, Any]]:
    """Generate `def shape(row): return {...}` for these entries.

    A dict display built by generated code is several times faster than interpreting the
    entry list per value, and shaping is the executor's hot loop (rows × fields). Keys are
    GraphQL response names (the parser admits only [_A-Za-z][_0-9A-Za-z]*) and are still
    embedded with repr(); values are only ever row indexes and functions from `env`. Marked
    values come from one call of the node's row marker per row (`marking`), before the dict.
    """
    env: dict[str, Any] = {}
    items = []
    head = ""
    if marking is not None and marking.columns:
        env["mark"] = marking.marker(marking.columns)
        indexes = {e.mark: e.index for e in entries if e.kind is Kind.VALUE and e.mark >= 0}
        values = "".join(f"row[{indexes[m]}], " for m in range(len(marking.columns)))
        k = marking.key_index
        if marking.key_of is None:
            key = f"row[{k}]"
        else:
            env["key_of"] = marking.key_of
            key = f"(None if (k := row[{k}]) is None else key_of(k))"
        head = f"    m = mark({key}, ({values}))\n"
    for i, e in enumerate(entries):
        key = repr(e.key)
        if e.kind is Kind.VALUE and e.mark >= 0:
            items.append(f"{key}: m[{e.mark}]")
        elif e.kind is Kind.VALUE and e.transform is None:
            items.append(f"{key}: row[{e.index}]")
        elif e.kind is Kind.VALUE:
            env[f"t{i}"] = e.transform
            items.append(f"{key}: (None if (v{i} := row[{e.index}]) is None else t{i}(v{i}))")
        elif e.kind is Kind.TYPENAME:
            items.append(f"{key}: {str(e.payload)!r}")
        else:  # DENIED (error added by the caller) and LINK (filled in after the join)
            items.append(f"{key}: None")
    source = "def shape(row):\n" + head + "    return {" + ", ".join(items) + "}\n"
    exec(_compiled_shaper(source), env)  # noqa: S102 - generated from trusted names
    return env["shape"]


@functools.lru_cache(maxsize=512)
def _compiled_shaper(source: str) -> CodeType:
    """The shaper's code, compiled once per source: a plan is built per query and variables, so a
    client paging with a new cursor each time plans anew, and `compile` was a good part of it.
    The source holds only response names and indexes; each shaper gets its own `env`."""
    return compile(source, "<shuqiao-shaper>", "exec")


def _chain(first: Transform, then: Transform) -> Transform:
    return lambda v: then(first(v))


def watermark_layout(ds: DatasetSpec) -> Layout:
    """The dataset's watermark layout (policies.watermark.Layout): its fields the catalogue
    declares a mark for (a tolerance: a number; otherwise a text scheme), whatever is asked or
    allowed — the trace (gateway.watermark_service) derives the same from the catalogue."""
    return Layout.of((g.name, g.watermark_tolerance is None) for g in ds.fields if g.watermarked)


_STRINGIFY: dict[FieldType, Transform] = {
    FieldType.DECIMAL: str,
    FieldType.DATE: lambda v: v.isoformat(),
    FieldType.DATETIME: lambda v: v.isoformat(),
}


class Planner:
    def __init__(
        self,
        schema: GraphQLSchema,
        bindings: Bindings,
        ctx: ExecutionContext,
        fragments: dict[str, FragmentDefinitionNode],
        variables: VariableValues,
    ) -> None:
        self.schema = schema
        self.bindings = bindings
        self.ctx = ctx
        self.fragments = fragments
        self.variables = variables
        self._decisions: dict[tuple[str, str], Decision] = {}
        self._access: dict[str, DatasetAccess] = {}

    # -- policy, asked once per dataset and column
    def access(self, ds: DatasetSpec) -> DatasetAccess:
        hit = self._access.get(ds.code)
        if hit is None:
            ctx = self.ctx
            if ctx.tier is Tier.OPEN:
                hit = decisions.open_dataset_access(ds.policy(), ctx.principal.consumer, ctx.grants, ctx.now)
            else:
                hit = decisions.share_dataset_access(
                    ds.policy(), ctx.principal.consumer or "", ctx.grants, ctx.now
                )
            self._access[ds.code] = hit
        return hit

    def accesses(self) -> list[DatasetAccess]:
        return list(self._access.values())

    def decide(self, ds: DatasetSpec, f: FieldSpec) -> Decision:
        key = (ds.code, f.name)
        hit = self._decisions.get(key)
        if hit is None:
            if self.ctx.tier is Tier.OPEN:
                hit = decisions.decide_open_field(ds.policy(), f.policy(), self.access(ds).grant)
            else:
                hit = decisions.decide_share_field(
                    ds.policy(),
                    f.policy(),
                    self.ctx.principal.consumer or "",
                    self.access(ds).grant,
                    can_encrypt=self.ctx.encryptor is not None,
                )
            self._decisions[key] = hit
        return hit

    def _record(self, ds: DatasetSpec, f: FieldSpec, d: Decision) -> None:
        self.ctx.record(FieldAccess(ds.code, f.name, d.action, d.reason, d.grant_id))

    def _args(self, parent: GraphQLObjectType, nodes: list[FieldNode]) -> dict[str, Any]:
        field_def: GraphQLField = parent.fields[nodes[0].name.value]
        return get_argument_values(field_def, nodes[0], self.variables)

    def _page_size(self, value: Any) -> int:
        limit = self.ctx.limits.max_page_size
        if value is None:
            return self.ctx.limits.default_page_size
        if value < 0:
            raise FieldError("`first` must not be negative.", errors.BAD_USER_INPUT)
        if value > limit:
            raise FieldError(
                f"`first` is {value}; the largest page is {limit}. Page with `after`.",
                errors.PAGE_SIZE_EXCEEDED,
                limit=limit,
            )
        return int(value)

    # -- root fields
    def connection(self, key: str, nodes: list[FieldNode], ds: DatasetSpec) -> ConnectionPlan:
        query_type = self.schema.query_type
        assert query_type is not None
        args = self._args(query_type, nodes)
        binding = self.bindings.nodes_by_dataset[ds.code]
        first = self._page_size(args.get("first"))
        conn_sel = subselection(nodes, self.fragments, self.variables)
        conn_entries: list[tuple[str, str]] = []
        edge_entries: list[tuple[str, str]] = []
        page_entries: list[tuple[str, str]] = []
        node_plan: NodePlan | None = None
        node_key: str | None = None
        node_type = self.schema.get_type(_type_name(binding))
        for ckey, cnodes in conn_sel.items():
            name = cnodes[0].name.value
            conn_entries.append((ckey, name))
            if name == "edges":
                for ekey, enodes in subselection(cnodes, self.fragments, self.variables).items():
                    ename = enodes[0].name.value
                    edge_entries.append((ekey, ename))
                    if ename == "node":
                        sub = subselection(enodes, self.fragments, self.variables)
                        if node_plan is None:
                            node_plan = self.node(binding, node_type, sub)  # type: ignore[arg-type]
                            node_key = ekey
            elif name == "pageInfo":
                page_entries = [
                    (pk, pn[0].name.value)
                    for pk, pn in subselection(cnodes, self.fragments, self.variables).items()
                ]
        where = args.get("where") or {}
        order_args = args.get("orderBy") or []
        plan = ConnectionPlan(
            key=key,
            dataset=ds,
            access=self.access(ds),
            first=first,
            after=args.get("after"),
            where=[],
            order=[],
            want_total=any(n == "totalCount" for _, n in conn_entries),
            conn_entries=conn_entries,
            edge_entries=edge_entries,
            page_entries=page_entries,
            node=node_plan,
            node_key=node_key,
            type_names=(binding.connection_type, binding.edge_type, "PageInfo"),
            locations=locations(nodes),
        )
        if plan.access.allowed:
            plan.scope = self._scope(ds, plan.access)
            plan.where = self._filters(binding, where)
            plan.order = self._order(ds, order_args)
            if plan.after is not None:
                types = [ds.field(c).type for c, _ in plan.order]
                plan.after_values = cursor.decode(plan.after, types)
        return plan

    def _filters(self, binding: NodeBinding, where: dict[str, Any]) -> list[tuple[str, str, Any]]:
        """`where` as (column, operator, value) triples, each checked against the policy."""
        ds = binding.dataset
        out: list[tuple[str, str, Any]] = []
        for gql, cond in where.items():
            if cond is None:
                continue
            f = binding.fields[gql]
            if not decisions.may_filter(self.decide(ds, f)):
                raise FieldError(
                    f"Filtering on `{gql}` is not permitted: you may not read it in clear.",
                    errors.FORBIDDEN_FILTER,
                    field=gql,
                    resourceCode=ds.resource_code,
                )
            for op, value in cond.items():
                if value is not None:
                    self._check_operand(gql, op, value)
            if not is_protected(f):
                out.extend((f.name, op, value) for op, value in cond.items() if value is not None)
                continue
            # Encrypted at rest: equality through the blind index, nothing else.
            blind = self._cipher(ds).blinder(f.name)
            for op, value in cond.items():
                if value is None:
                    continue
                if op in ("eq", "neq"):
                    out.append((blind_column(f.name), op, blind(value)))
                elif op == "in":
                    out.append((blind_column(f.name), "in", [blind(v) for v in value]))
                elif op == "isNull":
                    out.append((f.name, op, value))
                else:
                    raise FieldError(
                        f"`{gql}` is stored encrypted: filter it with eq, neq, in or isNull, not {op}.",
                        errors.BAD_USER_INPUT,
                        field=gql,
                    )
        return out

    def _scope(self, ds: DatasetSpec, access: DatasetAccess) -> Scope | None:
        """The row scopes of the grants the caller reads under, as SQL conditions (an encrypted
        column through its blind index). Applied to every statement on the dataset: rows,
        totalCount, cursors, entity lookups and links."""
        rows = access.grant.rows if access.grant is not None else None
        if rows is None:
            return None
        out: Scope = []
        for conjunction in rows:
            conds: list[tuple[str, str, Any]] = []
            for column, values in conjunction:
                f = ds.field(column)
                if is_protected(f):
                    blind = self._cipher(ds).blinder(column)
                    conds.append((blind_column(column), "in", [blind(str(v)) for v in values]))
                else:
                    conds.append((column, "in", list(values)))
            out.append(conds)
        return out

    def _check_operand(self, gql: str, op: str, value: Any) -> None:
        """Refuse operands no stored value can match or the database cannot take: `in` lists
        and strings past the limits, NUL bytes (PostgreSQL text cannot hold one) and
        non-finite decimals or floats (sNaN cannot even be compared)."""
        limits = self.ctx.limits
        if op == "in":
            if len(value) > limits.max_in_list:
                raise FieldError(
                    f"`{gql}.in` has {len(value)} values; at most {limits.max_in_list} are allowed.",
                    errors.FILTER_TOO_LARGE,
                    field=gql,
                    limit=limits.max_in_list,
                )
            for v in value:
                if v is not None:
                    check_value(f"{gql}.in", v, limits.max_string_operand)
            return
        check_value(f"{gql}.{op}", value, limits.max_string_operand)

    def _order(self, ds: DatasetSpec, order_args: list[Any]) -> list[tuple[str, bool]]:
        out: list[tuple[str, bool]] = []
        for item in order_args:
            name = item["field"].value
            f = ds.field(name)
            if not decisions.may_filter(self.decide(ds, f)):
                raise FieldError(
                    f"Ordering by `{_camel(name)}` is not permitted: you may not read it in clear.",
                    errors.FORBIDDEN_FILTER,
                    field=_camel(name),
                    resourceCode=ds.resource_code,
                )
            if is_protected(f):
                raise FieldError(
                    f"`{_camel(name)}` is stored encrypted and cannot order results.",
                    errors.BAD_USER_INPUT,
                    field=_camel(name),
                )
            if all(n != name for n, _ in out):
                out.append((name, item["direction"].value == "desc"))
        return out

    def entity_lookup(self, key: str, nodes: list[FieldNode], entity: Entity) -> EntityLookupPlan:
        query_type = self.schema.query_type
        assert query_type is not None
        args = self._args(query_type, nodes)
        value = (
            args[ENTITY_KEY_NAMES[entity]] if ENTITY_KEY_NAMES[entity] in args else next(iter(args.values()))
        )
        check_value(ENTITY_KEY_NAMES[entity], value, self.ctx.limits.max_string_operand)
        type_name = self.bindings.entities_by_kind[entity]
        plan = self.entity(type_name, subselection(nodes, self.fragments, self.variables))
        return EntityLookupPlan(key, str(value), plan)

    def representations(self, key: str, nodes: list[FieldNode]) -> RepresentationsPlan:
        """`_entities(representations: [{__typename, <key>}])` of a federated subgraph: only the
        entity types this subgraph resolves, keyed as they are here; the selection of each is
        the fragments on that type."""
        query_type = self.schema.query_type
        assert query_type is not None
        reps = self._args(query_type, nodes).get("representations") or []
        items: list[tuple[str, str]] = []
        refused: dict[int, dict[str, Any]] = {}
        entities: dict[str, EntityPlan] = {}
        for i, rep in enumerate(reps):
            type_name = rep.get("__typename") if isinstance(rep, dict) else None
            binding = self.bindings.entities.get(type_name) if isinstance(type_name, str) else None
            value = rep.get(binding.key_field) if binding is not None else None
            if binding is None or not binding.datasets or not isinstance(value, str):
                refused[i] = {
                    "message": "A representation must name an entity this subgraph resolves and its key.",
                    "extensions": {"code": errors.BAD_USER_INPUT},
                }
                items.append(("", ""))
                continue
            check_value(binding.key_field, value, self.ctx.limits.max_string_operand)
            items.append((binding_type := str(type_name), value))
            if binding_type not in entities:
                sel = collect(
                    [n.selection_set for n in nodes if n.selection_set],
                    self.fragments,
                    self.variables,
                    on=binding_type,
                )
                entities[binding_type] = self.entity(binding_type, sel)
        return RepresentationsPlan(key, items, entities, refused)

    # -- object levels
    def node(self, binding: NodeBinding, gql_type: GraphQLObjectType, sel: Collected) -> NodePlan:
        ds = binding.dataset
        plan = NodePlan(binding, gql_type.name)
        for key, fnodes in sel.items():
            name = fnodes[0].name.value
            if name == "__typename":
                plan.entries.append(Entry(key, Kind.TYPENAME, payload=gql_type.name))
                continue
            f = binding.fields.get(name)
            if f is not None:
                plan.entries.append(self._value_entry(plan, ds, f, key, fnodes))
                continue
            ref, entity = binding.links[name]
            d = self.decide(ds, ref)
            self._record(ds, ref, d)
            # Following a reference reveals its value (the linked entity's key), so only a
            # reference the caller reads in clear may be followed — not one it gets encrypted.
            if d.action is not Action.ALLOW:
                reason = f"following {name} needs {_camel(ref.name)} in clear: {d.reason}"
                plan.entries.append(self._denied(key, fnodes, ds, reason))
                continue
            ent_type = self.bindings.entities_by_kind[entity]
            ent = self.entity(ent_type, subselection(fnodes, self.fragments, self.variables))
            entry = Entry(key, Kind.LINK, plan.column(ref.name), self._opener(ds, ref), LinkPlan(ent))
            plan.entries.append(entry)
            plan.links.append(entry)
        return plan

    def _value_entry(
        self, plan: NodePlan, ds: DatasetSpec, f: FieldSpec, key: str, fnodes: list[FieldNode]
    ) -> Entry:
        d = self.decide(ds, f)
        self._record(ds, f, d)
        if d.action is Action.DENY:
            return self._denied(key, fnodes, ds, d.reason, field_name=_camel(f.name))
        index = plan.column(f.name)
        transform: Transform | None
        if d.action is Action.MASK:
            assert d.mask is not None
            transform = MASKERS[d.mask]
        elif d.action is Action.ENCRYPT:
            encryptor = self.ctx.encryptor
            assert encryptor is not None
            transform = lambda v, _f=f: encryptor(ds, _f, v)  # noqa: E731
        elif f.graphql_type_is_string and f.type is not FieldType.STRING:
            transform = _STRINGIFY.get(f.type, str)
        else:
            transform = _STRINGIFY.get(f.type) if f.type is FieldType.DECIMAL else None
        opener = self._opener(ds, f)
        if opener is not None:  # stored encrypted: decrypt, then apply the decision
            transform = opener if transform is None else _chain(opener, transform)
        if self._watermarked(ds, f, d):
            return Entry(key, Kind.VALUE, index, mark=self._mark(plan, ds, f, transform))
        return Entry(key, Kind.VALUE, index, transform)

    def _watermarked(self, ds: DatasetSpec, f: FieldSpec, d: Decision) -> bool:
        """A value in clear, of a field that tolerates a mark, to an identified recipient."""
        return (
            self.ctx.watermark is not None
            and f.watermarked
            and d.action is Action.ALLOW
            and bool(ds.entity_field)
            and not is_protected(f)  # the catalogue rules forbid it; never mark what is stored encrypted
        )

    def _mark(self, plan: NodePlan, ds: DatasetSpec, f: FieldSpec, then: Transform | None) -> int:
        """Mark the field (policies.watermark), keyed by the row's entity key, before it is
        stringified; its position among the node's marked columns. Filters, ordering and
        cursors still work on the stored (true) values. Scheme v2: one digest per row, shared
        by the row's marked columns, each reading its own slot of it — fixed by the catalogue's
        marked fields (the layout, taken once per node), never by what this query selects."""
        wm, entity_key = self.ctx.watermark, ds.entity_field
        assert wm is not None and entity_key  # _watermarked
        if plan.marking is None:
            layout = watermark_layout(ds)
            plan.marking = Marking(
                plan.column(entity_key),
                self._opener(ds, ds.field(entity_key)),
                functools.partial(
                    row_marker, wm.key.secret, wm.recipient, ds.code, gamma=wm.gamma, layout=layout
                ),
            )
        return plan.marking.add(MarkedColumn(f.name, f.watermark_tolerance, then))

    def _cipher(self, ds: DatasetSpec) -> DatasetCipher:
        if self.ctx.pool is None:
            raise FieldError(f"{ds.code} holds encrypted columns and no data key is loaded.", errors.INTERNAL)
        return self.ctx.pool.cipher(ds.code)

    def _opener(self, ds: DatasetSpec, f: FieldSpec) -> Transform | None:
        return self._cipher(ds).opener(f.name) if is_protected(f) else None

    def _denied(
        self, key: str, fnodes: list[FieldNode], ds: DatasetSpec, reason: str, field_name: str | None = None
    ) -> Entry:
        template = {
            "message": f"Access to {field_name or key} of {ds.code} is denied: {reason}.",
            "locations": locations(fnodes),
            "extensions": {
                "code": errors.FORBIDDEN_FIELD,
                "reason": reason,
                "resourceCode": ds.resource_code,
                "dataset": ds.code,
            },
        }
        return Entry(key, Kind.DENIED, payload=template)

    def entity(self, type_name: str, sel: Collected) -> EntityPlan:
        binding = self.bindings.entities[type_name]
        gql_type = self.schema.get_type(type_name)
        assert isinstance(gql_type, GraphQLObjectType)
        plan = EntityPlan(type_name, binding.entity)
        for key, fnodes in sel.items():
            name = fnodes[0].name.value
            if name == "__typename":
                plan.entries.append(Entry(key, Kind.TYPENAME, payload=type_name))
            elif name == binding.key_field:
                plan.entries.append(Entry(key, Kind.KEY))
            else:
                ds = binding.datasets[name]
                args = self._args(gql_type, fnodes)
                first = self._page_size(args.get("first"))
                plan.entries.append(Entry(key, Kind.DATASET, payload=self._entity_dataset(ds, first, fnodes)))
        return plan

    def _entity_dataset(self, ds: DatasetSpec, first: int, fnodes: list[FieldNode]) -> EntityDatasetPlan:
        access = self.access(ds)
        loc = locations(fnodes)
        binding = self.bindings.nodes_by_dataset[ds.code]
        gql_type = self.schema.get_type(_type_name(binding))
        assert isinstance(gql_type, GraphQLObjectType)
        node = self.node(binding, gql_type, subselection(fnodes, self.fragments, self.variables))
        if not access.allowed:  # the node plan only names the denied fields; nothing is read
            return EntityDatasetPlan(ds, first, node, _forbidden(ds, access.reason, loc), access)
        key_field = ds.field(ds.entity_field or "")
        d = self.decide(ds, key_field)
        if not decisions.may_filter(d):
            self._record(ds, key_field, d)
            reason = f"looking up by {_camel(key_field.name)} needs it in clear: {d.reason}"
            denial = {
                "message": f"Access to {ds.code} is denied: {reason}.",
                "locations": loc,
                "extensions": {
                    "code": errors.FORBIDDEN_FIELD,
                    "reason": reason,
                    "resourceCode": ds.resource_code,
                    "dataset": ds.code,
                },
            }
            return EntityDatasetPlan(ds, first, None, denial, access)
        if is_protected(key_field):  # look up and group by the blind index
            blind = self._cipher(ds).blinder(key_field.name)
            column = blind_column(key_field.name)
            node.column(column)
            return EntityDatasetPlan(
                ds, first, node, None, access, key_column=column, blind=blind, scope=self._scope(ds, access)
            )
        node.column(key_field.name)
        return EntityDatasetPlan(
            ds, first, node, None, access, key_column=key_field.name, scope=self._scope(ds, access)
        )


def _forbidden(ds: DatasetSpec, reason: str, loc: list[dict[str, int]] | None) -> dict[str, Any]:
    return {
        "message": f"{ds.name} ({ds.code}) is not available to you: {reason}. "
        f"Apply for access to resource {ds.resource_code}.",
        "locations": loc,
        "extensions": {
            "code": errors.FORBIDDEN,
            "reason": reason,
            "resourceCode": ds.resource_code,
            "dataset": ds.code,
        },
    }


def forbidden_dataset(
    ds: DatasetSpec, access: DatasetAccess, loc: list[dict[str, int]] | None
) -> dict[str, Any]:
    return _forbidden(ds, access.reason, loc)


def _type_name(binding: NodeBinding) -> str:
    return binding.connection_type.removesuffix("Connection")


def check_value(name: str, value: Any, max_length: int) -> None:
    """One filter operand or entity key: a FieldError (BAD_USER_INPUT, or FILTER_TOO_LARGE for
    an over-long string) for a value that could only fail in the database or match nothing."""
    if isinstance(value, str):
        if len(value) > max_length:
            raise FieldError(
                f"`{name}` is {len(value)} characters long; at most {max_length} are allowed.",
                errors.FILTER_TOO_LARGE,
                limit=max_length,
            )
        if "\x00" in value:
            raise FieldError(f"`{name}` contains a NUL character.", errors.BAD_USER_INPUT)
    elif not _finite(value):
        raise FieldError(f"`{name}` must be a finite number.", errors.BAD_USER_INPUT)


def _finite(value: Any) -> bool:
    if isinstance(value, decimal.Decimal):
        return value.is_finite()
    return not isinstance(value, float) or math.isfinite(value)


def _camel(snake: str) -> str:
    from schema.naming import camel

    return camel(snake)
