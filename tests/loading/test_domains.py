"""A 信息项's enumeration (`values`) and maximum length (`max_length`), declared in the catalogue
file, checked on every loaded row: a value outside them is a reject with its row number and what
is allowed (quoting the value only where a rejects file may carry it); an enumerated value is
stored without surrounding spaces. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from catalogue.document import dump, parse, to_specs
from catalogue.spec import FieldSpec, FieldType
from gateway.loading.service import LoadRequest
from gateway.loading.writer import LoadRejected, Mode
from policies.model import PI, Level
from tests.loading.support import CHARGERS, Store, write_csv
from tests.loading.test_load import load, query

SITES = replace(
    CHARGERS,
    code="charging_site",
    resource_code="CITY-0009",
    entity=None,
    entity_field=None,
    fields=(
        FieldSpec("site_id", FieldType.STRING, "站点编号", nullable=False, max_length=8),
        FieldSpec("kind", FieldType.STRING, "类型", allowed_values=("快充", "慢充")),
        FieldSpec(
            "owner", FieldType.STRING, "业主", level=Level.L3, pi=PI.PERSONAL, allowed_values=("甲", "乙")
        ),
        FieldSpec("note", FieldType.STRING, "备注"),
    ),
)


@pytest.fixture(scope="module")
def sites(store: Store) -> str:
    from catalogue import service
    from gateway.db import create_engine

    async def go() -> None:
        engine = create_engine(store.url)
        try:
            await service.save_dataset(engine, SITES)
        finally:
            await engine.dispose()

    asyncio.run(go())
    return SITES.code


def test_values_outside_the_enumeration_or_too_long_are_rejected(
    store: Store, sites: str, tmp_path: Path
) -> None:
    rows = [
        ["A1", " 快充 ", "甲", "x" * 50],  # row 2: fine (spaces around an enumerated value go)
        ["A2-TOO-LONG", "慢充", "乙", ""],  # row 3: site_id longer than 8
        ["A3", "超充", "甲", ""],  # row 4: not an allowed kind
        ["A4", "慢充", "丙", ""],  # row 5: owner (L3 personal) not allowed: never quoted
        ["A5", "", "", ""],  # row 6: empty is not a value: fine
    ]
    path = write_csv(tmp_path / "sites.csv", ["site_id", "kind", "owner", "note"], rows)
    with pytest.raises(LoadRejected) as refused:
        load(store, LoadRequest(sites, path, mode=Mode.replace))
    rejects = {(r.row, r.column): r.reason for r in refused.value.result.sample}
    assert set(rejects) == {(3, "site_id"), (4, "kind"), (5, "owner")}
    assert rejects[(3, "site_id")].startswith("longer than the 8 characters allowed (11)")
    assert rejects[(4, "kind")] == "not one of the values allowed (快充, 慢充): '超充'"
    assert rejects[(5, "owner")] == "not one of the values allowed (乙, 甲)"  # an L3 personal value stays out
    assert query(store, "SELECT count(*) FROM pool_charging_site") == [(0,)]

    result = load(store, LoadRequest(sites, path, mode=Mode.replace, max_rejects=3))
    assert (result.loaded, result.rejected) == (2, 3)
    assert query(store, "SELECT site_id, kind FROM pool_charging_site ORDER BY site_id") == [
        ("A1", "快充"),
        ("A5", None),
    ]


def test_the_catalogue_file_declares_them_for_string_fields_only() -> None:
    good = (
        "departments:\n  - code: city\n    name: 市\ndatasets:\n  - code: sites\n"
        "    resource_code: 610100-CITY-000001\n    name: 站点\n    department: city\n"
        "    category: theme\n    share: unconditional\n    open: unconditional\n    fields:\n"
        "      - name: 类型\n        column: kind\n        type: string\n        values: [快充, 慢充]\n"
        "        max_length: 4\n"
    )
    spec = to_specs(parse(good))[1][0]
    assert spec.field("kind").allowed_values == ("快充", "慢充") and spec.field("kind").max_length == 4
    assert "values:\n" in dump(parse(good)) and "max_length: 4" in dump(parse(good))
    bad = good.replace("type: string", "type: integer").replace("[快充, 慢充]", "[快充, 快充]")
    with pytest.raises(Exception) as invalid:
        parse(bad, "sites.yaml")
    said = str(invalid.value)
    assert "sites.yaml:16:" in said and "values is for fields of type string" in said
    assert "max_length is for fields of type string" in said and "values lists a value twice" in said
