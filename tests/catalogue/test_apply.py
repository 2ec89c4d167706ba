"""`apply_document`: the diff, pool-table changes, destructive changes (refused without leave,
saying what they lose), all-or-nothing (a failure injected mid-apply leaves catalogue and pool as
they were), scope, and export of what was applied. SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import inspect, text

import catalogue.apply as apply_mod
from catalogue.apply import DestructiveRefused, ScopeRefused, apply_document, export_document
from catalogue.document import dump, parse
from catalogue.pool import pool_table
from catalogue.service import CatalogueError, catalogue_version, load_catalogue
from tests.catalogue.conftest import catalogue_file, dataset_yaml, field_yaml, on_store


def apply(store: Any, text_: str, **kw: Any) -> Any:
    return on_store(store, lambda e: apply_document(e, parse(text_), **kw))


def version(store: Any) -> int:
    async def go(e: Any) -> int:
        async with e.connect() as conn:
            return await catalogue_version(conn)

    return on_store(store, go)


def columns(store: Any, table: str) -> dict[str, str] | None:
    async def go(e: Any) -> dict[str, str] | None:
        async with e.connect() as conn:

            def cols(c: Any) -> dict[str, str] | None:
                insp = inspect(c)
                if not insp.has_table(table):
                    return None
                return {col["name"]: str(col["type"]) for col in insp.get_columns(table)}

            return await conn.run_sync(cols)

    return on_store(store, go)


def sql(store: Any, statement: str) -> list[Any]:
    async def go(e: Any) -> list[Any]:
        async with e.begin() as conn:
            result = await conn.execute(text(statement))
            return list(result.all()) if result.returns_rows else []

    return on_store(store, go)


def live(store: Any) -> Any:
    return on_store(store, load_catalogue)


def two_datasets(dept: str) -> str:
    return catalogue_file(
        dept,
        dataset_yaml(
            dept, f"{dept}_a", 1, field_yaml("code", indexed="true") + field_yaml("amount", "integer")
        )
        + dataset_yaml(dept, f"{dept}_b", 2, field_yaml("name")),
    )


def test_new_datasets_create_pool_tables_and_bump_the_version_once(store: Any) -> None:
    before = version(store)
    dry = apply(store, two_datasets("ta"), dry_run=True)
    assert not dry.applied and version(store) == before and columns(store, "pool_ta_a") is None
    actions = [(c.action, c.kind, c.target) for c in dry.plan.changes]
    assert actions == [("add", "department", "ta"), ("add", "dataset", "ta_a"), ("add", "dataset", "ta_b")]
    assert dry.plan.changes[1].pool == ["CREATE TABLE pool_ta_a (3 columns, 1 indexes)"]

    result = apply(store, two_datasets("ta"))
    assert result.applied and result.version == before + 1 == version(store)
    assert set(columns(store, "pool_ta_a") or {}) == {"_id", "code", "amount"}
    assert live(store).datasets["ta_b"].department == "ta"

    again = apply(store, two_datasets("ta"))
    assert again.plan.changes == [] and not again.applied and version(store) == before + 1


def test_new_fields_add_columns_and_keep_rows(store: Any) -> None:
    apply(store, two_datasets("tb"))
    sql(store, "INSERT INTO pool_tb_a (code, amount) VALUES ('x', 1), ('y', 2)")
    grown = two_datasets("tb").replace(
        field_yaml("amount", "integer"), field_yaml("amount", "integer") + field_yaml("note", indexed="true")
    )
    result = apply(store, grown)
    changes = {(c.action, c.target): c for c in result.plan.changes}
    assert changes[("change", "tb_a")].pool == [
        "ALTER TABLE pool_tb_a ADD COLUMN note",
        "CREATE INDEX ix_pool_tb_a_note",
    ]
    assert ("add", "tb_a.note") in changes and not result.plan.destructive
    assert "note" in (columns(store, "pool_tb_a") or {})
    assert sql(store, "SELECT code, amount, note FROM pool_tb_a ORDER BY code") == [
        ("x", 1, None),
        ("y", 2, None),
    ]


def test_metadata_changes_touch_no_table(store: Any) -> None:
    apply(store, two_datasets("tc"))
    changed = two_datasets("tc").replace(
        "    name: tc_b 数据\n", "    name: tc_b 新名\n    licence: CC0-1.0\n    tags: [a, b]\n"
    )
    changed = changed.replace(field_yaml("name"), field_yaml("name", level="L3", pi="personal", mask="name"))
    result = apply(store, changed)
    assert [(c.action, c.target) for c in result.plan.changes] == [
        ("change", "tc_b"),
        ("change", "tc_b.name"),
    ]
    assert result.plan.changes[0].changes == {
        "name": ["tc_b 数据", "tc_b 新名"],
        "licence": ["", "CC0-1.0"],
        "tags": [[], ["a", "b"]],
    }
    assert result.plan.changes[0].pool == []
    spec = live(store).datasets["tc_b"]
    assert spec.licence == "CC0-1.0" and spec.tags == ("a", "b") and spec.field("name").level == 3


def test_destructive_changes_need_leave_and_say_what_they_lose(store: Any) -> None:
    apply(store, two_datasets("td"))
    sql(store, "INSERT INTO pool_td_a (code, amount) VALUES ('x', 1), ('y', 2), ('z', NULL)")
    sql(store, "INSERT INTO pool_td_b (name) VALUES ('n1'), ('n2'), ('n3'), ('n4')")
    before = version(store)
    # amount becomes a string, code is removed, dataset td_b is removed
    shrunk = catalogue_file("td", dataset_yaml("td", "td_a", 1, field_yaml("amount", "string")))
    with pytest.raises(DestructiveRefused) as refused:
        apply(store, shrunk)
    said = str(refused.value)
    assert "--allow-destructive" in said
    assert "td_a.amount: 2 values in column amount (dropped and added again as string)" in said
    assert "td_a.code: 3 values in column code" in said
    assert "td_b: 4 rows in pool_td_b" in said
    assert version(store) == before and columns(store, "pool_td_b") is not None

    result = apply(store, shrunk, allow_destructive=True)
    assert {c.target for c in result.plan.destructive} == {"td_a.amount", "td_a.code", "td_b"}
    assert columns(store, "pool_td_b") is None and "td_b" not in live(store).datasets
    cols = columns(store, "pool_td_a") or {}
    assert set(cols) == {"_id", "amount"} and cols["amount"].upper() == "TEXT"
    assert sql(store, "SELECT count(*), count(amount) FROM pool_td_a") == [(3, 0)]
    assert [f.name for f in live(store).datasets["td_a"].fields] == ["amount"]


def test_removed_field_counts_its_values(store: Any) -> None:
    apply(store, two_datasets("te"))
    sql(store, "INSERT INTO pool_te_a (code, amount) VALUES ('x', 1), ('y', NULL), (NULL, NULL)")
    without = two_datasets("te").replace(field_yaml("amount", "integer"), "")
    plan = apply(store, without, dry_run=True).plan
    assert [(c.target, c.loses) for c in plan.destructive] == [("te_a.amount", "1 values in column amount")]


def test_a_failure_mid_apply_leaves_catalogue_and_pool_as_they_were(store: Any, monkeypatch: Any) -> None:
    apply(store, two_datasets("tf"))
    sql(store, "INSERT INTO pool_tf_a (code, amount) VALUES ('x', 7)")
    before_version, before = version(store), live(store)
    bigger = two_datasets("tf").replace(
        "departments:\n  - code: tf\n    name: 测试部门\n", "departments:\n  - code: tf\n    name: 改名\n"
    )
    bigger = bigger.replace(
        field_yaml("amount", "integer"), field_yaml("amount", "string") + field_yaml("extra")
    )
    bigger += dataset_yaml("tf", "tf_c", 3, field_yaml("c"))
    bigger = bigger.replace(dataset_yaml("tf", "tf_b", 2, field_yaml("name")), "")  # tf_b removed
    calls: list[str] = []
    real = apply_mod.alter_pool

    def failing(conn: Any, old: Any, new: Any) -> None:
        real(conn, old, new)  # the DDL runs, then the apply fails after it
        calls.append((new or old).code)
        if len(calls) == 3:
            raise RuntimeError("injected failure")

    monkeypatch.setattr(apply_mod, "alter_pool", failing)
    with pytest.raises(RuntimeError, match="injected"):
        apply(store, bigger, allow_destructive=True)
    assert calls == ["tf_b", "tf_a", "tf_c"]  # dropped, altered, created — all rolled back
    after = live(store)
    assert version(store) == before_version
    assert after.departments["tf"] == before.departments["tf"]
    assert {k: v for k, v in after.datasets.items() if k.startswith("tf")} == {
        k: v for k, v in before.datasets.items() if k.startswith("tf")
    }
    assert set(columns(store, "pool_tf_a") or {}) == {"_id", "code", "amount"}
    assert sql(store, "SELECT code, amount FROM pool_tf_a") == [("x", 7)]
    assert columns(store, "pool_tf_b") is not None and columns(store, "pool_tf_c") is None

    monkeypatch.setattr(apply_mod, "alter_pool", real)
    assert apply(store, bigger, allow_destructive=True).applied  # and it applies once fixed


def test_other_departments_are_not_touched(store: Any) -> None:
    apply(store, two_datasets("tg"))
    apply(store, two_datasets("th"))
    result = apply(
        store, catalogue_file("th", dataset_yaml("th", "th_a", 1, field_yaml("code"))), dry_run=True
    )
    assert {c.target for c in result.plan.changes} >= {"th_b", "th_a.amount"}
    assert not any(c.target.startswith("tg") for c in result.plan.changes)


def test_scope_limits_a_steward(store: Any) -> None:
    apply(store, two_datasets("ti"))
    with pytest.raises(ScopeRefused, match="department ti"):
        apply(store, two_datasets("ti"), allowed_departments=frozenset({"tj"}))
    # a file of their own department that takes another's dataset
    stolen = catalogue_file("tj", dataset_yaml("tj", "ti_a", 1, field_yaml("code")))
    with pytest.raises(ScopeRefused, match="dataset ti_a"):
        apply(store, stolen, allowed_departments=frozenset({"tj"}))
    assert apply(store, two_datasets("ti"), allowed_departments=frozenset({"ti"})).plan.changes == []


def test_a_resource_code_of_another_dataset_is_refused(store: Any) -> None:
    """A dataset saved before files (save_dataset) may hold a code the rules now give another."""
    from dataclasses import replace

    from catalogue.service import save_dataset

    apply(store, two_datasets("tk"))
    spec = replace(live(store).datasets["tk_a"], code="tk_old", resource_code="610100-TL-000001")
    on_store(store, lambda e: save_dataset(e, spec))
    other = catalogue_file("tl", dataset_yaml("tl", "tl_a", 1, field_yaml("code")))
    with pytest.raises(CatalogueError, match="610100-TL-000001 belongs to dataset tk_old"):
        apply(store, other)


def indexes(store: Any, table: str) -> dict[str, list[str]]:
    async def go(e: Any) -> dict[str, list[str]]:
        async with e.connect() as conn:
            return await conn.run_sync(
                lambda c: {ix["name"]: ix["column_names"] for ix in inspect(c).get_indexes(table)}
            )

    return on_store(store, go)


def test_declared_composite_indexes_are_built_and_dropped_with_the_catalogue(store: Any) -> None:
    fields = field_yaml("city", indexed="true") + field_yaml("day", "date") + field_yaml("aqi", "integer")
    with_ix = catalogue_file("tx", dataset_yaml("tx", "tx_a", 1, fields, indexes="[[city, day], [aqi, day]]"))
    result = apply(store, with_ix)
    assert result.plan.changes[1].pool == ["CREATE TABLE pool_tx_a (4 columns, 3 indexes)"]
    assert indexes(store, "pool_tx_a") == {
        "ix_pool_tx_a_city": ["city"],
        "ix_pool_tx_a__city__day": ["city", "day"],
        "ix_pool_tx_a__aqi__day": ["aqi", "day"],
    }
    assert live(store).datasets["tx_a"].indexes == (("city", "day"), ("aqi", "day"))
    exported = on_store(store, lambda e: export_document(e, ["tx"]))
    assert "      - [city, day]\n      - [aqi, day]\n" in dump(exported)
    assert apply(store, dump(exported)).plan.changes == []

    fewer = apply(store, with_ix.replace("[[city, day], [aqi, day]]", "[[city, day]]"))
    assert [c.pool for c in fewer.plan.changes] == [["DROP INDEX ix_pool_tx_a__aqi__day"]]
    assert not fewer.plan.destructive  # an index holds no data
    assert set(indexes(store, "pool_tx_a")) == {"ix_pool_tx_a_city", "ix_pool_tx_a__city__day"}


def test_a_long_composite_index_name_fits_postgresql() -> None:
    from catalogue.pool import composite_index_name

    name = composite_index_name("pool_" + "a" * 40, ("district_code", "establishment_date"))
    assert len(name) == 63 and name.startswith("ix_pool_aaaa")
    assert name != composite_index_name("pool_" + "a" * 40, ("district_code", "establishment_day"))


def test_export_is_what_was_applied(store: Any) -> None:
    text_ = two_datasets("tm")
    apply(store, text_)
    exported = on_store(store, lambda e: export_document(e, ["tm"]))
    assert exported == parse(text_)
    assert apply(store, dump(exported)).plan.changes == []


def test_pool_table_matches_the_catalogue_definition(store: Any) -> None:
    apply(store, two_datasets("tn"))
    spec = live(store).datasets["tn_a"]
    assert set(columns(store, "pool_tn_a") or {}) == {c.name for c in pool_table(spec).columns}


def test_a_dataset_with_grants_is_not_removed(store: Any) -> None:
    from gateway.grants.service import create_grant
    from policies.model import Tier

    apply(store, two_datasets("to"))
    apply(store, two_datasets("tp"))  # the consumer: a department
    on_store(
        store,
        lambda e: create_grant(
            e, tier=Tier.SHARE, dataset="to_b", consumer="tp", fields=["name"], purpose="测试"
        ),
    )
    without_b = catalogue_file(
        "to",
        dataset_yaml("to", "to_a", 1, field_yaml("code", indexed="true") + field_yaml("amount", "integer")),
    )
    with pytest.raises(CatalogueError, match="to_b is not in the file but has 1 grant"):
        apply(store, without_b, allow_destructive=True, dry_run=True)
    assert "to_b" in live(store).datasets


def test_a_field_no_longer_protected_needs_leave(store: Any) -> None:
    sensitive = catalogue_file("tq", dataset_yaml("tq", "tq_a", 1, field_yaml("idn", level="L4")))
    apply(store, sensitive)
    sql(store, "INSERT INTO pool_tq_a (idn, idn__bidx) VALUES ('sm4gcm:xxxx', 'ab')")
    plain = catalogue_file("tq", dataset_yaml("tq", "tq_a", 1, field_yaml("idn")))
    with pytest.raises(DestructiveRefused, match="1 values in column idn stay ciphertext"):
        apply(store, plain)


def test_a_removed_dataset_takes_its_freshness_and_source_with_it(store: Any) -> None:
    """No orphan `dataset_status` row: a dataset added again under the same code starts unloaded,
    and `data sync --all` does not try the source of a dataset that is gone."""
    apply(store, two_datasets("tg"))
    sql(
        store,
        "INSERT INTO dataset_status (dataset_code, row_count, source_url, source_table) "
        "VALUES ('tg_b', 4, 'postgresql://u@h/db', 'src'), ('tg_a', 2, NULL, NULL)",
    )
    only_a = catalogue_file(
        "tg",
        dataset_yaml("tg", "tg_a", 1, field_yaml("code", indexed="true") + field_yaml("amount", "integer")),
    )
    apply(store, only_a, allow_destructive=True)
    assert sql(
        store, "SELECT dataset_code, row_count FROM dataset_status WHERE dataset_code LIKE 'tg_%'"
    ) == [("tg_a", 2)]
    apply(store, two_datasets("tg"))  # back under the same code: never loaded, no source
    assert sql(store, "SELECT count(*) FROM dataset_status WHERE dataset_code = 'tg_b'") == [(0,)]
