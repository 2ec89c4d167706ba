"""Tracing a suspected leak back to its recipient (policies.watermark), as pure functions: the
gateway reads the file, the catalogue, the true values and the keys; this decides which
columns are which and scores every candidate recipient.

A leak may have lost its headers' names, its column order, rows and columns, and some values
may be edited. So:

- the row key column is found by name, else by the form of its values (统一社会信用代码, 身份证号);
  without it nothing can be traced (the mark is keyed by it);
- each marked field is matched to a column by name, else to the numeric column whose values
  lie within the field's tolerance of the true values of the same rows most often (renamed or
  reordered columns); a column is used for one field at most.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from policies.watermark import Cell, Layout, MarkKey, Score, score
from policies.watermark_text import normalise, position_field, read_text_bits

KEY_FORMS = {
    "legal_entity": re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$"),
    "person": re.compile(r"^\d{17}[\dXx]$"),
}
MIN_SHARE = 0.8  # of a column's non-empty values that must look like keys / numbers
MIN_CLOSE = 0.6  # of a column's cells within tolerance of the truth, to be taken for a field


@dataclass(frozen=True, slots=True)
class MarkedField:
    dataset: str
    name: str  # column name in the catalogue, snake_case
    title: str  # 信息项名称
    tolerance: Decimal | None  # None: a text mark (policies.watermark_text)
    text: str | None = None

    def names(self) -> set[str]:
        camel = re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), self.name)
        return {_norm(self.name), _norm(camel), _norm(self.title)}


@dataclass(frozen=True, slots=True)
class TraceTarget:
    """One dataset a leak may come from: its key and its marked fields."""

    dataset: str
    entity: str  # legal_entity | person
    key_field: str
    key_title: str
    fields: tuple[MarkedField, ...]

    def layout(self) -> Layout:
        """Scheme v2's slots for this dataset: from its marked fields, as the planner's
        (resolvers.plan.watermark_layout) — the catalogue's, not the leak's columns."""
        return Layout.of((f.name, f.tolerance is None) for f in self.fields)


@dataclass
class Matching:
    dataset: str
    key_column: str | None
    columns: dict[str, str] = field(default_factory=dict)  # marked field → leak column
    how: dict[str, str] = field(default_factory=dict)  # field → "name" | "values"
    problem: str | None = None
    # text fields whose every digit run has one width: normalised (NFKC) or retyped, so the
    # marks are gone and their positions would only add noise; left out of the score
    erased: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "key_column": self.key_column,
            "columns": self.columns,
            "matched_by": self.how,
            "problem": self.problem,
            "text_marks_erased": self.erased,
        }


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-（）()]", "", name).lower()


def number(text: Any) -> Decimal | None:
    if text is None or isinstance(text, bool):
        return None
    if isinstance(text, int | float | Decimal):
        text = str(text)
    if not isinstance(text, str):
        return None
    try:
        d = Decimal(text.strip().replace(",", ""))
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def _values(rows: Sequence[Mapping[str, Any]], column: str) -> list[Any]:
    return [r.get(column) for r in rows if r.get(column) not in (None, "")]


def find_key_column(rows: Sequence[Mapping[str, Any]], target: TraceTarget) -> str | None:
    columns = list(rows[0].keys()) if rows else []
    wanted = MarkedField(target.dataset, target.key_field, target.key_title, Decimal(1)).names()
    for c in columns:
        if _norm(c) in wanted:
            return c
    form = KEY_FORMS.get(target.entity)
    if form is None:
        return None
    best, best_share = None, 0.0
    for c in columns:
        vals = _values(rows, c)
        if not vals:
            continue
        share = sum(bool(form.match(str(v).strip())) for v in vals) / len(vals)
        if share > best_share:
            best, best_share = c, share
    return best if best_share >= MIN_SHARE else None


def match(
    rows: Sequence[Mapping[str, Any]],
    target: TraceTarget,
    truth: Mapping[str, Mapping[str, Sequence[Any]]] | None = None,
) -> Matching:
    """Which leak column holds which marked field. `truth[field][row key]` are the stored
    values (several rows may share a key), used to match columns whose names say nothing."""
    key = find_key_column(rows, target)
    out = Matching(target.dataset, key)
    if key is None:
        out.problem = (
            f"no column holds {target.key_title} ({target.key_field}): the mark is keyed by it, "
            "so this leak cannot be traced against this dataset"
        )
        return out
    columns = [c for c in (rows[0].keys() if rows else []) if c != key]
    free = list(columns)
    for f in target.fields:
        named = next((c for c in free if _norm(c) in f.names()), None)
        if named is not None:
            out.columns[f.name], out.how[f.name] = named, "name"
            free.remove(named)
    numeric = [c for c in free if _numeric_share(rows, c) >= MIN_SHARE]
    candidates: list[tuple[float, str, str]] = []
    for f in target.fields:
        if f.name in out.columns or truth is None or f.name not in truth:
            continue
        for c in numeric if f.tolerance is not None else free:
            candidates.append((_closeness(rows, key, c, f, truth[f.name]), f.name, c))
    taken: set[str] = set()
    for share, fname, c in sorted(candidates, reverse=True):
        if share < MIN_CLOSE or fname in out.columns or c in taken:
            continue
        out.columns[fname], out.how[fname] = c, "values"
        taken.add(c)
    if not out.columns:
        out.problem = "no column could be matched to a watermarked field"
    return out


def _numeric_share(rows: Sequence[Mapping[str, Any]], column: str) -> float:
    vals = _values(rows, column)
    return sum(number(v) is not None for v in vals) / len(vals) if vals else 0.0


def _closeness(
    rows: Sequence[Mapping[str, Any]],
    key: str,
    column: str,
    f: MarkedField,
    truth: Mapping[str, Sequence[Any]],
) -> float:
    """The share of the column's cells within tolerance of the stored values of their rows (a
    text field: equal to one under NFKC)."""
    seen = close = 0
    for r in rows:
        true = truth.get(str(r.get(key) or "").strip())
        if not true:
            continue
        if f.tolerance is None:
            raw = r.get(column)
            if not isinstance(raw, str) or not raw:
                continue
            seen += 1
            close += normalise(raw) in {normalise(str(t)) for t in true}
            continue
        v = number(r.get(column))
        if v is None:
            continue
        seen += 1
        tolerance = f.tolerance
        close += any(abs(v - t) <= tolerance for t in true)
    return close / seen if seen >= 5 else 0.0


def cells(rows: Sequence[Mapping[str, Any]], target: TraceTarget, m: Matching) -> list[Cell]:
    if m.key_column is None:
        return []
    by_name = {f.name: f for f in target.fields}
    out: list[Cell] = []
    text: dict[str, list[Cell]] = {}
    for r in rows:
        k = str(r.get(m.key_column) or "").strip()
        if not k:
            continue
        for fname, column in m.columns.items():
            v = r.get(column)
            if v in (None, ""):
                continue
            tolerance = by_name[fname].tolerance
            if tolerance is not None:
                out.append(Cell(target.dataset, fname, k, v, tolerance))
                continue
            for i, bit in enumerate(read_text_bits(v)):  # one cell per digit run
                text.setdefault(fname, []).append(
                    Cell(target.dataset, position_field(fname, i), k, v, None, bit)
                )
    for fname, found in text.items():
        # Marks make about a quarter of the runs full-width: a column with one width throughout
        # has lost them. Deciding this from the leak alone keeps the score's null hypothesis
        # (a candidate's predicted bits are independent of what is seen).
        if len({c.bit for c in found if c.bit is not None}) < 2:
            m.erased.append(fname)
        else:
            out.extend(found)
    return out


def trace(
    rows: Sequence[Mapping[str, Any]],
    targets: Iterable[TraceTarget],
    recipients: Iterable[str],
    keys: Iterable[MarkKey],
    truth: Mapping[str, Mapping[str, Mapping[str, Sequence[Any]]]] | None = None,
    schemes: Mapping[str, Sequence[str]] | None = None,
) -> tuple[list[Matching], list[Score]]:
    """Match the leak against every target dataset and score every (recipient, key, scheme) over
    all the cells found; most likely first. `schemes`: per key id, the schemes its deliveries
    were made under (policies.watermark.score; default the current one)."""
    matchings: list[Matching] = []
    found: list[Cell] = []
    layouts: dict[str, Layout] = {}
    for t in targets:
        m = match(rows, t, (truth or {}).get(t.dataset))
        matchings.append(m)
        found.extend(cells(rows, t, m))
        layouts[t.dataset] = t.layout()
    return matchings, score(found, list(recipients), list(keys), layouts=layouts, schemes=schemes)
