"""Schema-driven fuzzing: valid queries generated (hypothesis-graphql) from each tier's schema as
its caller introspects it — the open tier anonymously, the share tier as hrss (granted, with an
SM2 key) and as samr (refused most personal fields) — sent to the app. For every answer:

- no 5xx;
- every error carries an `extensions.code` from the documented set (README, "Errors");
- no value the caller may not read: a field that comes back with a value is not one the same
  caller is refused (FORBIDDEN_FIELD / FORBIDDEN) when asking for that field alone, along the
  same path with the same arguments.

The same tool's negative mode (queries the schema does not admit) checks the first two.

Bounded: FUZZ_EXAMPLES per caller on each backend (derandomised when CI is set, so a CI run is
reproducible); what a run finds is kept as an explicit case in REGRESSIONS below."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from graphql import (
    REMOVE,
    ArgumentNode,
    DocumentNode,
    FieldNode,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    Visitor,
    build_client_schema,
    get_introspection_query,
    parse,
    print_ast,
    visit,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, queries

FUZZ_EXAMPLES = int(os.environ.get("SHUQIAO_FUZZ_EXAMPLES", "50"))  # per caller and backend
GQL = "application/graphql-response+json"
PAGE = 5  # rows a generated page asks for at most

# README, "Errors", and resolvers.errors: what `extensions.code` may say to a query.
DOCUMENTED_CODES = {
    "FORBIDDEN_FIELD",
    "FORBIDDEN",
    "FORBIDDEN_FILTER",
    "PAGE_SIZE_EXCEEDED",
    "QUERY_TOO_DEEP",
    "QUERY_TOO_COMPLEX",
    "TOO_MANY_ALIASES",
    "TOO_MANY_ROOT_FIELDS",
    "BAD_USER_INPUT",
    "BAD_REQUEST",
    "GRAPHQL_PARSE_FAILED",
    "GRAPHQL_VALIDATION_FAILED",
    "OPERATION_NOT_SUPPORTED",
    "FILTER_TOO_LARGE",
}
REFUSED = {"FORBIDDEN_FIELD", "FORBIDDEN"}

# The custom scalars' literals (hypothesis-graphql generates the built-in ones itself).
SCALARS = {
    "Date": st.dates().map(lambda d: StringValueNode(value=d.isoformat())),
    "Decimal": st.decimals(allow_nan=False, allow_infinity=False, places=2).map(
        lambda d: StringValueNode(value=str(d))
    ),
}


class _Pageable(Visitor):
    """Most generated pages would be refused before reading a row: `after` is a random string,
    never a cursor the gateway produced, and `first` is often past the 500 cap. Drop `after` and
    bring `first` into 0..PAGE (and generate no NUL character,
    refused in any string operand), so most examples read rows (the refusals are tested in
    tests/integration)."""

    def enter_argument(self, node: ArgumentNode, *_: Any) -> Any:
        if node.name.value == "after":
            return REMOVE
        if node.name.value == "first" and isinstance(node.value, IntValueNode):
            rows = abs(int(node.value.value)) % (PAGE + 1)
            return ArgumentNode(name=node.name, value=IntValueNode(value=str(rows)))
        return None


def pageable(document: DocumentNode) -> str:
    return print_ast(visit(document, _Pageable()))


@pytest.fixture(scope="module")
def app_client(demo_env: Any) -> Iterator[Any]:
    """An app of this module's own: the anonymous rate limit raised above the examples' count."""
    from starlette.testclient import TestClient

    from gateway.app import create_app

    with TestClient(create_app(replace(demo_env.settings, anonymous_rate="100000/minute"))) as c:
        yield c


@pytest.fixture(scope="module")
def callers(app_client: Any, demo_env: Any) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {"anonymous": {}}
    for dept in ("hrss", "samr"):
        c = demo_env.credentials["clients"][dept]
        r = app_client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(c["client_id"], c["client_secret"]),
        )
        assert r.status_code == 200, r.text
        out[dept] = {"Authorization": f"Bearer {r.json()['access_token']}"}
    return out


def ask(client: Any, tier: str, headers: dict[str, str], query: str) -> Any:
    return client.post(f"/{tier}/graphql", json={"query": query}, headers={"Accept": GQL, **headers})


def introspect(client: Any, tier: str, headers: dict[str, str]) -> GraphQLSchema:
    r = ask(client, tier, headers, get_introspection_query())
    assert r.status_code == 200, r.text
    return build_client_schema(r.json()["data"])


# -- the leak check: a value the caller is refused alone --------------------------------------


def _leaves(data: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The response-key paths (list indices dropped) of every leaf with a non-null value."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(data, list):
        for item in data:
            yield from _leaves(item, path)
    elif data is not None and path and not path[-1].startswith("__"):
        yield path


def _prune(selection_set: SelectionSetNode, path: tuple[str, ...]) -> SelectionSetNode | None:
    """`selection_set` with only the selections that lead to `path` (response keys)."""
    kept: list[Any] = []
    for sel in selection_set.selections:
        if isinstance(sel, InlineFragmentNode):
            inner = _prune(sel.selection_set, path)
            if inner is not None:
                kept.append(InlineFragmentNode(type_condition=sel.type_condition, selection_set=inner))
        elif isinstance(sel, FieldNode) and (sel.alias or sel.name).value == path[0]:
            if len(path) == 1:
                kept.append(FieldNode(alias=sel.alias, name=sel.name, arguments=sel.arguments))
            elif sel.selection_set is not None:
                inner = _prune(sel.selection_set, path[1:])
                if inner is not None:
                    kept.append(
                        FieldNode(
                            alias=sel.alias, name=sel.name, arguments=sel.arguments, selection_set=inner
                        )
                    )
    return SelectionSetNode(selections=tuple(kept)) if kept else None


def alone(document: DocumentNode, path: tuple[str, ...]) -> str | None:
    """The query asking for the leaf at `path` alone, as `document` asks for it."""
    op = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    pruned = _prune(op.selection_set, path)
    if pruned is None:
        return None
    return print_ast(
        DocumentNode(definitions=(OperationDefinitionNode(operation=op.operation, selection_set=pruned),))
    )


class Checker:
    """The properties, for one tier and caller; answers to "that field alone" are cached."""

    def __init__(self, client: Any, tier: str, headers: dict[str, str]) -> None:
        self.client, self.tier, self.headers = client, tier, headers
        self.refused_alone: dict[str, bool] = {}

    def answer(self, query: str) -> dict[str, Any]:
        r = ask(self.client, self.tier, self.headers, query)
        assert r.status_code < 500, (query, r.status_code, r.text[:2000])
        body: dict[str, Any] = r.json()
        for error in body.get("errors", []):
            code = (error.get("extensions") or {}).get("code")
            assert code in DOCUMENTED_CODES, (query, error)
        return body

    def is_refused_alone(self, query: str) -> bool:
        if query not in self.refused_alone:
            body = self.answer(query)
            codes = {(e.get("extensions") or {}).get("code") for e in body.get("errors", [])}
            self.refused_alone[query] = bool(codes & REFUSED)
        return self.refused_alone[query]

    def check(self, query: str) -> None:
        body = self.answer(query)
        document = parse(query)
        for path in set(_leaves(body.get("data"))):
            probe = alone(document, path)
            assert probe is not None, (query, path)
            assert not self.is_refused_alone(probe), (
                f"{'.'.join(path)} has a value in the answer to\n{query}\nbut is refused alone:\n{probe}"
            )


FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    derandomize=bool(os.environ.get("CI")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


@pytest.mark.parametrize(("tier", "caller"), [("open", "anonymous"), ("share", "hrss"), ("share", "samr")])
def test_generated_queries(
    app_client: Any, callers: dict[str, dict[str, str]], tier: str, caller: str
) -> None:
    checker = Checker(app_client, tier, callers[caller])
    schema = introspect(app_client, tier, callers[caller])

    @FUZZ
    @given(query=queries(schema, custom_scalars=SCALARS, print_ast=pageable, allow_x00=False))
    def run(query: str) -> None:
        checker.check(query)

    run()


@pytest.mark.parametrize(("tier", "caller"), [("open", "anonymous"), ("share", "hrss")])
def test_invalid_queries(app_client: Any, callers: dict[str, dict[str, str]], tier: str, caller: str) -> None:
    """hypothesis-graphql's negative mode: queries the schema does not admit (wrong argument
    types, unknown enum values…) are refused with a documented code, never a 5xx."""
    checker = Checker(app_client, tier, callers[caller])
    schema = introspect(app_client, tier, callers[caller])

    @settings(FUZZ, max_examples=max(FUZZ_EXAMPLES // 2, 1))
    @given(query=queries(schema, custom_scalars=SCALARS, mode=Mode.NEGATIVE))
    def run(query: str) -> None:
        checker.answer(query)

    run()


def test_a_leaf_alone_keeps_its_path_arguments_aliases_and_fragments() -> None:
    """The probe the leak check sends: only the selections leading to one response path."""
    document = parse(
        "{ a: population(first: 2) { edges { node { name idNumber ... on Population { phone } } } }"
        " totalCount: __typename }"
    )
    probe = alone(document, ("a", "edges", "node", "phone"))
    assert probe is not None
    assert " ".join(probe.split()) == (
        "{ a: population(first: 2) { edges { node { ... on Population { phone } } } } }"
    )
    assert alone(document, ("nothing",)) is None
