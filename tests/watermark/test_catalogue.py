"""The `watermark: {tolerance}` attribute of a 信息项: parsed, exported, stored, and refused
where a mark must never go (identifiers, keys, L4, decision-relevant values, non-numbers)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from catalogue.document import DocumentInvalid, dump, from_specs, parse, to_specs
from catalogue.protection import check_watermarkable
from catalogue.spec import FieldType
from policies.model import Level
from tests.catalogue.conftest import DEMO_FILE

BASE = """\
departments:
  - code: samr
    name: 市场监管局
datasets:
  - code: reg
    resource_code: 610000-SAMR-000009
    name: 登记
    department: samr
    category: base
    share: unconditional
    open: unconditional
    entity: legal_entity
    entity_key: credit_code
    fields:
      - name: 统一社会信用代码
        column: credit_code
        type: string
      - name: 注册资本
        column: capital
        type: decimal
"""


def with_field(extra: str, on: str = "capital") -> str:
    return BASE.replace(f"        column: {on}\n", f"        column: {on}\n{extra}")


def messages(text: str) -> list[str]:
    with pytest.raises(DocumentInvalid) as caught:
        parse(text, "t.yaml")
    return [e.render("t.yaml") for e in caught.value.errors]


def test_tolerance_parsed_exactly_and_round_trips() -> None:
    doc = parse(with_field("        watermark: {tolerance: 0.01}\n"))
    spec = to_specs(doc)[1][0]
    assert spec.field("capital").watermark_tolerance == Decimal("0.01")
    again = parse(dump(from_specs(*to_specs(doc))))
    assert to_specs(again)[1][0].field("capital").watermark_tolerance == Decimal("0.01")


def test_demo_catalogue_marks_three_numeric_fields() -> None:
    specs = to_specs(parse(DEMO_FILE.read_text("utf-8")))[1]
    marked = {(s.code, f.name) for s in specs for f in s.fields if f.watermark_tolerance is not None}
    assert marked == {
        ("enterprise_registration", "registered_capital"),
        ("tax_credit_rating", "tax_paid_amount"),
        ("social_insurance", "contribution_base"),
    }


@pytest.mark.parametrize(
    ("extra", "on", "says"),
    [
        ("        watermark: {tolerance: 1}\n", "credit_code", "only integer, float and decimal"),
        (
            "        watermark: {tolerance: 0.01}\n        decision_relevant: true\n",
            "capital",
            "decision-relevant",
        ),
        ("        watermark: {tolerance: 0.01}\n        indexed: true\n", "capital", "identifiers, keys"),
        ("        watermark: {tolerance: 0}\n", "capital", "greater than 0"),
    ],
)
def test_refused_where_a_mark_must_never_go(extra: str, on: str, says: str) -> None:
    found = messages(with_field(extra, on))
    assert any(says in m for m in found), found
    assert all(":" in m.split(": ")[0] for m in found)  # every error has its line and column


def test_key_l4_and_no_entity_key_refused() -> None:
    doc = parse(with_field("        watermark: {tolerance: 1}\n"))
    spec = to_specs(doc)[1][0]
    f = spec.field("capital")
    l4 = replace(spec, fields=(spec.fields[0], replace(f, level=Level.L4)))
    assert any("L4" in m for _, m in check_watermarkable(l4))
    keyless = replace(spec, entity=None, entity_field=None)
    assert any("entity key" in m for _, m in check_watermarkable(keyless))
    as_key = replace(spec, entity_field="capital")
    assert any("identifiers, keys" in m for _, m in check_watermarkable(as_key))
    half = replace(f, type=FieldType.INTEGER, watermark_tolerance=Decimal("0.5"))
    whole = replace(spec, fields=(spec.fields[0], half))
    assert any("whole number" in m for _, m in check_watermarkable(whole))
