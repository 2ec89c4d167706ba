"""The mark itself (policies.watermark): within tolerance, deterministic per recipient,
different between recipients, readable back; and the binomial tail it is judged by."""

from __future__ import annotations

import math
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from policies.watermark import (
    Cell,
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


@given(
    st.decimals(min_value=-(10**9), max_value=10**9, places=4, allow_nan=False, allow_infinity=False),
    st.text(min_size=1, max_size=20),
)
def test_the_column_marker_delivers_what_mark_value_does(value: Decimal, key: str) -> None:
    """The planner's per-column marker (HMAC state bound once) is mark_value, value for value."""
    from policies.watermark import column_marker

    mark = column_marker(Decimal("0.01"), SECRET, "hrss", "ds", "f")
    assert mark(value, key) == mark_value(value, Decimal("0.01"), SECRET, "hrss", "ds", "f", key)
    assert mark(None, key) is None and mark(value, None) == value


@given(
    st.text(alphabet=st.sampled_from(list("路号层0123456789０１２")), max_size=60),
    st.text(min_size=1, max_size=20),
)
def test_the_text_marker_delivers_what_mark_text_does(value: str, key: str) -> None:
    from policies.watermark_text import mark_text, text_marker

    assert text_marker(SECRET, "hrss", "ds", "addr")(value, key) == mark_text(
        value, SECRET, "hrss", "ds", "addr", key
    )
