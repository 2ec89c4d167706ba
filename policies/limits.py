"""Static query limits, measured on the parsed document before validation runs.

Validation itself is super-linear in the number of overlapping fields, so a 500-alias
or depth-bomb document is refused before graphql-core validates it.

Every pass here is linear in the document: each fragment is summarised once (its depth,
and how many fields and aliases it expands to) and a spread reuses that summary, so a
fan-out (`fragment F2 { ...F1 ...F1 }` nested 30 deep: a kilobyte that expands to a
billion fields) is counted by arithmetic, not by expansion.
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

# Expanded counts stop growing here: the answer is "too many" either way, and the
# arithmetic stays on small integers however the fragments multiply.
SATURATED = 10**12


@dataclass(frozen=True)
class Limits:
    """The operator's ceilings on one request (SHUQIAO_MAX_* settings)."""

    max_body_bytes: int = 64 * 1024
    max_depth: int = 10
    max_cost: int = 50_000
    max_aliases: int = 30
    max_root_fields: int = 10
    max_fields: int = 2_000
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
    aliases: int  # as execution would meet them: a fragment's count once per spread
    root_fields: int
    fields: int  # fields execution would visit: each fragment's once per spread


@dataclass(frozen=True, slots=True)
class _Summary:
    """One selection set, fragments expanded (by reference to their own summaries)."""

    data: int  # data depth below it, met outside introspection
    intro: int  # introspection depth below it, met outside introspection
    total: int  # depth below it inside an introspection field (every field counts)
    aliases: int
    fields: int


_EMPTY = _Summary(0, 0, 0, 0, 0)


def measure(document: DocumentNode) -> DocumentShape:
    walker = _Walker(document)
    depth = intro = aliases = roots = fields = 0
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            s = walker.summary(definition.selection_set)
            depth, intro = max(depth, s.data), max(intro, s.intro)
            aliases = min(aliases + s.aliases, SATURATED)
            fields = min(fields + s.fields, SATURATED)
            roots = max(roots, len(definition.selection_set.selections))
    return DocumentShape(depth, intro, aliases, roots, fields)


class _Walker:
    """Summarises selection sets; each fragment body is walked once per document."""

    def __init__(self, document: DocumentNode) -> None:
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.done: dict[str, _Summary] = {}
        self.visits = 0  # selection nodes walked: the work, which tests count
        self._resolve_fragments()

    def _resolve_fragments(self) -> None:
        """Summarise every fragment, dependencies first (an explicit stack, so a long
        chain of fragments cannot exhaust Python's). A spread of a fragment still on the
        stack is a cycle, which validation rejects: it counts as empty here."""
        on_stack: set[str] = set()
        for root in self.fragments:
            if root in self.done:
                continue
            stack: list[tuple[str, list[str]]] = [(root, self._spreads(root))]
            on_stack.add(root)
            while stack:
                name, pending = stack[-1]
                while pending and (pending[-1] in self.done or pending[-1] in on_stack):
                    pending.pop()
                if pending:
                    dep = pending.pop()
                    on_stack.add(dep)
                    stack.append((dep, self._spreads(dep)))
                    continue
                stack.pop()
                on_stack.discard(name)
                self.done[name] = self.summary(self.fragments[name].selection_set)

    def _spreads(self, name: str) -> list[str]:
        """Known fragments spread anywhere in this fragment's body, each once."""
        out: dict[str, None] = {}
        sets = [self.fragments[name].selection_set]
        while sets:
            sel = sets.pop()
            for node in sel.selections:
                self.visits += 1
                if isinstance(node, FragmentSpreadNode):
                    if node.name.value in self.fragments:
                        out[node.name.value] = None
                elif isinstance(node, FieldNode | InlineFragmentNode) and node.selection_set is not None:
                    sets.append(node.selection_set)
        return list(out)

    def summary(self, sel: SelectionSetNode | None) -> _Summary:
        """This selection set's shape. Fragments it spreads are looked up, never walked:
        unknown or cyclic ones (validation rejects both) count as empty."""
        if sel is None:
            return _EMPTY
        data = intro = total = aliases = fields = 0
        for node in sel.selections:
            self.visits += 1
            if isinstance(node, FieldNode):
                s = self.summary(node.selection_set)
                fields += 1 + s.fields
                aliases += (node.alias is not None) + s.aliases
                total = max(total, s.total + 1)
                if node.name.value.startswith("__"):
                    intro = max(intro, s.total + 1)
                else:
                    data, intro = max(data, s.data + 1), max(intro, s.intro)
                continue
            if isinstance(node, InlineFragmentNode):
                s = self.summary(node.selection_set)
            elif isinstance(node, FragmentSpreadNode):
                s = self.done.get(node.name.value, _EMPTY)
            else:  # pragma: no cover - graphql-core has no other selection
                continue
            data, intro, total = max(data, s.data), max(intro, s.intro), max(total, s.total)
            fields, aliases = fields + s.fields, aliases + s.aliases
        return _Summary(data, intro, total, min(aliases, SATURATED), min(fields, SATURATED))


def connection_cost(page_size: int, per_row: int) -> int:
    """Cost of a page: the fetch itself plus every value and nested fetch per row."""
    return 1 + page_size * max(per_row, 1)
