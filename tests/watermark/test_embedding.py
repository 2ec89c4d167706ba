"""The mark itself (policies.watermark): within tolerance, deterministic per recipient,
different between recipients, readable back; and the binomial tail it is judged by."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.watermark import (
    SCHEME_V1,
    SCHEME_V2,
    Cell,
    Layout,
    MarkKey,
    binomial_tail,
    cell_bit,
    embed_bit,
    mark_value,
    read_bit,
    score,
)

SECRET = bytes(range(32))
TOLERANCES = st.sampled_from([Decimal("0.01"), Decimal("0.1"), Decimal(1), Decimal(5), Decimal("0.05")])
DECIMALS = st.decimals(min_value=-(10**9), max_value=10**9, places=4, allow_nan=False, allow_infinity=False)


@settings(max_examples=400)
@given(DECIMALS, TOLERANCES, st.integers(0, 1), st.booleans())
def test_embedding_stays_within_tolerance_and_carries_its_bit(
    v: Decimal, t: Decimal, bit: int, up: bool
) -> None:
    marked = embed_bit(v, t, bit, up)
    assert isinstance(marked, Decimal)
    assert abs(marked - v) <= t
    assert read_bit(marked, t) == bit
    assert read_bit(str(marked), t) == bit  # as text in a CSV


@settings(max_examples=300)
@given(st.integers(-(10**12), 10**12), st.integers(1, 10), st.integers(0, 1), st.booleans())
def test_integers_stay_integers_within_tolerance(v: int, t: int, bit: int, up: bool) -> None:
    marked = embed_bit(v, Decimal(t), bit, up)
    assert isinstance(marked, int) and abs(marked - v) <= t and read_bit(marked, Decimal(t)) == bit


@settings(max_examples=300)
@given(st.floats(-1e6, 1e6, allow_nan=False), TOLERANCES, st.integers(0, 1))
def test_floats_within_tolerance(v: float, t: Decimal, bit: int) -> None:
    marked = embed_bit(v, t, bit)
    assert isinstance(marked, float)
    assert abs(marked - v) <= float(t) * (1 + 1e-9)
    assert read_bit(marked, t) == bit


@given(DECIMALS, st.text(min_size=1, max_size=20))
def test_deterministic_per_recipient(v: Decimal, row_key: str) -> None:
    a = mark_value(v, Decimal("0.01"), SECRET, "hrss", "ds", "f", row_key)
    assert a == mark_value(v, Decimal("0.01"), SECRET, "hrss", "ds", "f", row_key)
    assert abs(a - v) <= Decimal("0.01")


def test_recipients_get_different_marks_and_about_gamma_of_cells() -> None:
    v = Decimal("500.00")
    keys = [f"9161{i:014d}" for i in range(2000)]
    hrss = [mark_value(v, Decimal("0.01"), SECRET, "hrss", "ds", "f", k) for k in keys]
    samr = [mark_value(v, Decimal("0.01"), SECRET, "samr", "ds", "f", k) for k in keys]
    assert hrss != samr
    marked = [cell_bit(SECRET, "hrss", "ds", "f", k) for k in keys]
    share = sum(b is not None for b in marked) / len(keys)
    assert 0.45 < share < 0.55
    # a value on the grid moves up as often as down: no bias on average
    moved = [m - v for m in hrss if m != v]
    assert abs(float(sum(moved))) < 0.01 * 4 * math.sqrt(len(moved))
    # another key, other marks
    other = bytes(32)
    assert hrss != [mark_value(v, Decimal("0.01"), other, "hrss", "ds", "f", k) for k in keys]


def test_nulls_and_non_numbers_and_missing_keys_untouched() -> None:
    assert mark_value(None, Decimal(1), SECRET, "r", "d", "f", "k") is None
    assert mark_value(Decimal(3), Decimal(1), SECRET, "r", "d", "f", None) == Decimal(3)
    assert embed_bit("n/a", Decimal(1), 1) == "n/a"
    assert read_bit("n/a", Decimal(1)) is None


def test_decimal_scale_kept() -> None:
    assert str(embed_bit(Decimal("500.0000"), Decimal("0.01"), 1, True)) == "500.0100"
    assert str(embed_bit(Decimal("500"), Decimal("0.01"), 1, True)) == "500.01"


def test_binomial_tail() -> None:
    assert binomial_tail(0, 10) == 1.0
    assert binomial_tail(11, 10) == 0.0
    assert binomial_tail(10, 10) == 2**-10
    assert math.isclose(binomial_tail(5, 10), sum(math.comb(10, i) for i in range(5, 11)) / 1024)
    assert 0 < binomial_tail(2000, 2000) < 1e-300 or binomial_tail(2000, 2000) == 0.0


def test_score_groups_rows_of_one_key_into_one_vote() -> None:
    """A person's monthly rows share a bit: counted once, or the tail would lie."""
    key = MarkKey("k1", SECRET)
    t = Decimal(1)
    cells = []
    for i in range(300):
        rk = f"p{i}"
        v = mark_value(Decimal(1000), t, SECRET, "hrss", "si", "base", rk)
        cells += [Cell("si", "base", rk, v, t)] * 3
    scores = score(cells, ["hrss", "samr"], [key])
    assert scores[0].recipient == "hrss" and scores[0].matches == scores[0].marked
    assert 100 < scores[0].marked < 200  # ≈ γ × 300 distinct cells, not 900
    assert scores[1].p_value > 1e-4
    assert "secret" not in repr(key) and SECRET.hex() not in repr(key)


