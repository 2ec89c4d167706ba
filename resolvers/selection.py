"""Field collection: which response keys a selection set asks for, with fragments
expanded and @skip/@include applied. Every generated type is a concrete object type,
so (after validation) every fragment's type condition holds where it is spread."""

from __future__ import annotations

from graphql import (
    BooleanValueNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    NamedTypeNode,
    SelectionSetNode,
    VariableNode,
)
from graphql.execution.values import VariableValues

Collected = dict[str, list[FieldNode]]


def _included(node: FieldNode | InlineFragmentNode | FragmentSpreadNode, variables: VariableValues) -> bool:
    for directive in node.directives or ():
        name = directive.name.value
        if name not in ("skip", "include"):
            continue
        value = False
        for arg in directive.arguments or ():
            if arg.name.value == "if":
                if isinstance(arg.value, BooleanValueNode):
                    value = arg.value.value
                elif isinstance(arg.value, VariableNode):
                    value = bool(variables.coerced.get(arg.value.name.value))
        if (name == "skip" and value) or (name == "include" and not value):
            return False
    return True


def collect(
    selection_sets: list[SelectionSetNode],
    fragments: dict[str, FragmentDefinitionNode],
    variables: VariableValues,
    *,
    on: str | None = None,
) -> Collected:
    """The spec's CollectFields: a fragment spread again within one collection adds no new
    field, so each is walked at most once per call. That keeps a call linear in the document
    however its fragments fan out (re-walking on every spread is exponential), and ends cycles."""
    out: Collected = {}
    seen: set[str] = set()

    def visit(sel: SelectionSetNode) -> None:
        for node in sel.selections:
            if not _included(node, variables):  # type: ignore[arg-type]
                continue
            if isinstance(node, FieldNode):
                key = node.alias.value if node.alias else node.name.value
                out.setdefault(key, []).append(node)
            elif isinstance(node, InlineFragmentNode):
                if _applies(node.type_condition, on):
                    visit(node.selection_set)
            elif isinstance(node, FragmentSpreadNode):
                name = node.name.value
                if name in seen or not _applies(fragments[name].type_condition, on):
                    continue
                seen.add(name)
                visit(fragments[name].selection_set)

    for sel in selection_sets:
        visit(sel)
    return out


def _applies(condition: NamedTypeNode | None, on: str | None) -> bool:
    """Whether a fragment applies to object type `on` (None: every fragment does). Only the
    abstract type `_Entity` of a federated subgraph's `_entities` selects between types."""
    return on is None or condition is None or condition.name.value in (on, "_Entity")


def subselection(
    nodes: list[FieldNode], fragments: dict[str, FragmentDefinitionNode], variables: VariableValues
) -> Collected:
    return collect([n.selection_set for n in nodes if n.selection_set], fragments, variables)


def locations(nodes: list[FieldNode]) -> list[dict[str, int]] | None:
    out = []
    for n in nodes:
        if n.loc is not None and n.loc.source is not None:
            loc = n.loc.source.get_location(n.loc.start)
            out.append({"line": loc.line, "column": loc.column})
    return out or None
