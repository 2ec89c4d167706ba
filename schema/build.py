"""Catalogue → one Strawberry schema per tier (and, on the share tier, per department).

Types are generated, so they are declared in a throw-away module namespace: Strawberry
resolves forward references (a row type linking to an entity that lists row types)
through the declaring module, and the cycle needs names, not objects.
"""

from __future__ import annotations

import enum
import itertools
import sys
import types
import typing
from collections.abc import Callable

import strawberry
from graphql import GraphQLSchema
from strawberry.schema.config import StrawberryConfig

from catalogue.service import Catalogue
from catalogue.spec import ENTITY_KEY_NAMES, DatasetSpec, Entity, FieldSpec
from policies import decisions
from policies.model import CATEGORY_LABELS, OPEN_LABELS, PI, SHARE_LABELS, Tier
from schema.bindings import Bindings, EntityBinding, NodeBinding
from schema.common import FILTERS, OUTPUT_TYPES, PageInfo, SortDirection
from schema.naming import camel, enum_value, pascal

ENTITY_TYPE_NAMES = {Entity.LEGAL_ENTITY: "LegalEntity", Entity.PERSON: "Person"}
ENTITY_DESCRIPTIONS = {
    Entity.LEGAL_ENTITY: "法人: a legal entity identified by 统一社会信用代码, joined across departments.",
    Entity.PERSON: "自然人: a person identified by 身份证号, joined across departments.",
}
_counter = itertools.count(1)
EMPTY_ROOT = "_empty"  # Query's only field when no dataset is available to the caller


class FederationKinds(typing.Protocol):
    """How a federated subgraph declares its shared types (schema.federation implements it)."""

    page_info: type

    def entity(self, key: str, *, resolvable: bool) -> Callable[..., type]: ...

    def shareable_field(self, **kwargs: typing.Any) -> typing.Any: ...


class TierSchema:
    """A built schema plus the bindings the resolvers plan against."""

    def __init__(self, strawberry_schema: strawberry.Schema, bindings: Bindings) -> None:
        self.strawberry = strawberry_schema
        self.graphql: GraphQLSchema = strawberry_schema._schema
        self.bindings = bindings

    def sdl(self) -> str:
        return self.strawberry.as_str()

    # Set on a federated subgraph (schema.federation): the SDL `_service { sdl }` answers.
    federation_sdl: str | None = None


def _dataset_description(ds: DatasetSpec, catalogue: Catalogue) -> str:
    dept = catalogue.departments.get(ds.department)
    parts = [
        f"{ds.name} ({ds.name_en})" if ds.name_en else ds.name,
        f"资源代码 {ds.resource_code}; 提供部门 {dept.name if dept else ds.department}; "
        f"{CATEGORY_LABELS[ds.category]}; 更新周期 {ds.update_cycle}; "
        f"{SHARE_LABELS[ds.share]} / {OPEN_LABELS[ds.open]}.",
    ]
    if ds.description:
        parts.append(ds.description)
    return "\n".join(parts)


def _field_description(f: FieldSpec) -> str:
    pi = {PI.NONE: "", PI.PERSONAL: ", 个人信息", PI.SENSITIVE: ", 敏感个人信息"}[f.pi]
    text = f"{f.title} [L{int(f.level)}{pi}]"
    if f.mask is not None:
        text += f"; masked ({f.mask.value}) unless granted in clear"
    return text + (f". {f.description}" if f.description else "")


