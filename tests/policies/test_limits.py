"""The static limit walker (policies/limits.py) and field collection (resolvers/selection.py)
stay linear in the document however its fragments fan out: the work is counted, not timed."""

from __future__ import annotations

import random
from typing import Any

import pytest
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    parse,
)
from graphql.execution.values import VariableValues

import policies.limits as limits
import resolvers.selection as selection
from policies.limits import SATURATED, DocumentShape, Limits, measure
from resolvers.documents import prepare
from tests.support import fan_out


def selection_nodes(document: DocumentNode) -> int:
    """Selections written in the document (fields, spreads, inline fragments), each once."""
    count = 0
    sets = [d.selection_set for d in document.definitions if hasattr(d, "selection_set")]
    while sets:
        sel = sets.pop()
        for node in sel.selections:
            count += 1
            if getattr(node, "selection_set", None) is not None:
                sets.append(node.selection_set)
    return count


class _Counting(limits._Walker):
    last: _Counting | None = None

    def __init__(self, document: DocumentNode) -> None:
        _Counting.last = self
        super().__init__(document)


def measured(document: DocumentNode, monkeypatch: pytest.MonkeyPatch) -> tuple[DocumentShape, int]:
    """The shape and the selection nodes the walker visited to get it."""
    monkeypatch.setattr(limits, "_Walker", _Counting)
    shape = measure(document)
    assert _Counting.last is not None
    return shape, _Counting.last.visits


@pytest.mark.parametrize("depth", [21, 29, 40])
def test_fan_out_is_counted_by_arithmetic_in_linear_work(depth: int, monkeypatch: pytest.MonkeyPatch) -> None:
    document = parse(fan_out(depth))
    shape, visits = measured(document, monkeypatch)
    # What execution would visit: the path to the node, then every spread of F0.
    assert shape.fields == min(3 + 2**depth, SATURATED)
    assert (shape.depth, shape.aliases, shape.root_fields) == (4, 0, 1)
    nodes = selection_nodes(document)
    assert nodes == 3 + 1 + 1 + 2 * depth
    assert visits <= 2 * nodes  # each fragment body walked once to order them, once to summarise


def test_walker_work_grows_with_the_document_not_its_expansion(monkeypatch: pytest.MonkeyPatch) -> None:
    per_node = []
    for depth in (10, 29, 40, 200):
        document = parse(fan_out(depth), max_tokens=10_000)
        shape, visits = measured(document, monkeypatch)
        per_node.append(visits / selection_nodes(document))
    assert shape.fields == SATURATED  # 2**200 is "too many", in small integers
    assert max(per_node) <= 2


def test_refused_before_validation_with_query_too_complex(monkeypatch: pytest.MonkeyPatch) -> None:
    import resolvers.documents as documents

    def no_validation(*_: Any, **__: Any) -> Any:
        raise AssertionError("validation ran on a document over the field limit")

    monkeypatch.setattr(documents, "validate", no_validation)
    for depth in (21, 29, 200):
        prepared = prepare(None, fan_out(depth), Limits())  # type: ignore[arg-type]
        assert [e.code for e in prepared.errors] == ["QUERY_TOO_COMPLEX"]
        assert prepared.errors[0].extensions == {"limit": Limits().max_fields}
    assert "more than 1,000,000,000,000 fields" in prepared.errors[0].message
    assert "536,870,915 fields" in prepare(None, fan_out(29), Limits()).errors[0].message  # type: ignore[arg-type]


def test_fragment_cycles_end_without_exponential_work(monkeypatch: pytest.MonkeyPatch) -> None:
    # Validation rejects cycles; the walker only has to get past them cheaply.
    text = fan_out(29) + (
        " fragment A on T { x ...B ...B } fragment B on T { ...A ...A ...C ...F29 }"
        " fragment C on T { ...C ...B } query Q { ...A }"
    )
    document = parse(text)
    shape, visits = measured(document, monkeypatch)
    assert visits <= 2 * selection_nodes(document)
    assert shape.fields > Limits().max_fields  # the fan-out behind the cycle still counts


def test_a_long_chain_of_fragments_is_no_recursion_error() -> None:
    n = 1200  # the parser's 10,000 tokens allow about this many
    text = "{ ...F0 } " + " ".join(f"fragment F{i} on Query {{ ...F{i + 1} }}" for i in range(n))
    text += f" fragment F{n} on Query {{ a b: c }}"
    shape = measure(parse(text, max_tokens=10_000))
    assert (shape.fields, shape.aliases, shape.depth) == (2, 1, 1)


# -- the shape of ordinary documents is what expanding every spread gives


