"""Static query limits, measured on the parsed document before validation runs.

Validation itself is super-linear in the number of overlapping fields, so a 500-alias
or depth-bomb document is refused before graphql-core validates it.
"""

from __future__ import annotations

from dataclasses import dataclass

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)


@dataclass(frozen=True)
class Limits:
    """The operator's ceilings on one request (SHUQIAO_MAX_* settings)."""

    max_body_bytes: int = 64 * 1024
    max_depth: int = 10
    max_cost: int = 50_000
    max_aliases: int = 30
    max_root_fields: int = 10
    max_page_size: int = 500
    default_page_size: int = 20
    max_errors: int = 200
    # Filter operands: an `in` list longer than this, or a string operand (or entity key) longer
    # than that, is refused before any SQL is built (a 50 KB LIKE pattern fails inside SQLite).
    max_in_list: int = 1000
    max_string_operand: int = 1000


@dataclass(frozen=True, slots=True)
class DocumentShape:
    depth: int  # deepest data field (introspection excluded)
    introspection_depth: int
    aliases: int
    root_fields: int


def measure(document: DocumentNode) -> DocumentShape:
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    depth = intro = aliases = roots = 0
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            walker = _Walker(fragments)
            d, i = walker.depth(definition.selection_set, 0, in_intro=False, seen=frozenset())
            depth, intro = max(depth, d), max(intro, i)
            aliases += walker.aliases
            roots = max(roots, len(definition.selection_set.selections))
    return DocumentShape(depth, intro, aliases, roots)


class _Walker:
    def __init__(self, fragments: dict[str, FragmentDefinitionNode]) -> None:
        self.fragments = fragments
        self.aliases = 0

    def depth(
        self, sel: SelectionSetNode | None, level: int, *, in_intro: bool, seen: frozenset[str]
    ) -> tuple[int, int]:
        """(data depth, introspection depth) below this selection set."""
        if sel is None:
            return 0, 0
        data = intro = 0
        for node in sel.selections:
            if isinstance(node, FieldNode):
                if node.alias is not None:
                    self.aliases += 1
                is_intro = in_intro or node.name.value.startswith("__")
                d, i = self.depth(node.selection_set, level + 1, in_intro=is_intro, seen=seen)
                if is_intro:
                    intro = max(intro, i + 1, d + 1)
                else:
                    data, intro = max(data, d + 1), max(intro, i)
            elif isinstance(node, InlineFragmentNode):
                d, i = self.depth(node.selection_set, level, in_intro=in_intro, seen=seen)
                data, intro = max(data, d), max(intro, i)
            elif isinstance(node, FragmentSpreadNode):
                name = node.name.value
                frag = self.fragments.get(name)
                if frag is None or name in seen:  # unknown or cyclic: validation will reject it
                    continue
                d, i = self.depth(frag.selection_set, level, in_intro=in_intro, seen=seen | {name})
                data, intro = max(data, d), max(intro, i)
        return data, intro


def connection_cost(page_size: int, per_row: int) -> int:
    """Cost of a page: the fetch itself plus every value and nested fetch per row."""
    return 1 + page_size * max(per_row, 1)
