"""Bad input: each gets a clear message with the row number, and nothing is half-written."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from gateway.db import create_engine
from gateway.loading.readers import (
    MAX_LINE_CHARS,
    SNIFF_BYTES,
    CountingReader,
    Encoding,
    Format,
    LoadError,
    read_rows,
)
from gateway.loading.service import LoadRequest
from gateway.loading.writer import LoadRejected, Mode
from tests.loading.support import CHARGER_HEADER, Store, charger_rows, credit_code, id_number, write_csv
from tests.loading.test_load import count, load, query, run


@pytest.fixture(autouse=True)
def baseline(store: Store, tmp_path: Path) -> None:
    """Ten known rows before each test, so "nothing written" is a count that did not move."""
    load(
        store,
        LoadRequest(
            "charging_station",
            write_csv(tmp_path / "base.csv", CHARGER_HEADER, charger_rows(10)),
            mode=Mode.replace,
        ),
    )


def test_unterminated_quote(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    good = "\n".join(",".join(r) for r in charger_rows(3, 500))
    path.write_text(
        ",".join(CHARGER_HEADER) + "\n" + good + '\nS9,"unterminated,' + "x" * 200 + "\n", encoding="utf-8"
    )
    with pytest.raises(LoadError, match=r"row 5: malformed CSV \(an unterminated quoted field\?\)"):
        load(store, LoadRequest("charging_station", path))
    assert count(store) == 10


def test_gb18030_read_as_utf8_suggests_the_encoding(store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "gb.csv", CHARGER_HEADER, charger_rows(3, name="充电站"), encoding="gb18030")
    with pytest.raises(LoadError, match=r"row \d+: the file is not valid UTF-8 .*try --encoding gb18030"):
        load(store, LoadRequest("charging_station", path, encoding=Encoding.utf8))
    assert count(store) == 10


def test_unknown_column_lists_the_valid_ones_before_any_row(store: Store, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "c.csv", [*CHARGER_HEADER, "colour"], [[*r, "red"] for r in charger_rows(3, 600)]
    )
    with pytest.raises(LoadError) as err:
        load(store, LoadRequest("charging_station", path))
    assert "unknown column 'colour'" in str(err.value)
    assert "station_id (桩编号)" in str(err.value) and "latitude (纬度)" in str(err.value)
    assert count(store) == 10


def test_missing_required_column(store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", ["station_id", "ports"], [["S1", "2"]])
    with pytest.raises(LoadError, match="required column missing from the header: name"):
        load(store, LoadRequest("charging_station", path))


def test_bad_check_digit_names_row_and_column_and_writes_nothing(store: Store, tmp_path: Path) -> None:
    rows = list(charger_rows(5, 700))
    code = credit_code(3)
    rows[3][2] = code[:-1] + ("0" if code[-1] != "0" else "1")  # file row 5 (the header is row 1)
    path = write_csv(tmp_path / "c.csv", CHARGER_HEADER, rows)
    rejects = tmp_path / "rejects.csv"
    with pytest.raises(LoadRejected) as err:
        load(store, LoadRequest("charging_station", path, rejects_path=rejects))
    message = str(err.value)
    assert "1 row rejected" in message and "nothing was loaded" in message
    assert "row 5, operator_credit_code: not a valid 统一社会信用代码" in message
    assert count(store) == 10
    text = rejects.read_text(encoding="utf-8-sig").splitlines()
    assert text[0] == "row,column,reason" and text[1].startswith("5,operator_credit_code,")
    # --max-rejects lets the good rows through and skips the bad one
    result = load(store, LoadRequest("charging_station", path, max_rejects=1, rejects_path=rejects))
    assert (result.loaded, result.rejected) == (4, 1) and count(store) == 14


def test_rejects_never_quote_a_protected_or_personal_value(store: Store, tmp_path: Path) -> None:
    bad = id_number(5)[:-1] + ("0" if id_number(5)[-1] != "0" else "1")
    path = write_csv(tmp_path / "r.csv", ["id_number", "name", "issued_on"], [[bad, "张三", "2024-02-30"]])
    rejects = tmp_path / "rejects.csv"
    with pytest.raises(LoadRejected) as err:
        load(store, LoadRequest("resident_card", path, rejects_path=rejects))
    saved = rejects.read_text(encoding="utf-8-sig")
    for text in (str(err.value), saved):
        assert bad not in text and bad[:17] not in text
    assert 'id_number,"not a valid 身份证号' in saved
    assert "issued_on,not a real date: '2024-02-30'" in saved  # an L1 value may be quoted


def test_type_errors_each_column(store: Store, tmp_path: Path) -> None:
    row = ["S1", "x", "", "12.345", "two", "2023-13-01", "yesterday", "maybe", "nan"]
    path = write_csv(tmp_path / "c.csv", CHARGER_HEADER, [row])
    rejects = tmp_path / "rejects.csv"
    with pytest.raises(LoadRejected):
        load(store, LoadRequest("charging_station", path, rejects_path=rejects))
    reasons = {line.split(",")[1] for line in rejects.read_text(encoding="utf-8-sig").splitlines()[1:]}
    assert reasons == {"power_kw", "ports", "opened_on", "updated_at", "public", "latitude"}


def test_duplicate_key_in_the_file(store: Store, tmp_path: Path) -> None:
    rows = list(charger_rows(4, 800))
    rows.append(list(rows[1]))  # file row 6 repeats row 3
    path = write_csv(tmp_path / "c.csv", CHARGER_HEADER, rows)
    for mode in (Mode.append, Mode.upsert, Mode.replace):
        with pytest.raises(
            LoadRejected, match=r"row 6, station_id: duplicate key \(station_id\): the same as row 3"
        ):
            load(store, LoadRequest("charging_station", path, mode=mode, key=["station_id"]))
    assert count(store) == 10


def test_duplicate_key_against_the_table_in_append_mode(store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", CHARGER_HEADER, charger_rows(3, 8))  # S8, S9 are loaded already
    with pytest.raises(
        LoadRejected, match=r"2 rows rejected.*row 2, station_id: key \(station_id\) already in the table"
    ):
        load(store, LoadRequest("charging_station", path, key=["station_id"]))
    assert count(store) == 10
    result = load(store, LoadRequest("charging_station", path, mode=Mode.upsert, key=["station_id"]))
    assert (result.updated, result.inserted, result.row_count) == (2, 1, 11)


def test_large_garbage_is_refused_after_a_bounded_read(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "garbage.csv"
    with path.open("wb") as f:
        for _ in range(20):
            f.write(os.urandom(1 << 20))  # 20 MiB of random bytes
    bound = SNIFF_BYTES + 2 * MAX_LINE_CHARS + (1 << 16)

    def refused(encoding: Encoding) -> tuple[str, int]:
        source = CountingReader(path.open("rb"))
        with pytest.raises(LoadError) as err:
            rows = read_rows(source, Format.csv, encoding)
            for _ in rows.rows:
                pass
        source.close()
        return str(err.value), source.bytes_read

    for encoding in Encoding:
        message, read = refused(encoding)
        assert read < bound, (encoding, read)
        assert "row 1" in message or "line 1" in message or "neither UTF-8 nor GB18030" in message
        with pytest.raises(LoadError):
            load(store, LoadRequest("charging_station", path, encoding=encoding))
    # One line without a break, of printable text: refused at the line limit.
    path.write_bytes(b"a" * (3 * MAX_LINE_CHARS))
    message, read = refused(Encoding.utf8)
    assert message.startswith("line 1: longer than") and read < bound
    assert count(store) == 10


def test_not_a_workbook_and_not_json(store: Store, tmp_path: Path) -> None:
    (tmp_path / "x.xlsx").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(LoadError, match="not an XLSX workbook"):
        load(store, LoadRequest("charging_station", tmp_path / "x.xlsx"))
    (tmp_path / "x.jsonl").write_text(
        '{"station_id": "S1", "name": "a"}\n{"station_id": \n', encoding="utf-8"
    )
    with pytest.raises(LoadError, match="row 2: not JSON"):
        load(store, LoadRequest("charging_station", tmp_path / "x.jsonl"))
    assert count(store) == 10


def test_json_number_past_the_int_digits_limit(store: Store, tmp_path: Path) -> None:
    # Valid JSON that json.loads still refuses with a plain ValueError (not a JSONDecodeError):
    # a clear row error, not an AttributeError on the message.
    (tmp_path / "x.jsonl").write_text(
        '{"station_id": "S1", "name": "a"}\n{"station_id": ' + "1" * 5000 + "}\n", encoding="utf-8"
    )
    with pytest.raises(LoadError, match=r"row 2: a value that cannot be read \(Exceeds the limit"):
        load(store, LoadRequest("charging_station", tmp_path / "x.jsonl"))
    assert count(store) == 10


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, asyncio.CancelledError, RuntimeError])
def test_interrupted_mid_load_writes_nothing(
    store: Store, tmp_path: Path, interrupt: type[BaseException]
) -> None:
    path = write_csv(tmp_path / "c.csv", CHARGER_HEADER, charger_rows(1000, 5000))
    batches = 0

    def progress(read: int, rejected: int) -> None:
        nonlocal batches
        batches += 1
        if batches == 3:
            raise interrupt()

    for mode in (Mode.append, Mode.replace):
        batches = 0
        with pytest.raises(interrupt):
            load(store, LoadRequest("charging_station", path, mode=mode), progress=progress, batch_rows=100)
        assert batches == 3
        assert count(store) == 10
    # and the table is not left locked: the next load goes through
    assert load(store, LoadRequest("charging_station", path)).row_count == 1010


def test_replace_is_atomic_for_a_concurrent_reader(store: Store, tmp_path: Path) -> None:
    """A reader on another connection, in the middle of the swap (old rows deleted, new ones
    not yet inserted, same transaction), sees the old table whole; after the commit, the new."""
    from gateway.loading.readers import open_rows
    from gateway.loading.service import cipher_for, dataset_spec
    from gateway.loading.writer import load_rows

    path = write_csv(tmp_path / "c.csv", CHARGER_HEADER, charger_rows(25, 3000, name="新"))
    seen: list[tuple[int, int]] = []

    async def go(engine: Any) -> None:
        reader = create_engine(store.url)

        async def look() -> None:
            async with reader.connect() as conn:
                n, new = (
                    await conn.exec_driver_sql(
                        "SELECT count(*), sum(CASE WHEN name LIKE '新%' THEN 1 ELSE 0 END) "
                        "FROM pool_charging_station"
                    )
                ).one()
                seen.append((int(n), int(new or 0)))

        spec = await dataset_spec(engine, "charging_station")
        rows = open_rows(path, Format.csv)
        try:
            await load_rows(
                engine,
                spec,
                rows.header,
                rows.rows,
                mode=Mode.replace,
                cipher=await cipher_for(engine, spec, store.master_key),
                on_swap=look,
            )
        finally:
            rows.close()
        await look()
        await reader.dispose()

    run(store, go)
    assert seen == [(10, 0), (25, 25)]
    assert query(store, "SELECT count(*) FROM pool_charging_station") == [(25,)]


def test_malformed_row_after_many_batches_leaves_nothing(store: Store, tmp_path: Path) -> None:
    """The bad row is met while earlier batches are being written: they are rolled back too."""
    path = tmp_path / "late.csv"
    good = "\n".join(",".join(r) for r in charger_rows(950, 20_000))
    path.write_text(",".join(CHARGER_HEADER) + "\n" + good + '\nS9,"never closed\n', encoding="utf-8")
    with pytest.raises(LoadError, match=r"row 952: malformed CSV"):
        load(store, LoadRequest("charging_station", path), batch_rows=100)
    assert count(store) == 10