class _Builder:
    def __init__(
        self,
        catalogue: Catalogue,
        tier: Tier,
        department: str | None,
        *,
        subgraph: str | None = None,
        federation: FederationKinds | None = None,
    ) -> None:
        # `subgraph`: only this provider's datasets, as an Apollo Federation v2 subgraph seen by
        # consumer `department` (schema.federation supplies the federated type kinds)
        self.subgraph = subgraph
        self.fed = federation
        self.catalogue = catalogue
        self.tier = tier
        self.department = department
        self.module = types.ModuleType(f"shuqiao_schema_{next(_counter)}")
        self.module.typing = typing  # type: ignore[attr-defined]
        self.bindings = Bindings(tier=tier, department=department, version=catalogue.version)
        self.page_info: type = federation.page_info if federation else PageInfo

    # -- visibility: what exists in this schema at all
    def _dataset_listed(self, ds: DatasetSpec) -> bool:
        if self.tier is Tier.OPEN:
            return decisions.open_dataset_listed(ds.policy())
        assert self.department is not None
        return decisions.share_dataset_listed(ds.policy(), self.department)

    def _field_exists(self, ds: DatasetSpec, f: FieldSpec) -> bool:
        if self.tier is Tier.OPEN:
            return decisions.open_field_exists(ds.policy(), f.policy())
        assert self.department is not None
        return decisions.share_field_exists(ds.policy(), f.policy(), self.department)

    # -- type factory
    def _declare(
        self,
        name: str,
        anns: dict[str, object],
        fields: dict[str, object],
        *,
        kind: Callable[..., type],
        description: str,
    ) -> type:
        ns: dict[str, object] = {"__annotations__": anns, "__module__": self.module.__name__, **fields}
        cls = kind(type(name, (), ns), name=name, description=description)
        setattr(self.module, name, cls)
        return cls

    def build(self) -> TierSchema:
        sys.modules[self.module.__name__] = self.module
        try:
            return self._build()
        finally:
            # Strawberry has resolved every annotation by now; the namespace can go.
            del sys.modules[self.module.__name__]

    def _build(self) -> TierSchema:
        datasets = [ds for ds in self.catalogue.published() if self._dataset_listed(ds)]
        datasets.sort(key=lambda d: d.code)
        visible = {ds.code: [f for f in ds.fields if self._field_exists(ds, f)] for ds in datasets}
        # A dataset none of whose fields exist for this caller has no type to offer (an object
        # type needs a field): it is absent, rather than an invalid schema that breaks the tier.
        datasets = [ds for ds in datasets if visible[ds.code]]
        entity_members: dict[Entity, list[DatasetSpec]] = {}
        for ds in datasets:
            if ds.entity and ds.entity_field and any(f.name == ds.entity_field for f in visible[ds.code]):
                entity_members.setdefault(ds.entity, []).append(ds)
        if self.subgraph:
            # Links follow the consumer's whole share schema (so the composition has every link
            # the share tier has); types and roots come only from the provider's own datasets.
            linked = entity_members
            datasets = [ds for ds in datasets if ds.department == self.subgraph]
            entity_members = {
                e: [ds for ds in members if ds.department == self.subgraph] for e, members in linked.items()
            }
            referenced = {
                f.references for ds in datasets for f in visible[ds.code] if f.references and f.link_name
            }
            entity_members = {e: m for e, m in entity_members.items() if m or e in referenced}
            for ds in datasets:
                self._node_types(ds, visible[ds.code], linked)
        else:
            for ds in datasets:
                self._node_types(ds, visible[ds.code], entity_members)
        for entity, members in entity_members.items():
            self._entity_type(entity, members)
        query = self._query(datasets, {e: m for e, m in entity_members.items() if m})
        schema: strawberry.Schema
        if self.fed is not None:
            schema = strawberry.federation.Schema(
                query=query,
                types=[self.fed.page_info],
                config=StrawberryConfig(auto_camel_case=False),
                federation_version="2.7",  # schema.federation.FEDERATION_SPEC
            )
        else:
            schema = strawberry.Schema(
                query=query, types=[PageInfo], config=StrawberryConfig(auto_camel_case=False)
            )
        return TierSchema(schema, self.bindings)

    def _node_types(
        self, ds: DatasetSpec, fields: list[FieldSpec], entity_members: dict[Entity, list[DatasetSpec]]
    ) -> None:
        node = pascal(ds.code)
        anns: dict[str, object] = {}
        attrs: dict[str, object] = {}
        bound: dict[str, FieldSpec] = {}
        links: dict[str, tuple[FieldSpec, Entity]] = {}
        for f in fields:
            gql = camel(f.name)
            py = str if f.graphql_type_is_string else OUTPUT_TYPES[f.type]
            anns[f.name] = py | None
            attrs[f.name] = strawberry.field(name=gql, description=_field_description(f))
            bound[gql] = f
            if f.references and f.link_name and f.references in entity_members:
                ent_name = ENTITY_TYPE_NAMES[f.references]
                link_gql = camel(f.link_name)
                anns[f"_link_{f.name}"] = f"typing.Optional[{ent_name}]"
                attrs[f"_link_{f.name}"] = strawberry.field(
                    name=link_gql, description=f"The {ent_name} whose key is in {gql}."
                )
                links[link_gql] = (f, f.references)
        self._declare(
            node, anns, attrs, kind=strawberry.type, description=_dataset_description(ds, self.catalogue)
        )

        self._declare(
            f"{node}Edge",
            {"cursor": str, "node": node},
            {"cursor": strawberry.field(name="cursor"), "node": strawberry.field(name="node")},
            kind=strawberry.type,
            description=f"A {node} and its cursor.",
        )
        self._declare(
            f"{node}Connection",
            {"total_count": int, "edges": f"list[{node}Edge]", "page_info": self.page_info},
            {
                "total_count": strawberry.field(name="totalCount", description="Rows matching `where`."),
                "edges": strawberry.field(name="edges"),
                "page_info": strawberry.field(name="pageInfo"),
            },
            kind=strawberry.type,
            description=f"A page of {ds.name}.",
        )
        where_anns: dict[str, object] = {}
        where_attrs: dict[str, object] = {}
        for f in fields:
            where_anns[f.name] = FILTERS[f.type] | None
            where_attrs[f.name] = strawberry.field(name=camel(f.name), default=strawberry.UNSET)
        if where_anns:
            self._declare(
                f"{node}Where",
                where_anns,
                where_attrs,
                kind=strawberry.input,
                description=f"Filters on {node}; all given conditions must hold.",
            )
            order_enum = strawberry.enum(
                typing.cast(
                    "type[enum.Enum]",
                    enum.Enum(f"{node}OrderField", {enum_value(f.name): f.name for f in fields}),
                ),
                name=f"{node}OrderField",
            )
            setattr(self.module, f"{node}OrderField", order_enum)
            self._declare(
                f"{node}OrderBy",
                {"field": order_enum, "direction": SortDirection},
                {
                    "field": strawberry.field(name="field"),
                    "direction": strawberry.field(name="direction", default=SortDirection.ASC),
                },
                kind=strawberry.input,
                description=f"One ordering key for {node}.",
            )
        binding = NodeBinding(ds, bound, links, f"{node}Connection", f"{node}Edge")
        self.bindings.nodes[node] = binding
        self.bindings.nodes_by_dataset[ds.code] = binding

    def _entity_type(self, entity: Entity, members: list[DatasetSpec]) -> None:
        name = ENTITY_TYPE_NAMES[entity]
        key = ENTITY_KEY_NAMES[entity]
        anns: dict[str, object] = {key: str}
        attrs: dict[str, object] = {key: strawberry.field(name=camel(key), description="The entity key.")}
        by_field: dict[str, DatasetSpec] = {}
        for ds in members:
            resolver = _null_resolver(
                self.module.__name__,
                {"first": int | None},
                f"typing.Optional[list[{pascal(ds.code)}]]",
                defaults={"first": 20},
            )
            attrs[ds.code] = strawberry.field(
                resolver=resolver, name=camel(ds.code), description=f"{ds.name} rows for this {name}."
            )
            by_field[camel(ds.code)] = ds
        kind = self.fed.entity(camel(key), resolvable=bool(members)) if self.fed else strawberry.type
        self._declare(name, anns, attrs, kind=kind, description=ENTITY_DESCRIPTIONS[entity])
        self.bindings.entities[name] = EntityBinding(entity, camel(key), by_field)
        self.bindings.entities_by_kind[entity] = name

    def _query(self, datasets: list[DatasetSpec], entity_members: dict[Entity, list[DatasetSpec]]) -> type:
        attrs: dict[str, object] = {}
        mod = self.module
        for ds in datasets:
            node = pascal(ds.code)
            args: dict[str, object] = {"first": int | None, "after": str | None}
            if hasattr(mod, f"{node}Where"):
                args["where"] = getattr(mod, f"{node}Where") | None
                args["order_by"] = list[getattr(mod, f"{node}OrderBy")] | None  # type: ignore[misc]
            resolver = _null_resolver(
                self.module.__name__,
                args,
                f"typing.Optional[{node}Connection]",
                defaults={"first": 20},
                names={"order_by": "orderBy"},
            )
            attrs[ds.code] = strawberry.field(
                resolver=resolver, name=camel(ds.code), description=_dataset_description(ds, self.catalogue)
            )
            self.bindings.root_datasets[camel(ds.code)] = ds
        for entity in entity_members:
            name = ENTITY_TYPE_NAMES[entity]
            key = ENTITY_KEY_NAMES[entity]
            resolver = _null_resolver(
                self.module.__name__, {key: str}, f"typing.Optional[{name}]", names={key: camel(key)}
            )
            root = camel(name[0].lower() + name[1:])
            field = self.fed.shareable_field if self.fed else strawberry.field
            # several subgraphs answer the same lookup: @shareable in a federated subgraph
            attrs[f"entity_{entity.value}"] = field(
                resolver=resolver, name=root, description=ENTITY_DESCRIPTIONS[entity]
            )
            self.bindings.root_entities[root] = entity
        if not attrs and self.fed is None:  # a subgraph's Query has _service (schema.federation)
            # GraphQL requires a field on Query; with nothing to offer, one that says so
            # (answered null by graphql-core) rather than an invalid schema and a failing tier.
            attrs[EMPTY_ROOT] = strawberry.field(
                resolver=_null_resolver(self.module.__name__, {}, "typing.Optional[bool]"),
                name=EMPTY_ROOT,
                description="Always null: no dataset of the catalogue is available to you.",
            )
        return self._declare(
            "Query",
            {},
            attrs,
            kind=strawberry.type,
            description="Datasets of the 政务信息资源目录 you may see.",
        )


