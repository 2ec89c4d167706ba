"""`data load` end to end on SQLite and PostgreSQL: formats, encodings, modes, protection at
rest, freshness and the audit event."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from catalogue.freshness import load_statuses
from catalogue.protection import CIPHER_PREFIX
from gateway.db import create_engine
from gateway.loading.readers import Encoding, Format
from gateway.loading.service import LoadRequest, load_file
from gateway.loading.writer import LoadResult, Mode
from tests.loading.support import CHARGER_HEADER, Store, charger_rows, id_number, write_csv


def run(store: Store, job: Any) -> Any:
    async def go() -> Any:
        engine = create_engine(store.url)
        try:
            return await job(engine)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def load(store: Store, request: LoadRequest, **kw: Any) -> LoadResult:
    return run(store, lambda e: load_file(e, request, master_key=store.master_key, **kw))


def query(store: Store, sql: str) -> list[tuple[Any, ...]]:
    async def go(engine: Any) -> list[tuple[Any, ...]]:
        async with engine.connect() as conn:
            return [tuple(r) for r in (await conn.exec_driver_sql(sql)).all()]

    return run(store, go)


def count(store: Store, table: str = "pool_charging_station") -> int:
    return int(query(store, f"SELECT count(*) FROM {table}")[0][0])


def test_csv_with_bom_chinese_headers_and_types(store: Store, tmp_path: Path) -> None:
    # Excel's "CSV UTF-8": a BOM, and the 信息项名称 as headers.
    titles = [
        "桩编号",
        "名称",
        "运营商统一社会信用代码",
        "功率（千瓦）",
        "枪数",
        "投运日期",
        "更新时间",
        "对外开放",
        "纬度",
    ]
    path = write_csv(tmp_path / "c.csv", titles, charger_rows(30), encoding="utf-8-sig")
    result = load(store, LoadRequest("charging_station", path, mode=Mode.replace))
    assert (result.read, result.loaded, result.rejected, result.row_count) == (30, 30, 0, 30)
    row = query(
        store,
        "SELECT station_id, name, power_kw, ports, opened_on, public FROM pool_charging_station "
        "ORDER BY station_id LIMIT 2",
    )
    assert row[0][:2] == ("S0000000", "站0") and float(row[0][2]) == 60.5 and row[0][3] == 2
    assert str(row[0][4]).startswith("2023-05-01") and not row[0][5] and row[1][5]


def test_gb18030_auto_detected_and_declared(store: Store, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "gb.csv", CHARGER_HEADER, charger_rows(5, 100, name="充电站"), encoding="gb18030"
    )
    for encoding in (Encoding.auto, Encoding.gb18030):
        load(store, LoadRequest("charging_station", path, encoding=encoding, mode=Mode.replace))
        assert query(store, "SELECT name FROM pool_charging_station WHERE station_id = 'S0000100'") == [
            ("充电站100",)
        ]


def test_xlsx_and_json_lines(store: Store, tmp_path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet()
    sheet.append(CHARGER_HEADER)
    for r in charger_rows(7):
        r[3], r[4] = float(r[3]), int(r[4])  # typed cells, as a spreadsheet holds them
        sheet.append(r)
    book.save(tmp_path / "c.xlsx")
    assert load(store, LoadRequest("charging_station", tmp_path / "c.xlsx", mode=Mode.replace)).loaded == 7
    lines = [
        json.dumps(dict(zip(CHARGER_HEADER, r, strict=True)), ensure_ascii=False) for r in charger_rows(4, 50)
    ]
    (tmp_path / "c.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = load(store, LoadRequest("charging_station", tmp_path / "c.jsonl", Format.jsonl))
    assert result.loaded == 4 and result.row_count == 11


def test_upsert_on_a_protected_key_updates_through_the_blind_index(store: Store, tmp_path: Path) -> None:
    header = ["id_number", "name", "district"]
    first = write_csv(tmp_path / "r1.csv", header, [[id_number(i), f"张{i}", "雁塔区"] for i in range(10)])
    load(store, LoadRequest("resident_card", first, mode=Mode.replace))
    second = write_csv(
        tmp_path / "r2.csv", header, [[id_number(i), f"李{i}", "碑林区"] for i in range(5, 15)]
    )
    result = load(store, LoadRequest("resident_card", second, mode=Mode.upsert))
    assert (result.updated, result.inserted, result.row_count) == (5, 5, 15)
    assert query(store, "SELECT count(*) FROM pool_resident_card WHERE district = '碑林区'") == [(10,)]


def test_protected_values_are_never_stored_clear(store: Store, tmp_path: Path) -> None:
    ids = [id_number(1000 + i) for i in range(50)]
    path = write_csv(tmp_path / "r.csv", ["id_number", "name"], [[n, "王五"] for n in ids])
    load(store, LoadRequest("resident_card", path, mode=Mode.replace))
    stored = query(store, "SELECT id_number, id_number__bidx FROM pool_resident_card")
    assert all(v.startswith(CIPHER_PREFIX) and b and len(b) == 64 for v, b in stored)
    if store.backend == "sqlite":  # nor anywhere on disk: the database, its WAL, a temp file
        db = Path(store.url.split("///", 1)[1])
        blobs = b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name))
        assert not any(n.encode() in blobs for n in ids)


def test_freshness_and_the_audit_event(store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", CHARGER_HEADER, charger_rows(12))
    events: list[tuple[str, int, dict[str, Any], str | None]] = []

    async def audit(op: str, status: int, detail: dict[str, Any], error: str | None) -> None:
        events.append((op, status, detail, error))

    result = load(store, LoadRequest("charging_station", path, mode=Mode.replace), audit=audit)
    status = run(store, load_statuses)["charging_station"]
    assert status.row_count == 12 and status.last_load_mode == "replace"
    assert status.last_load_digest == result.digest and result.digest.startswith("sm3:")
    assert status.last_load_at is not None and status.last_change_at is not None
    if store.backend == "sqlite":  # the intent first, while the store's one write lock is free
        start = events.pop(0)
        assert start == (
            "data.load.start",
            202,
            {"dataset": "charging_station", "mode": "replace", "digest": None},
            None,
        )
    [(op, code, detail, error)] = events
    assert (op, code, error) == ("data.load", 200, None)
    assert detail == {
        "dataset": "charging_station",
        "mode": "replace",
        "digest": result.digest,
        "read": 12,
        "loaded": 12,
        "rejected": 0,
        "inserted": 12,
        "updated": 0,
        "deleted": result.deleted,
        "row_count": 12,
    }


def test_audit_unavailable_means_nothing_loaded(store: Store, tmp_path: Path) -> None:
    from gateway.identity.audit import AuditUnavailable

    before = count(store)
    path = write_csv(tmp_path / "c.csv", CHARGER_HEADER, charger_rows(5, 9000))

    async def audit(op: str, status: int, detail: dict[str, Any], error: str | None) -> None:
        raise AuditUnavailable("down")

    with pytest.raises(AuditUnavailable):
        load(store, LoadRequest("charging_station", path), audit=audit)
    assert count(store) == before


def test_the_readme_example_csv_loads(store: Store) -> None:
    """examples/xa_public_toilets.csv (Excel's CSV UTF-8, 信息项名称 headers) against the
    dataset examples/xa_public_toilets.yaml declares (here built in Python)."""
    from catalogue import service
    from catalogue.spec import DatasetSpec, DepartmentSpec, FieldSpec, FieldType
    from policies.model import PI, Category, Level, MaskRule, Open, Share

    s, f = FieldType.STRING, FieldType.FLOAT
    toilets = DatasetSpec(
        code="public_toilet", resource_code="610100-XA_CGJ-000001", name="公共厕所", name_en="Public toilets",
        department="xa_cgj", category=Category.THEME, share=Share.UNCONDITIONAL, open=Open.UNCONDITIONAL,
        fields=(
            FieldSpec("toilet_code", s, "厕所编号", nullable=False, indexed=True),
            FieldSpec("name", s, "名称", nullable=False), FieldSpec("district_code", s, "行政区划代码"),
            FieldSpec("district", s, "所在区县"), FieldSpec("address", s, "地址"),
            FieldSpec("longitude", f, "经度"), FieldSpec("latitude", f, "纬度"), FieldSpec("kind", s, "类别"),
            FieldSpec("opening_hours", s, "开放时间"),
            FieldSpec("accessible", FieldType.BOOLEAN, "无障碍设施"),
            FieldSpec("family_room", FieldType.BOOLEAN, "第三卫生间"),
            FieldSpec("keeper_name", s, "管理员姓名", level=Level.L3, pi=PI.PERSONAL, mask=MaskRule.NAME),
            FieldSpec("keeper_phone", s, "管理员电话", level=Level.L3, pi=PI.PERSONAL, mask=MaskRule.MOBILE),
        ),
    )  # fmt: skip

    async def setup(engine: Any) -> None:
        await service.save_department(engine, DepartmentSpec("xa_cgj", "西安市城市管理局"))
        await service.save_dataset(engine, toilets)

    run(store, setup)
    example = Path(__file__).resolve().parents[2] / "examples" / "xa_public_toilets.csv"
    result = load(store, LoadRequest("610100-XA_CGJ-000001", example))
    assert (result.dataset, result.loaded, result.rejected) == ("public_toilet", 20, 0)
    assert query(store, "SELECT count(*) FROM pool_public_toilet WHERE accessible") == [
        (14,)
    ]  # 是 in the file


def test_sqlite_store_stays_writable_while_a_load_stages(store: Store, tmp_path: Path) -> None:
    """The audit chain (and every other writer) keeps writing while rows are read, checked and
    staged; only the final checks and swap take SQLite's one write lock."""
    if store.backend != "sqlite":
        pytest.skip("PostgreSQL's lock on the pool table never blocks other tables' writers")
    import sqlite3

    db = store.url.split("///", 1)[1]
    path = write_csv(tmp_path / "c.csv", CHARGER_HEADER, charger_rows(600, 40_000))
    writes: list[int] = []

    def progress(read: int, rejected: int) -> None:
        other = sqlite3.connect(db, timeout=0.2)
        try:
            other.execute("CREATE TABLE IF NOT EXISTS probe (n INTEGER)")
            other.execute("INSERT INTO probe VALUES (?)", (read,))
            other.commit()
            writes.append(read)
        finally:
            other.close()

    result = load(store, LoadRequest("charging_station", path), progress=progress, batch_rows=100)
    assert result.loaded == 600 and len(writes) >= 5


def test_a_large_load_into_an_empty_table_rebuilds_its_indexes(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gateway.loading.writer as writer

    def indexes() -> set[str]:
        if store.backend == "sqlite":
            sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'pool_charging_station'"
        else:
            sql = "SELECT indexname FROM pg_indexes WHERE tablename = 'pool_charging_station'"
        return {r[0] for r in query(store, sql)}

    before = indexes()
    assert "ix_pool_charging_station_station_id" in before

    async def empty(engine: Any) -> None:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("DELETE FROM pool_charging_station")

    run(store, empty)
    monkeypatch.setattr(writer, "REBUILD_MIN", 10)
    dropped: list[int] = []
    real = writer._drop_secondary_indexes

    async def spy(conn: Any, table: Any) -> list[str]:
        out = await real(conn, table)
        dropped.append(len(out))
        return out

    monkeypatch.setattr(writer, "_drop_secondary_indexes", spy)
    path = write_csv(tmp_path / "c.csv", CHARGER_HEADER, charger_rows(30, 70_000))
    result = load(store, LoadRequest("charging_station", path, key=["station_id"]))
    assert result.row_count == 30 and dropped and dropped[0] >= 1
    assert indexes() == before
    assert query(store, "SELECT name FROM pool_charging_station WHERE station_id = 'S0070003'") == [
        ("站70003",)
    ]