def _expanded(document: DocumentNode) -> DocumentShape:
    """The reference: every spread expanded again (the walker before it was memoised)."""
    frags = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    count = {"aliases": 0, "fields": 0}

    def walk(sel: SelectionSetNode | None, in_intro: bool) -> tuple[int, int]:
        data = intro = 0
        for node in sel.selections if sel is not None else ():
            if isinstance(node, FieldNode):
                count["fields"] += 1
                count["aliases"] += node.alias is not None
                is_intro = in_intro or node.name.value.startswith("__")
                d, i = walk(node.selection_set, is_intro)
                if is_intro:
                    intro = max(intro, i + 1, d + 1)
                else:
                    data, intro = max(data, d + 1), max(intro, i)
            else:
                inner = (
                    node.selection_set
                    if isinstance(node, InlineFragmentNode)
                    else frags[node.name.value].selection_set
                )
                d, i = walk(inner, in_intro)
                data, intro = max(data, d), max(intro, i)
        return data, intro

    depth = intro = roots = 0
    for op in document.definitions:
        if isinstance(op, OperationDefinitionNode):
            d, i = walk(op.selection_set, False)
            depth, intro, roots = max(depth, d), max(intro, i), max(roots, len(op.selection_set.selections))
    return DocumentShape(depth, intro, count["aliases"], roots, count["fields"])


ORDINARY = [
    "{ enterpriseRegistration(first: 2) { ...Page } }"
    " fragment Page on C { totalCount edges { node { ...Ent } } }"
    " fragment Ent on E { creditCode name alias: status ... on E { industry __typename } }",
    "query A { a { ...X ...X } } query B { b: a { ...Y } }"
    " fragment X on T { f g { h: i } } fragment Y on T { ...X z }",
    "{ __schema { types { ...FullType } } }"
    " fragment FullType on __Type { name fields { name type { ...Ref } } }"
    " fragment Ref on __Type { kind name ofType { kind name ofType { kind name } } }",
    '{ legalEntity(creditCode: "x") { creditCode enterpriseRegistration { name } __typename } }',
]


def _random_document(rng: random.Random) -> str:
    def body(frags: int, level: int) -> str:
        parts = []
        for _ in range(rng.randint(1, 3)):
            roll = rng.random()
            if roll < 0.3 and frags:
                parts.append(f"...F{rng.randrange(frags)}")  # only earlier fragments: no cycles
            elif roll < 0.4 and level < 3:
                parts.append("... on T { " + body(frags, level) + " }")
            else:
                name = rng.choice(["a", "b", "__c", "__typename"])
                alias = "x: " if rng.random() < 0.3 else ""
                sub = " { " + body(frags, level + 1) + " }" if level < 3 and rng.random() < 0.5 else ""
                parts.append(alias + name + sub)
        return " ".join(parts)

    n = rng.randint(0, 4)
    frags = [f"fragment F{i} on T {{ {body(i, 0)} }}" for i in range(n)]
    ops = [f"query Q{j} {{ {body(n, 0)} }}" for j in range(rng.randint(1, 2))]
    return " ".join(ops + frags)


def test_ordinary_documents_measure_as_when_expanded() -> None:
    rng = random.Random(13)
    documents = ORDINARY + [_random_document(rng) for _ in range(300)]
    for text in documents:
        document = parse(text)
        assert measure(document) == _expanded(document), text


# -- field collection on the resolver side


def test_collect_visits_each_fragment_once_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """The planner's CollectFields on a fan-out (were it ever handed one) is linear too."""
    document = parse(fan_out(29, on="Query", around="*"))
    nodes = selection_nodes(document)
    visits = 0
    included = selection._included

    def counting(node: Any, variables: VariableValues) -> bool:
        nonlocal visits
        visits += 1
        assert visits <= nodes, "collect walked a fragment again"
        return included(node, variables)

    monkeypatch.setattr(selection, "_included", counting)
    op = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    frags = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    collected = selection.collect([op.selection_set], frags, VariableValues({}, {}))
    assert list(collected) == ["name"] and len(collected["name"]) == 1


def test_collect_keeps_document_order_and_skip_include() -> None:
    document = parse(
        "query($no: Boolean!) { a ...F ... on Query { b ...F } c: a ...G @include(if: $no) } "
        "fragment F on Query { d a } fragment G on Query { e }"
    )
    op = document.definitions[0]
    assert isinstance(op, OperationDefinitionNode)
    frags = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    collected = selection.collect([op.selection_set], frags, VariableValues({}, {"no": False}))
    assert list(collected) == ["a", "d", "b", "c"]
    assert len(collected["a"]) == 2  # its own node and the fragment's, the fragment's once
