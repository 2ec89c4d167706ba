"""Department subgraphs per the Apollo Federation v2 subgraph specification.

A subgraph is one providing department's datasets as one consuming department sees them on
the share tier (schema.build with `subgraph=`): the same types, fields and descriptions, so
that composing every department's subgraph as consumer C sees it gives exactly C's share
schema (tests/federation). What federation needs on top:

- `LegalEntity @key(fields: "creditCode")` and `Person @key(fields: "idNumber")`: each subgraph
  contributes its own datasets' rows to the entity; a subgraph that only *links* to an entity
  (`SocialInsurance.employer`, `EnterpriseRegistration.legalRep`) declares it as a stub,
  `@key(..., resolvable: false)`, whose key is the reference the router follows;
- `@shareable` on what several subgraphs answer identically: `PageInfo` and the entity lookups
  `Query.legalEntity` / `Query.person`;
- `_service { sdl }` answers `federation_sdl` (the schema without the federation plumbing, led
  by `extend schema @link(...)`) and `_entities(representations:)` is answered by the compiled
  executor (resolvers.execute), under the caller's own policies.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import strawberry
from strawberry.federation.schema_directives import Key
from strawberry.federation.types import FieldSet

from catalogue.service import Catalogue
from schema.build import TierSchema, build_subgraph_schema

FEDERATION_SPEC = "https://specs.apollo.dev/federation/v2.7"


@strawberry.federation.type(name="PageInfo", description="Relay-style pagination state.", shareable=True)
class SharedPageInfo:
    """schema.common.PageInfo, @shareable: every subgraph's connections return it."""

    has_next_page: bool = strawberry.field(name="hasNextPage")
    end_cursor: str | None = strawberry.field(name="endCursor")


class _Kinds:
    page_info: type = SharedPageInfo

    def entity(self, key: str, *, resolvable: bool) -> Callable[..., type]:
        def declare(cls: type, *, name: str, description: str) -> type:
            keys: list[str | Key] = [key] if resolvable else [Key(fields=FieldSet(key), resolvable=False)]
            return strawberry.federation.type(cls, name=name, description=description, keys=keys)

        return declare

    def shareable_field(self, **kwargs: Any) -> Any:
        return strawberry.federation.field(shareable=True, **kwargs)


_PLUMBING = re.compile(r"^(scalar _Any|union _Entity\b|type _Service\b)")
_PLUMBING_FIELDS = re.compile(
    r"^  (_entities\(representations: \[_Any!\]!\): \[_Entity\]!|_service: _Service!)$"
)
_SCHEMA_LINK = re.compile(r"^schema (@link\(.*\)) \{\n  query: Query\n\}$", re.S)


def subgraph_sdl(printed: str) -> str:
    """The SDL `_service { sdl }` returns: the printed schema without the `_service` /
    `_entities` plumbing (routers add their own), led by `extend schema @link(...)`."""
    out = []
    for block in printed.strip().split("\n\n"):
        if _PLUMBING.match(block):
            continue
        link = _SCHEMA_LINK.match(block)
        if link:
            out.append(f"extend schema {link.group(1)}")
            continue
        lines = [line for line in block.split("\n") if not _PLUMBING_FIELDS.match(line)]
        if lines[-2:] == ["type Query {", "}"]:
            continue  # no root field of its own (it only contributes entity fields, or nothing)
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def build_federated_subgraph(catalogue: Catalogue, department: str, consumer: str) -> TierSchema:
    """`department`'s subgraph as department `consumer` sees it (the provider sees all of its
    own fields; others see what the share tier lists for them)."""
    built = build_subgraph_schema(catalogue, department, consumer, _Kinds())
    built.federation_sdl = subgraph_sdl(built.sdl())
    return built
