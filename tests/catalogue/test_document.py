"""The catalogue file format: every error with its line, column and what is allowed; the
published JSON Schema is the models' own; documents round-trip through specs and text."""

from __future__ import annotations

import json
from typing import Any

import pytest

from catalogue.document import (
    SCHEMA_PATH,
    CatalogueDoc,
    DocError,
    DocumentInvalid,
    dump,
    from_specs,
    json_schema_text,
    parse,
    to_specs,
)
from gateway.demo.catalogue import demo_catalogue
from tests.catalogue.conftest import DEMO_FILE

GOOD = """\
departments:
  - code: xa_cgj
    name: 西安市城市管理局
datasets:
  - code: public_toilet
    resource_code: 610100-XA_CGJ-000001
    name: 公共厕所
    department: xa_cgj
    category: theme
    share: unconditional
    open: unconditional
    fields:
      - name: 厕所编号
        column: toilet_code
        type: string
      - name: 管理员电话
        column: keeper_phone
        type: string
        level: L3
"""


def errors_of(text: str) -> list[DocError]:
    with pytest.raises(DocumentInvalid) as caught:
        parse(text, "t.yaml")
    return caught.value.errors


def only(text: str) -> DocError:
    errors = errors_of(text)
    assert len(errors) == 1, errors
    return errors[0]


def test_a_good_file_parses() -> None:
    doc = parse(GOOD)
    departments, datasets = to_specs(doc)
    assert departments[0].code == "xa_cgj"
    assert [f.name for f in datasets[0].fields] == ["toilet_code", "keeper_phone"]
    assert datasets[0].fields[1].level == 3


def test_enumeration_error_names_line_column_and_the_values_allowed() -> None:
    e = only(GOOD.replace("level: L3", "level: L5"))
    assert (e.line, e.column, e.path) == (19, 16, "datasets[0].fields[1].level")
    assert e.message == "level must be one of L1, L2, L3, L4 (got 'L5')"
    assert e.render("t.yaml").startswith("t.yaml:19:16: datasets[0].fields[1].level: level must be one of")


@pytest.mark.parametrize(
    ("old", "new", "line", "expected"),
    [
        (
            "category: theme",
            "category: 主题库",
            9,
            "category must be one of base (基础库), theme (主题库), special (专题库)",
        ),
        (
            "share: unconditional",
            "share: yes",
            10,
            "share must be one of unconditional (无条件共享), conditional",
        ),
        ("open: unconditional", "open: maybe", 11, "open must be one of unconditional (无条件开放)"),
        (
            "type: string\n      - name: 管理",
            "type: text\n      - name: 管理",
            15,
            "type must be one of string, integer",
        ),
    ],
)
def test_every_enumeration_lists_its_values(old: str, new: str, line: int, expected: str) -> None:
    e = only(GOOD.replace(old, new, 1))
    assert e.line == line and e.message.startswith(expected), e


def test_unknown_key_points_at_the_key_and_lists_the_allowed_ones() -> None:
    e = only(GOOD.replace("    open: unconditional\n", "    open: unconditional\n    licens: CC-BY-4.0\n"))
    assert (e.line, e.column) == (12, 5)
    assert "unknown key 'licens'" in e.message and "licence" in e.message


def test_missing_key_points_at_its_mapping() -> None:
    e = only(GOOD.replace("    category: theme\n", ""))
    assert e.path == "datasets[0].category" and e.message == "category is required"
    assert e.line == 5  # the dataset's mapping


def test_pattern_errors_say_the_rule() -> None:
    e = only(GOOD.replace("column: toilet_code", "column: ToiletCode"))
    assert e.line == 14 and "lower snake_case" in e.message
    errors = errors_of(GOOD.replace("610100-XA_CGJ-000001", "XA-1"))
    assert errors[0].line == 6 and "6-digit division code" in errors[0].message


def test_cross_node_rules() -> None:
    # the department is undeclared, and the resource code's middle part no longer matches it
    resource, department = errors_of(GOOD.replace("    department: xa_cgj", "    department: xa_sw"))
    assert (department.line, department.path) == (8, "datasets[0].department")
    assert "not declared in departments (declared: xa_cgj)" in department.message
    assert resource.line == 6 and "upper case: XA_SW (got XA_CGJ)" in resource.message


def test_cross_node_rules_reported_with_the_per_key_errors() -> None:
    text = GOOD.replace("610100-XA_CGJ-000001", "610100-XA_SW-000001").replace("level: L3", "level: L9")
    text = text.replace("column: keeper_phone", "column: toilet_code")
    errors = errors_of(text)
    assert [(e.line, e.path) for e in errors] == [
        (6, "datasets[0].resource_code"),
        (17, "datasets[0].fields[1].column"),
        (19, "datasets[0].fields[1].level"),
    ]
    assert "upper case: XA_CGJ (got XA_SW)" in errors[0].message
    assert "declared twice" in errors[1].message


