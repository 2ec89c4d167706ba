"""Text marks (policies.watermark_text): each digit run of a string declared
`watermark: {text: digit_width}` is delivered half- or full-width as the recipient's key says; the
text is the same under NFKC, a reader sees the same address; the catalogue refuses the mark on
anything but a plain string; and a leak carrying only addresses is traced, alone or with the
numbers."""

from __future__ import annotations

import csv
import io
import json
import random
import unicodedata
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from catalogue.document import dump, from_specs, parse, to_specs
from gateway.cli import app
from policies.watermark import cell_bit
from policies.watermark_text import mark_text, position_field, read_text_bits
from tests.catalogue.conftest import DEMO_FILE
from tests.watermark.test_catalogue import BASE, messages
from tests.watermark.test_trace import _env, _rows

SECRET = bytes(range(32))
ADDRESS = st.text(alphabet=st.sampled_from(list("陕西省市路号层室-（）0123456789０１２３ ")), max_size=40)


@given(ADDRESS, st.text(min_size=1, max_size=18))
def test_a_marked_string_reads_the_same(value: str, key: str) -> None:
    marked = mark_text(value, SECRET, "hrss", "ds", "addr", key)
    assert unicodedata.normalize("NFKC", marked) == unicodedata.normalize("NFKC", value)
    assert len(marked) == len(value)
    assert marked == mark_text(value, SECRET, "hrss", "ds", "addr", key)  # nothing to average
    # only digits change, and only their width
    for a, b in zip(value, marked, strict=True):
        assert a == b or (
            a.isdigit() and unicodedata.normalize("NFKC", a) == unicodedata.normalize("NFKC", b)
        )


def test_each_recipient_gets_its_own_widths_and_reads_them_back() -> None:
    value = "陕西省西安市碑林区友谊路390号24层11室"
    seen = {mark_text(value, SECRET, r, "ds", "addr", f"k{i}") for r in ("hrss", "samr") for i in range(40)}
    assert len(seen) > 4 and value in seen  # some rows unmarked or marked half-width
    full = mark_text("路３９０号", SECRET, "x", "ds", "addr", "k")
    assert read_text_bits(full) in ([0], [1])
    assert read_text_bits("路3９0号") == [None]  # mixed widths read as nothing
    assert mark_text(None, SECRET, "x", "ds", "addr", "k") is None


def test_the_widths_delivered_are_the_bits_detection_predicts() -> None:
    """What the trace predicts for position `addr#i` (policies.watermark.cell_bit) is the width
    the delivery chose for run i; past the tenth run nothing is marked."""
    value = "1路2号3层4室5-6-7-8-9-10-11-12"
    for i in range(200):
        key = f"k{i}"
        seen = read_text_bits(mark_text(value, SECRET, "hrss", "ds", "addr", key))
        predicted = [cell_bit(SECRET, "hrss", "ds", position_field("addr", j), key) for j in range(len(seen))]
        for j, (b, p) in enumerate(zip(seen, predicted, strict=True)):
            assert p is None or b == p, (key, j)
            assert p is not None or b == 0  # unselected runs stay as stored (half-width)
        assert predicted[10:] == [None, None]


def test_catalogue_takes_text_on_strings_only() -> None:
    text = BASE + "      - name: 住所\n        column: address\n        type: string\n"
    marked = parse(text + "        watermark: {text: digit_width}\n")  # on the last field, address
    spec = to_specs(marked)[1][0]
    assert (
        spec.field("address").watermark_text == "digit_width"
        and spec.field("address").watermark_tolerance is None
    )
    again = to_specs(parse(dump(from_specs(*to_specs(marked)))))[1][0]
    assert again.field("address").watermark_text == "digit_width"
    assert to_specs(parse(text))[1][0].field("address").watermark_text is None
    mark = "        watermark: {text: digit_width}\n"
    on_number = BASE.replace("        column: capital\n", "        column: capital\n" + mark)
    assert any("only string fields" in m for m in messages(on_number))
    on_key = BASE.replace("        column: credit_code\n", "        column: credit_code\n" + mark)
    assert any("identifiers, keys" in m for m in messages(on_key))
    both = text + "        watermark: {text: digit_width, tolerance: 1}\n"
    assert any("either a tolerance" in m for m in messages(both))
    unknown = text + "        watermark: {text: homoglyphs}\n"
    assert messages(unknown)


