"""Finding open datasets by words (docs/portal.md §Search)."""

from __future__ import annotations

from typing import Any


def haystack(ds: Any) -> str:
    """Everything a person may search a dataset by: names, description, 信息项, keywords, codes."""
    entry = ds.entry
    parts = [
        ds.spec.code,
        ds.spec.resource_code,
        entry["name"],
        entry.get("nameEn") or "",
        entry.get("description") or "",
        ds.department.name,
        entry["category"],
        entry["updateCycle"],
        entry["openAttribute"],
        *ds.keywords(),
        *(f["title"] for f in entry["fields"]),
        *(f["name"] for f in entry["fields"]),
    ]
    return "\n".join(parts).lower()


def matches(ds: Any, q: str) -> bool:
    """Every whitespace-separated term of `q` occurs in the dataset's text."""
    text = haystack(ds)
    return all(term in text for term in q.lower().split())
