"""What each generated GraphQL name stands for in the catalogue: the map the resolvers plan from."""

from __future__ import annotations

from dataclasses import dataclass, field

from catalogue.spec import DatasetSpec, Entity, FieldSpec
from policies.model import Tier


@dataclass(frozen=True)
class NodeBinding:
    """A dataset's row type in one tier schema: only the fields that exist there."""

    dataset: DatasetSpec
    fields: dict[str, FieldSpec]  # GraphQL field name -> column
    links: dict[str, tuple[FieldSpec, Entity]]  # GraphQL field name -> (reference column, entity)
    connection_type: str
    edge_type: str


@dataclass(frozen=True)
class EntityBinding:
    entity: Entity
    key_field: str  # GraphQL name of the key, e.g. creditCode
    datasets: dict[str, DatasetSpec]  # GraphQL field name -> dataset keyed by this entity


@dataclass(frozen=True)
class Bindings:
    tier: Tier
    department: str | None
    version: int
    root_datasets: dict[str, DatasetSpec] = field(default_factory=dict)
    root_entities: dict[str, Entity] = field(default_factory=dict)
    nodes: dict[str, NodeBinding] = field(default_factory=dict)  # by node type name
    nodes_by_dataset: dict[str, NodeBinding] = field(default_factory=dict)
    entities: dict[str, EntityBinding] = field(default_factory=dict)  # by entity type name
    entities_by_kind: dict[Entity, str] = field(default_factory=dict)  # entity -> type name