def test_demo_marks_the_registered_address() -> None:
    specs = to_specs(parse(DEMO_FILE.read_text("utf-8")))[1]
    marked = {(s.code, f.name) for s in specs for f in s.fields if f.watermark_text is not None}
    assert marked == {("enterprise_registration", "registered_address")}


AQ = """{ enterpriseRegistration(first: 300) { edges { node { creditCode registeredAddress } } } }"""


def test_delivered_addresses_read_as_stored(client: Any, tokens: dict[str, str]) -> None:
    anonymous = {r["creditCode"]: r["registeredAddress"] for r in _rows(client, tier="open", query=AQ)}
    hrss = {
        r["creditCode"]: r["registeredAddress"]
        for r in _rows(client, tier="share", query=AQ, token=tokens["hrss"])
    }
    assert anonymous.keys() == hrss.keys()
    changed = 0
    for k, v in hrss.items():
        assert unicodedata.normalize("NFKC", v) == unicodedata.normalize("NFKC", anonymous[k])
        changed += v != anonymous[k]
    assert changed > 20
    assert not any("０" <= c <= "９" for v in anonymous.values() for c in v)  # open data as stored


def test_a_leak_of_addresses_alone_is_traced(
    client: Any, tokens: dict[str, str], demo_env: Any, tmp_path: Any
) -> None:
    rows = _rows(client, tier="share", query=AQ, token=tokens["samr"])
    rng = random.Random(5)
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["企业代码", "地址"])  # renamed: matched by value (the same under NFKC)
    for r in rng.sample(rows, 150):
        w.writerow([r["creditCode"], r["registeredAddress"]])
    path = tmp_path / "addresses.csv"
    path.write_text(out.getvalue(), "utf-8")
    r = CliRunner().invoke(app, ["watermark", "trace", str(path), "--json"], env=_env(demo_env))
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["identified"]["recipient"] == "samr"
    assert report["matched"][0]["columns"] == {"registered_address": "地址"}


@pytest.mark.parametrize("normalised", [False, True])
def test_text_and_numbers_combine_and_nfkc_removes_the_text_evidence(
    client: Any, tokens: dict[str, str], demo_env: Any, tmp_path: Any, normalised: bool
) -> None:
    fields = "creditCode registeredCapital registeredAddress"
    q = f"{{ enterpriseRegistration(first: 60) {{ edges {{ node {{ {fields} }} }} }} }}"
    rows = _rows(client, tier="share", query=q, token=tokens["hrss"])
    if normalised:
        rows = [
            {**r, "registeredAddress": unicodedata.normalize("NFKC", r["registeredAddress"])} for r in rows
        ]
    path = tmp_path / "both.json"
    path.write_text(json.dumps(rows), "utf-8")
    r = CliRunner().invoke(app, ["watermark", "trace", str(path), "--json"], env=_env(demo_env))
    report = json.loads(r.stdout)
    matched = report["matched"][0]
    assert set(matched["columns"]) == {"registered_capital", "registered_address"}
    best = report["recipients"][0]
    assert best["recipient"] == "hrss"
    if normalised:  # every digit run half-width: the text marks are gone, and left out
        assert matched["text_marks_erased"] == ["registered_address"] and best["marked_cells"] <= 60
    else:  # 60 rows: the addresses' digit runs add their bits to the capital's
        assert matched["text_marks_erased"] == [] and best["marked_cells"] > 60 and r.exit_code == 0