def test_protected_fields_must_be_strings() -> None:
    e = only(GOOD.replace("type: string\n        level: L3", "type: integer\n        level: L4"))
    assert e.line == 18 and "must be of type string" in e.message


def test_entity_key_must_be_a_column() -> None:
    text = GOOD.replace(
        "    fields:\n", "    entity: legal_entity\n    entity_key: credit_code\n    fields:\n"
    )
    e = only(text)
    assert e.path == "datasets[0].entity_key" and "not a column" in e.message and "toilet_code" in e.message


def test_indexes_name_plain_columns_of_the_dataset() -> None:
    def with_indexes(*lines: str) -> str:
        return GOOD.replace(
            "    fields:\n", "    indexes:\n" + "".join(f"      - {x}\n" for x in lines) + "    fields:\n"
        )

    assert to_specs(parse(with_indexes("[toilet_code, keeper_phone]")))[1][0].indexes == (
        ("toilet_code", "keeper_phone"),
    )
    unknown = only(with_indexes("[toilet_code, opened]"))
    assert (unknown.line, unknown.path) == (13, "datasets[0].indexes[0][1]")
    assert "opened is not a column" in unknown.message and "toilet_code" in unknown.message
    sealed = only(with_indexes("[keeper_phone, toilet_code]").replace("level: L3", "level: L4"))
    assert sealed.path == "datasets[0].indexes[0][0]" and "stored encrypted" in sealed.message
    twice = errors_of(
        with_indexes(
            "[toilet_code, toilet_code]", "[keeper_phone, toilet_code]", "[keeper_phone, toilet_code]"
        )
    )
    assert [(e.path, "twice" in e.message or "same index" in e.message) for e in twice] == [
        ("datasets[0].indexes[0]", True),
        ("datasets[0].indexes[2]", True),
    ]
    one = only(with_indexes("[toilet_code]"))
    assert one.path == "datasets[0].indexes[0]"


def test_duplicates() -> None:
    code, resource = errors_of(GOOD + GOOD.split("datasets:\n", 1)[1])
    assert (code.line, code.path) == (20, "datasets[1].code") and "declared twice" in code.message
    assert (resource.line, resource.path) == (
        21,
        "datasets[1].resource_code",
    ) and "used twice" in resource.message
    e = only(GOOD.replace("    name: 西安市城市管理局\n", "    name: 西安市城市管理局\n    name: again\n"))
    assert e.line == 4 and "duplicate key" in e.message


def test_yaml_syntax_error_has_its_line() -> None:
    e = only(GOOD.replace("    share: unconditional", "    share: [unconditional"))
    assert e.line >= 10 and "not valid YAML" in e.message


def test_wrong_scalar_types() -> None:
    e = only(GOOD.replace("level: L3", "level: L3\n        nullable: sometimes"))
    assert e.line == 20 and "nullable" in e.message
    e = only(GOOD.replace("name: 公共厕所", "name: 2024-01-01"))
    assert e.line == 7 and "quote it" in e.message


def test_not_a_mapping() -> None:
    assert only("- a\n- b\n").message.startswith("the file must be a mapping")


def test_every_error_is_reported_not_just_the_first() -> None:
    text = (
        GOOD.replace("level: L3", "level: L5")
        .replace("category: theme", "category: big")
        .replace("type: string\n      - name", "type: str\n      - name")
    )
    assert [e.line for e in errors_of(text)] == [9, 15, 19]


def test_json_documents_are_accepted_with_positions() -> None:
    doc = parse(GOOD)
    text = dump(doc, as_json=True)
    assert parse(text) == doc
    bad = text.replace('"level": "L3"', '"level": "L0"')
    e = only(bad)
    assert (
        e.message.startswith("level must be one of")
        and e.line == bad.split("\n").index(next(line for line in bad.split("\n") if '"L0"' in line)) + 1
    )


def test_the_published_schema_is_the_models() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == json_schema_text(), (
        "regenerate: python -m catalogue.document"
    )
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    field = schema["$defs"]["FieldDoc"]["properties"]
    assert field["level"]["enum"] == ["L1", "L2", "L3", "L4"]
    assert schema["additionalProperties"] is False


def test_the_demo_file_is_the_demo_catalogue_and_dumps_as_written() -> None:
    text = DEMO_FILE.read_text(encoding="utf-8")
    doc = parse(text)
    assert to_specs(doc) == demo_catalogue()
    assert from_specs(*demo_catalogue()) == doc
    body = text[text.index("format_version:") :]
    assert dump(doc, header="") == body


