"""Parsing and validation, done once per distinct query text per schema.

Per-request parse + validate costs more than a whole cached execution, so documents
are kept in a small LRU on each built schema (a schema rebuild drops its cache).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from graphql import DocumentNode, GraphQLError, GraphQLSchema, parse, validate

from policies.limits import SATURATED, DocumentShape, Limits, measure
from resolvers.cache_stats import DOCUMENT_HIT, DOCUMENT_MISS
from resolvers.errors import (
    PARSE_FAILED,
    QUERY_TOO_COMPLEX,
    QUERY_TOO_DEEP,
    TOO_MANY_ALIASES,
    TOO_MANY_ROOT_FIELDS,
    VALIDATION_FAILED,
    RequestError,
)

MAX_TOKENS = 10_000
INTROSPECTION_MAX_DEPTH = 20


@dataclass(frozen=True, slots=True)
class Prepared:
    document: DocumentNode | None
    shape: DocumentShape | None
    errors: tuple[RequestError, ...] = ()


def _locations(err: GraphQLError) -> list[dict[str, int]] | None:
    return [{"line": loc.line, "column": loc.column} for loc in err.locations] if err.locations else None


def _count(n: int) -> str:
    return f"more than {SATURATED:,}" if n >= SATURATED else f"{n:,}"


def shape_problems(shape: DocumentShape, limits: Limits) -> list[RequestError]:
    """What the operator's limits refuse in a document's expanded shape (empty: within them)."""
    problems: list[RequestError] = []
    if shape.aliases > limits.max_aliases:
        problems.append(
            RequestError(
                f"The query uses {shape.aliases} aliases; at most {limits.max_aliases} are allowed.",
                TOO_MANY_ALIASES,
                limit=limits.max_aliases,
            )
        )
    if shape.root_fields > limits.max_root_fields:
        problems.append(
            RequestError(
                f"The operation selects {shape.root_fields} root fields; at most {limits.max_root_fields}.",
                TOO_MANY_ROOT_FIELDS,
                limit=limits.max_root_fields,
            )
        )
    if shape.depth > limits.max_depth or shape.introspection_depth > INTROSPECTION_MAX_DEPTH:
        problems.append(
            RequestError(
                f"The query is nested {shape.depth} levels deep; at most {limits.max_depth} are allowed.",
                QUERY_TOO_DEEP,
                limit=limits.max_depth,
            )
        )
    if shape.fields > limits.max_fields:
        problems.append(
            RequestError(
                f"The query expands to {_count(shape.fields)} fields (a fragment counts once per spread); "
                f"at most {limits.max_fields} are allowed.",
                QUERY_TOO_COMPLEX,
                limit=limits.max_fields,
            )
        )
    return problems


def prepare(schema: GraphQLSchema, query: str, limits: Limits) -> Prepared:
    try:
        document = parse(query, max_tokens=MAX_TOKENS)
    except GraphQLError as err:
        return Prepared(None, None, (RequestError(err.message, PARSE_FAILED, locations=_locations(err)),))
    shape = measure(document)
    problems = shape_problems(shape, limits)
    if problems:  # refused before validation, which is itself costly on such documents
        return Prepared(document, shape, tuple(problems))
    errors = validate(schema, document, max_errors=20)
    if errors:
        return Prepared(
            document,
            shape,
            tuple(RequestError(e.message, VALIDATION_FAILED, locations=_locations(e)) for e in errors),
        )
    return Prepared(document, shape)


class DocumentCache:
    def __init__(self, schema: GraphQLSchema, limits: Limits, size: int = 512) -> None:
        self._schema = schema
        self._limits = limits
        self._size = size
        self._entries: OrderedDict[str, Prepared] = OrderedDict()

    def get(self, query: str) -> Prepared:
        hit = self._entries.get(query)
        if hit is not None:
            DOCUMENT_HIT.inc()
            self._entries.move_to_end(query)
            return hit
        DOCUMENT_MISS.inc()
        prepared = prepare(self._schema, query, self._limits)
        self._entries[query] = prepared
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return prepared