def _null_resolver(
    module: str,
    args: dict[str, object],
    returns: str,
    *,
    defaults: dict[str, object] | None = None,
    names: dict[str, str] | None = None,
) -> Callable[..., None]:
    """A resolver that only carries the argument signature: data is served by the
    compiled executor (resolvers/), never by Strawberry's per-field resolution."""
    import inspect

    defaults = defaults or {}
    names = names or {}
    params = []
    anns: dict[str, object] = {}
    for arg, ann in args.items():
        gql = names.get(arg)
        annotation = typing.Annotated[ann, strawberry.argument(name=gql)] if gql else ann
        anns[arg] = annotation
        default = defaults.get(arg, strawberry.UNSET if _is_optional(ann) else inspect.Parameter.empty)
        params.append(
            inspect.Parameter(arg, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        )

    def resolver(**_: object) -> None:
        return None

    resolver.__signature__ = inspect.Signature(params, return_annotation=returns)  # type: ignore[attr-defined]
    resolver.__annotations__ = {**anns, "return": returns}
    resolver.__module__ = module  # string annotations resolve in the generated namespace
    return resolver


def _is_optional(ann: object) -> bool:
    return type(None) in typing.get_args(ann)


def build_subgraph(catalogue: Catalogue, department: str, consumer: str | None = None) -> TierSchema:
    """The department's own datasets as an Apollo Federation v2 subgraph, as consumer
    `consumer` (default: the provider itself) sees them (schema.federation)."""
    from schema.federation import build_federated_subgraph

    return build_federated_subgraph(catalogue, department, consumer or department)


def build_subgraph_schema(
    catalogue: Catalogue, department: str, consumer: str, federation: FederationKinds
) -> TierSchema:
    return _Builder(catalogue, Tier.SHARE, consumer, subgraph=department, federation=federation).build()


def build_tier_schema(catalogue: Catalogue, tier: Tier, department: str | None = None) -> TierSchema:
    if tier is Tier.SHARE and not department:
        raise ValueError("the share tier schema is built per consuming department")
    return _Builder(catalogue, tier, department if tier is Tier.SHARE else None).build()