FULL = """\
format_version: 1
departments:
  - code: xa_fgw
    name: 西安市发展和改革委员会
    name_en: Xi'an Development and Reform Commission
  - code: xa_empty
    name: 一个还没有数据集的部门
datasets:
  - code: ev_charger
    resource_code: 610100-XA_FGW-000007
    name: 充电桩
    name_en: EV chargers
    department: xa_fgw
    category: special
    theme: 能源
    update_cycle: realtime
    format: api
    share: conditional
    share_conditions: 凭申请
    open: none
    open_conditions: 不开放
    licence: CC-BY-4.0
    contact: 能源处 029-0000
    tags:
      - 能源
      - 交通
    entity: legal_entity
    entity_key: operator_credit_code
    published: false
    description: 充电设施
    indexes:
      - [operator_credit_code, since]
      - [fast, piles, since]
    fields:
      - name: 运营商统一社会信用代码
        column: operator_credit_code
        type: string
        nullable: false
        indexed: true
      - name: 负责人身份证号
        column: manager_id_number
        type: string
        level: L4
        pi: sensitive
        mask: id_number
        share: conditional
        open: none
        references: person
        link_name: manager
        description: 负责人
      - name: 法定代表人
        column: legal_rep
        type: string
        pi: personal
        open_personal: true
      - name: 功率
        column: power_kw
        type: decimal
        level: L2
        mask: amount_range
      - name: 投运日期
        column: since
        type: date
      - name: 最近心跳
        column: heartbeat_at
        type: datetime
      - name: 桩数
        column: piles
        type: integer
      - name: 快充
        column: fast
        type: boolean
      - name: 利用率
        column: usage
        type: float
"""


def test_a_file_using_every_key_round_trips() -> None:
    doc = parse(FULL)
    departments, datasets = to_specs(doc)
    assert datasets[0].tags == ("能源", "交通") and datasets[0].licence == "CC-BY-4.0"
    assert datasets[0].indexes == (("operator_credit_code", "since"), ("fast", "piles", "since"))
    assert from_specs(departments, datasets) == doc
    assert dump(doc, header="") == FULL


def test_generated_documents_round_trip() -> None:
    """Hypothesis: any valid document survives specs and text unchanged."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from catalogue.document import FieldDoc

    ident = st.from_regex(r"[a-z][a-z0-9]{0,6}(_[a-z0-9]{1,4})?", fullmatch=True)
    text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12)

    def field_doc(column: str, draw: Any) -> FieldDoc:
        protected = draw(st.booleans())
        return FieldDoc(
            name=draw(text.filter(lambda s: bool(s.strip()) and s == s.strip())),
            column=column,
            type="string" if protected else draw(st.sampled_from(["string", "integer", "date", "boolean"])),
            level="L4" if protected else draw(st.sampled_from(["L1", "L2", "L3"])),
            nullable=draw(st.booleans()),
            indexed=draw(st.booleans()),
            description=draw(text),
        )

    @st.composite
    def documents(draw: Any) -> CatalogueDoc:
        dept = draw(ident)
        columns = draw(st.lists(ident.filter(lambda c: "__" not in c), min_size=1, max_size=5, unique=True))
        data = {
            "departments": [{"code": dept, "name": draw(text.filter(lambda s: bool(s.strip())))}],
            "datasets": [
                {
                    "code": draw(ident),
                    "resource_code": f"610100-{dept.upper()}-000001",
                    "name": "数据",
                    "department": dept,
                    "category": draw(st.sampled_from(["base", "theme", "special"])),
                    "share": draw(st.sampled_from(["unconditional", "conditional", "none"])),
                    "open": draw(st.sampled_from(["unconditional", "conditional", "none"])),
                    "tags": draw(st.lists(text.filter(lambda s: bool(s.strip())), max_size=3)),
                    "fields": [field_doc(c, draw).model_dump() for c in columns],
                }
            ],
        }
        return CatalogueDoc.model_validate(data)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(documents())
    def check(doc: CatalogueDoc) -> None:
        assert from_specs(*to_specs(doc)) == doc
        assert parse(dump(doc)) == doc
        assert parse(dump(doc, as_json=True)) == doc

    check()


def test_the_reference_names_every_allowed_value() -> None:
    from catalogue.document import CatalogueDoc, DatasetDoc, FieldDoc, UpdateCycle
    from catalogue.spec import Entity, FieldType
    from policies.model import PI, Category, MaskRule, Open, Share

    doc = (DEMO_FILE.parents[2] / "docs" / "catalogue.md").read_text(encoding="utf-8")
    for enum in (FieldType, PI, MaskRule, Share, Open, Category, UpdateCycle, Entity):
        for member in enum:
            assert f"`{member.value}`" in doc, (
                f"{enum.__name__}.{member.value} missing from docs/catalogue.md"
            )
    for model in (CatalogueDoc, DatasetDoc, FieldDoc):
        for key in model.model_fields:
            assert f"`{key}`" in doc, f"{model.__name__}.{key} missing from docs/catalogue.md"


def test_tab_indented_json_parses() -> None:
    doc = parse(GOOD)
    tabbed = json.dumps(doc.model_dump(mode="json"), ensure_ascii=False, indent="\t")
    assert parse(tabbed) == doc
    bad = tabbed.replace('"L3"', '"L7"')
    assert only(bad).message.startswith("level must be one of L1, L2, L3, L4")