def _same(a: object, b: object) -> bool:
    """Delivered identically: same type and same text (Decimal('1.0') != Decimal('1.00') here)."""
    return type(a) is type(b) and str(a) == str(b)


SCALED = st.one_of(
    st.decimals(min_value=-(10**9), max_value=10**9, places=4, allow_nan=False, allow_infinity=False),
    st.builds(
        lambda n, e: Decimal(n).scaleb(e), st.integers(-(10**13), 10**13), st.integers(-6, 3)
    ),  # every scale, trailing zeros, exponents in the text, past the integer path's bound
    st.integers(-(10**7), 10**7),
)


LAYOUTS = st.sampled_from(
    [
        None,  # the field as its dataset's only marked one
        Layout.of([("f", False), ("addr", True)]),  # after a text field: bytes 20–21
        Layout.of([("a", False), ("addr", True), ("f", False), ("g", False)]),
        Layout.of([("addr", True), ("b", True), ("f", False)]),  # in the second digest
    ]
)


@settings(max_examples=400)
@given(
    SCALED,
    TOLERANCES | st.sampled_from([Decimal(10), Decimal("1E+2"), Decimal("0.001")]),
    st.text(max_size=20),
    LAYOUTS,
)
def test_the_column_marker_delivers_what_mark_value_does(
    value: Decimal | int, t: Decimal, key: str, layout: Layout | None
) -> None:
    """The planner's per-column marker (the row's digest shared, integer and text arithmetic,
    the memo of hot rows, the stringification fused) is mark_value, value for value — asked once
    (computed) and again (remembered) — and never leaves the tolerance."""
    from policies.watermark import column_marker

    expected = mark_value(value, t, SECRET, "hrss", "ds", "f", key, layout=layout)
    if not isinstance(value, int) or t == t.to_integral_value():  # integers: whole tolerances only
        assert abs(Decimal(expected) - Decimal(value)) <= t
    mark = column_marker(t, SECRET, "hrss", "ds", "f", layout=layout)
    as_text = column_marker(t, SECRET, "hrss", "ds", "f", then=str, layout=layout)
    for _ in range(2):
        assert _same(mark(value, key), expected)
        assert as_text(value, key) == str(expected)
    assert mark(None, key) is None and mark(value, None) == value
    assert as_text(value, None) == str(value)


@settings(max_examples=400)
@given(st.integers(-(10**13), 10**13) | st.integers(-1000, 1000), st.integers(-12, 0))
def test_decimal_text_writes_what_str_of_the_decimal_does(coef: int, exp: int) -> None:
    """The text the column marker writes for a marked Decimal without building it: str(Decimal)'s
    own, or None where Decimal would switch to an exponent (the marker then takes the Decimal way)."""
    from policies.watermark import _decimal_text

    text, expected = _decimal_text(coef, exp), str(Decimal(f"{coef}E{exp}"))
    assert text == expected or (text is None and "E" in expected)


