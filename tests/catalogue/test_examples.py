"""The shipped example catalogue applies cleanly (and again as a no-op), is the one in the
README, and the demo catalogue file applied to an empty store exports as written."""

from __future__ import annotations

import re
from typing import Any

from catalogue.apply import apply_document, export_document
from catalogue.document import dump, parse
from tests.catalogue.conftest import DEMO_FILE, EXAMPLE, ROOT, on_store


def test_the_example_applies_cleanly(store: Any) -> None:
    doc = parse(EXAMPLE.read_text(encoding="utf-8"), str(EXAMPLE))
    first = on_store(store, lambda e: apply_document(e, doc))
    assert first.applied and not first.plan.destructive
    again = on_store(store, lambda e: apply_document(e, doc))
    assert again.plan.changes == []
    assert on_store(store, lambda e: export_document(e, ["xa_cgj"])) == doc


def test_the_readme_shows_the_example_file() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", readme, flags=re.S)
    assert EXAMPLE.read_text(encoding="utf-8") in blocks


def test_demo_catalogue_round_trips_through_a_store(store: Any) -> None:
    text = DEMO_FILE.read_text(encoding="utf-8")
    doc = parse(text)
    on_store(store, lambda e: apply_document(e, doc))
    exported = on_store(store, lambda e: export_document(e, [d.code for d in doc.departments]))
    assert dump(exported, header="") == text[text.index("format_version:") :]
    assert on_store(store, lambda e: apply_document(e, exported)).plan.changes == []