# Delivered values for a fixed key: the SM3 of every case's line. A change to what is delivered
# fails here. v1 (one digest per cell): computed by the implementation before the integer path and
# the memo (commit 5286d3a), now reproduced by the reference functions with scheme v1 — what a
# trace of a v1 delivery recomputes. v2 (one digest per row, the demo's enterprise_registration
# layout: the address at bytes 0–19, the capital at 20–21): computed when scheme v2 was introduced
# (every delivered value changed then, by design), by the planner's markers and by the reference.
PINNED = "afd624d55364b0d862f0725d57066e358f0414429fbd28ee56a1709b2bbacd81"
PINNED_STRINGIFIED = "c7bc4a49517b8ce7b5891d7f372d8181a9853dfcd23fa420d5997f31d0051b9c"
PINNED_V2 = "cf9ec3ca9de15d002e61ccf6401c63ef7370cdd87a4ce0a6706f83119eb65fea"
PINNED_V2_STRINGIFIED = "5f4c3f0fc4b0a8f6b8a0477f43df2bf05e5d01a6126ccf4510715de88db72867"
ER_LAYOUT = Layout.of([("registered_capital", False), ("registered_address", True)])


def _pinned_cases() -> list[tuple[object, Decimal, str]]:
    import random

    rng = random.Random(7)
    tols = [
        Decimal("0.01"),
        Decimal(1),
        Decimal("0.5"),
        Decimal(5),
        Decimal("10"),
        Decimal("0.001"),
        Decimal("1E+2"),
    ]
    odd = [
        Decimal("-0.00"),
        Decimal("0E+2"),
        Decimal("5E+3"),
        Decimal("1.5E-7"),
        Decimal("123456789012345678901234.5"),
    ]
    out: list[tuple[object, Decimal, str]] = []
    for i in range(3000):
        t = tols[i % len(tols)]
        r = rng.random()
        v: object
        if r < 0.3:
            v = Decimal(rng.randint(-(10**7), 10**7)).scaleb(-rng.randint(0, 4))
        elif r < 0.45:
            v = Decimal(rng.choice([0, 1, 50, 100, 500, 1000])).quantize(
                Decimal(1).scaleb(-rng.randint(0, 3))
            )
        elif r < 0.6:
            v = rng.randint(-(10**6), 10**6)
        elif r < 0.7:
            v = Decimal(rng.randint(0, 10**20)).scaleb(-rng.randint(0, 6))
        elif r < 0.8:
            v = rng.choice(odd)
        elif r < 0.9:
            v = round(rng.uniform(-1e4, 1e4), rng.randint(0, 3))
        else:
            v = str(Decimal(rng.randint(0, 10**6)).scaleb(-2))
        out.append((v, t, f"9161{i:014d}"))
    return out


ADDRESSES = [
    "陕西省西安市碑林区友谊路390号24层11室",
    "无数字",
    "1号",
    "１２３路45号6-7-8-9-10-11-12-13-14-15",
    "",
]


def _pinned_digest(stringify: bool, scheme: str = SCHEME_V2) -> str:
    """The planner's markers (v2), or the reference functions (v1, the trace's side)."""
    from keys.sm3 import sm3_hex
    from policies.watermark import column_marker
    from policies.watermark_text import mark_text, text_marker

    lines = []
    ds, cap, addr = "enterprise_registration", "registered_capital", "registered_address"
    for v, t, k in _pinned_cases():
        o: object
        if scheme == SCHEME_V1:
            o = mark_value(v, t, SECRET, "hrss", ds, cap, k, scheme=SCHEME_V1)
            o = str(o) if stringify else o
        else:
            then = str if stringify else None
            o = column_marker(t, SECRET, "hrss", ds, cap, then=then, layout=ER_LAYOUT)(v, k)
            ref = mark_value(v, t, SECRET, "hrss", ds, cap, k, layout=ER_LAYOUT)
            assert _same(o, str(ref) if stringify else ref)
        lines.append(f"{type(v).__name__}|{v}|{t}|{k}|{type(o).__name__}|{o}")
    text = text_marker(SECRET, "hrss", ds, addr, layout=ER_LAYOUT)
    for i in range(500):
        a = ADDRESSES[i % len(ADDRESSES)]
        if scheme == SCHEME_V1:
            lines.append(f"{a}|{mark_text(a, SECRET, 'hrss', ds, addr, str(i), scheme=SCHEME_V1)}")
        else:
            o = text(a, str(i))
            assert o == mark_text(a, SECRET, "hrss", ds, addr, str(i), layout=ER_LAYOUT)
            lines.append(f"{a}|{o}")
    return sm3_hex("\n".join(lines).encode())


def test_delivered_values_are_pinned_for_a_fixed_key() -> None:
    assert _pinned_digest(stringify=False) == PINNED_V2
    assert _pinned_digest(stringify=True) == PINNED_V2_STRINGIFIED
    assert _pinned_digest(stringify=False) == PINNED_V2  # again, every answer now from the memo


def test_v1_values_are_still_what_v1_delivered() -> None:
    """What tracing a delivery made under v1 recomputes is what v1 delivered (its pin)."""
    assert _pinned_digest(stringify=False, scheme=SCHEME_V1) == PINNED
    assert _pinned_digest(stringify=True, scheme=SCHEME_V1) == PINNED_STRINGIFIED


def test_a_column_is_marked_the_same_whatever_else_the_row_asks_for() -> None:
    """The slot of a field comes from the catalogue's layout, never from the query: the capital
    asked alone, with the address, or after it, rows interleaved or not, gets the same values;
    so does the address."""
    from policies.watermark import column_marker
    from policies.watermark_text import text_marker

    ds, t = "enterprise_registration", Decimal("0.01")
    keys = [f"9161{i:014d}" for i in range(400)]
    v, a = Decimal("1234.56"), ADDRESSES[0]

    def cap() -> Any:
        return column_marker(t, SECRET, "hrss", ds, "registered_capital", then=str, layout=ER_LAYOUT)

    def addr() -> Any:
        return text_marker(SECRET, "hrss", ds, "registered_address", layout=ER_LAYOUT)

    alone_c, alone_a = cap(), addr()
    capital = [alone_c(v, k) for k in keys]
    address = [alone_a(a, k) for k in keys]
    both_c, both_a = cap(), addr()
    assert [(both_c(v, k), both_a(a, k)) for k in keys] == list(zip(capital, address, strict=True))
    other_c, other_a = cap(), addr()
    assert [(other_a(a, k), other_c(v, k)) for k in keys] == list(zip(address, capital, strict=True))
    mixed_c, mixed_a = cap(), addr()  # one response's rows interleaved with another's
    for i, k in enumerate(keys):
        assert mixed_a(a, keys[-1 - i]) == address[-1 - i]
        assert mixed_c(v, k) == capital[i]
    reference = [
        str(mark_value(v, t, SECRET, "hrss", ds, "registered_capital", k, layout=ER_LAYOUT)) for k in keys
    ]
    assert capital == reference and len(set(capital)) > 1


def test_a_rows_fields_carry_independent_bits() -> None:
    """Disjoint bytes of one digest: the capital's selection and bit, and each digit run's, are
    independent — every joint pattern about as frequent as chance says (else one row's fields
    would be one vote counted twice)."""
    from collections import Counter

    n = 8000
    joint: Counter[tuple[int | None, ...]] = Counter()
    for i in range(n):
        k = f"9161{i:014d}"
        bits = tuple(
            cell_bit(SECRET, "hrss", "enterprise_registration", f, k, layout=ER_LAYOUT)
            for f in ("registered_capital", "registered_address#0", "registered_address#1")
        )
        joint[bits] += 1
    assert len(joint) == 27  # every pattern of (not marked, 0, 1)³ occurs
    for pattern, count in joint.items():
        p = 1.0  # γ = ½: not marked ½, bit 0 ¼, bit 1 ¼, independently
        for b in pattern:
            p *= 0.5 if b is None else 0.25
        assert abs(count - n * p) < 5 * math.sqrt(n * p), (pattern, count, n * p)


def test_v1_deliveries_are_traced_under_v1_and_name_their_recipient() -> None:
    """A leak of a delivery made under v1 (its audit event says so) is scored under v1 and names
    its recipient; scored under v2 alone it names no one (its marks are not v2's)."""
    key = MarkKey("k1", SECRET)
    t = Decimal("0.01")
    cells = []
    for i in range(300):
        rk = f"9161{i:014d}"
        v = mark_value(Decimal("500.00"), t, SECRET, "hrss", "ds", "f", rk, scheme=SCHEME_V1)
        cells.append(Cell("ds", "f", rk, str(v), t))
    both = score(cells, ["hrss", "samr", "tax"], [key], schemes={"k1": [SCHEME_V2, SCHEME_V1]})
    assert (both[0].recipient, both[0].scheme) == ("hrss", SCHEME_V1)
    assert both[0].p_adjusted < 1e-20 and len(both) == 6
    assert all(s.p_adjusted > 1e-6 for s in both[1:])
    v2_only = score(cells, ["hrss", "samr", "tax"], [key])
    assert all(s.p_adjusted > 1e-6 for s in v2_only) and {s.scheme for s in v2_only} == {SCHEME_V2}


def test_the_memo_tells_apart_values_that_compare_equal() -> None:
    """One row, its stored value changing form between requests: each delivery is what
    mark_value gives for that exact value (scale, type), never a remembered neighbour's."""
    from policies.watermark import column_marker

    t = Decimal("0.01")
    mark = column_marker(t, SECRET, "hrss", "ds", "f")
    as_text = column_marker(t, SECRET, "hrss", "ds", "f", then=str)
    key = next(k for k in (f"k{i}" for i in range(100)) if cell_bit(SECRET, "hrss", "ds", "f", k) is not None)
    values = [
        Decimal("1.0"),
        Decimal("1.00"),
        Decimal("1"),
        1,
        True,
        Decimal("1.000"),
        1.0,
        Decimal("1.0"),
        2,
    ]
    for v in values * 2:
        expected = mark_value(v, t, SECRET, "hrss", "ds", "f", key)
        assert _same(mark(v, key), expected), v
        assert as_text(v, key) == str(expected), v


def test_the_memo_never_answers_for_another_recipient_or_key() -> None:
    from policies.watermark import column_marker

    t = Decimal("0.01")
    v = Decimal("123.45")
    other = bytes(range(1, 33))
    for i in range(200):
        k = f"row{i}"
        for secret, recipient in ((SECRET, "hrss"), (SECRET, "samr"), (other, "hrss")):
            mark = column_marker(t, secret, recipient, "ds", "f")
            assert _same(mark(v, k), mark_value(v, t, secret, recipient, "ds", "f", k))


def test_the_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import policies.watermark as wm
    from policies.watermark import column_marker

    monkeypatch.setattr(wm, "MEMO_ROWS", 50)
    wm._memo.clear()  # what earlier tests left, under the default bound
    mark = column_marker(Decimal("0.01"), SECRET, "hrss", "ds", "f")
    for i in range(500):
        for _ in range(2):  # the second sight is remembered
            assert _same(
                mark(Decimal("7.77"), str(i)),
                mark_value(Decimal("7.77"), Decimal("0.01"), SECRET, "hrss", "ds", "f", str(i)),
            )
            assert len(wm._memo) <= 50


def test_a_row_is_remembered_on_its_second_sight_only() -> None:
    """A page seen once (a consumer reading through a table) costs no memo entry; a row asked for
    again is remembered, and answered from the memo the third time."""
    import policies.watermark as wm
    from policies.watermark import MarkedColumn, row_marker

    columns = [MarkedColumn("f", Decimal("0.01"), str), MarkedColumn("addr", None)]
    mark = row_marker(SECRET, "hrss", "ds", columns)
    values = (Decimal("12.34"), "友谊路390号24层")
    wm._memo.clear()
    first = mark("row-1", values)
    (slot,) = wm._memo
    assert wm._memo[slot] is wm._FIRST  # seen, nothing remembered
    second = mark("row-1", values)
    assert second == first and second is not first
    assert mark("row-1", values) is second  # remembered: the same answer, not recomputed
    changed = (Decimal("12.340"), values[1])  # equal, but delivered with its own scale
    assert mark("row-1", changed) is not second
    expected = mark_value(changed[0], Decimal("0.01"), SECRET, "hrss", "ds", "f", "row-1")
    assert mark("row-1", changed)[0] == str(expected)


@given(
    st.text(alphabet=st.sampled_from(list("路号层0123456789０１２")), max_size=60),
    st.text(min_size=1, max_size=20),
)
def test_the_text_marker_delivers_what_mark_text_does(value: str, key: str) -> None:
    from policies.watermark_text import mark_text, text_marker

    mark = text_marker(SECRET, "hrss", "ds", "addr")
    for text in (value, value, value + "1", value):  # computed, remembered, the row's text changed
        assert mark(text, key) == mark_text(text, SECRET, "hrss", "ds", "addr", key)


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(
            SCALED | st.sampled_from([Decimal("1.0"), Decimal("1.00"), 1, True, 1.0]),
            st.text(alphabet=st.sampled_from(list("路号层0123456789０１")), max_size=30),
        ),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from(["k1", "k2"]),
    st.sampled_from(
        [
            ("f", "addr"),  # two columns in one block: the spelt-out path
            ("addr", "f"),
            ("f",),
            ("f", "addr", "g"),
        ]
    ),
)
def test_the_row_marker_delivers_what_the_references_do(
    rows: list[tuple[object, str]], key: str, fields: tuple[str, ...]
) -> None:
    """One digest per row for all its marked columns, the memo on second sight, the two-column
    path: every delivered value is `str(mark_value)` or `mark_text`, asked once, again and a third
    time, and whatever the row's values become between requests (equal values of another scale
    or type included)."""
    from policies.watermark import MarkedColumn, row_marker
    from policies.watermark_text import mark_text

    t = Decimal("0.01")
    layouts = [
        Layout.of([("f", False), ("addr", True), ("g", False)]),
        Layout.of([("addr", True), ("b", True), ("f", False), ("g", False)]),  # f, g in block 1
    ]
    for layout in layouts:
        columns = [MarkedColumn(f, None if f == "addr" else t, None if f == "addr" else str) for f in fields]
        mark = row_marker(SECRET, "hrss", "ds", columns, layout=layout)
        for number, text in rows * 3:
            values = tuple(text if f == "addr" else number for f in fields)
            expected = tuple(
                mark_text(text, SECRET, "hrss", "ds", f, key, layout=layout)
                if f == "addr"
                else str(mark_value(number, t, SECRET, "hrss", "ds", f, key, layout=layout))
                for f in fields
            )
            assert mark(key, values) == expected
        assert mark(key, tuple(None for _ in fields)) == tuple(None for _ in fields)
        assert mark(None, values) == tuple(
            v if f == "addr" else str(v) for f, v in zip(fields, values, strict=True)
        )


def test_one_marker_per_arguments_and_none_shared_across_them() -> None:
    """The planner asks for a marker per plan, i.e. per page a consumer asks for: the same
    arguments give the same marker (built once), and arguments that differ in anything the marks
    depend on — the key, the recipient, a tolerance's scale — give their own, with their own marks."""
    from policies.watermark import MarkedColumn, row_marker

    def columns(t: Decimal) -> list[MarkedColumn]:
        return [MarkedColumn("f", t, str), MarkedColumn("addr", None)]

    one = row_marker(SECRET, "hrss", "ds", columns(Decimal("0.01")))
    assert row_marker(SECRET, "hrss", "ds", columns(Decimal("0.01"))) is one
    others = [
        row_marker(bytes(range(1, 33)), "hrss", "ds", columns(Decimal("0.01"))),
        row_marker(SECRET, "samr", "ds", columns(Decimal("0.01"))),
        row_marker(SECRET, "hrss", "ds", columns(Decimal("0.010"))),  # equal, but another scale
    ]
    assert all(m is not one for m in others)
    for i in range(40):
        k, v = f"row{i}", Decimal("12.3")
        for secret, recipient, t, mark in (
            (SECRET, "hrss", Decimal("0.01"), one),
            (bytes(range(1, 33)), "hrss", Decimal("0.01"), others[0]),
            (SECRET, "samr", Decimal("0.01"), others[1]),
            (SECRET, "hrss", Decimal("0.010"), others[2]),
        ):
            layout = Layout.of([("f", False), ("addr", True)])
            expected = mark_value(v, t, secret, recipient, "ds", "f", k, layout=layout)
            for _ in range(3):  # first sight, remembered, from the memo
                assert mark(k, (v, None))[0] == str(expected)
