"""Data watermarking (数据水印): a keyed mark in the least-significant part of numeric values.

Agrawal–Kiernan style (VLDB 2002), adapted: for each (recipient, dataset, row key, field) a
keyed PRF — HMAC-SM3 under the gateway's watermark secret — decides whether the cell carries a
mark (a fraction `gamma` of cells) and which bit. The value is moved to the nearest multiple
of the field's declared tolerance `t` whose parity (in units of `t`) is that bit, so a marked
value never leaves [v - t, v + t]. The mark depends only on the key, the recipient and the
cell, so asking again returns the same value: there is nothing to average.

Detection asks, for a candidate recipient, how many of the cells its PRF selects have the
parity its PRF predicts. Under "not this recipient" the predicted bit is independent of the
value seen, so each selected cell matches with probability ½ and the false-match probability
of k or more matches of n is the binomial tail Σ_{i≥k} C(n,i) 2⁻ⁿ.

Pure functions, no I/O; the secret is passed in and never returned or formatted.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from keys.sm3 import PrefixedHmacSm3

SCHEME = "ak-parity-hmacsm3-v1"
DEFAULT_GAMMA = 0.5  # fraction of eligible cells that carry a bit


@dataclass(frozen=True, slots=True)
class MarkKey:
    """The secret and its public id. `repr` never shows the secret."""

    kid: str
    secret: bytes

    def __repr__(self) -> str:
        return f"MarkKey(kid={self.kid!r})"


def watermark_id(kid: str, recipient: str) -> str:
    """What the audit log records for a delivery: enough to re-derive the mark with the key."""
    return f"{SCHEME}:{kid}:{recipient}"


@lru_cache(maxsize=4096)
def _keyed(secret: bytes, recipient: str, dataset: str, field: str) -> PrefixedHmacSm3:
    """The HMAC state for one recipient's column: hashed once, reused for every row."""
    return PrefixedHmacSm3(secret, "\x00".join((SCHEME, recipient, dataset, field, "")).encode())


def _prf(secret: bytes, recipient: str, dataset: str, field: str, row_key: str) -> bytes:
    # = HMAC-SM3(secret, SCHEME ‖ 0 ‖ recipient ‖ 0 ‖ dataset ‖ 0 ‖ field ‖ 0 ‖ row key)
    return _keyed(secret, recipient, dataset, field).digest(row_key.encode())


def _cell(
    secret: bytes, recipient: str, dataset: str, field: str, row_key: str, gamma: float
) -> tuple[int, bool] | None:
    h = _prf(secret, recipient, dataset, field, row_key)
    if int.from_bytes(h[:4], "big") / 2**32 >= gamma:
        return None
    return h[4] & 1, bool(h[5] & 1)


MAX_RUNS = 10  # text mark positions one PRF output serves (3 of its 32 bytes each)


def run_bits(
    secret: bytes, recipient: str, dataset: str, field: str, row_key: str, gamma: float = DEFAULT_GAMMA
) -> list[int | None]:
    """The bits of a text cell's first MAX_RUNS mark positions (policies.watermark_text), all from
    one PRF output: position i is marked when byte 3i, as a fraction of 256, is below γ, and
    carries bit (byte 3i+1) & 1. One HMAC per cell, however many runs of digits it has."""
    h = _prf(secret, recipient, dataset, field, row_key)
    threshold = int(256 * gamma)
    return [(h[3 * i + 1] & 1) if h[3 * i] < threshold else None for i in range(MAX_RUNS)]


def cell_bit(
    secret: bytes, recipient: str, dataset: str, field: str, row_key: str, gamma: float = DEFAULT_GAMMA
) -> int | None:
    """The bit this cell carries for this recipient, or None when the cell is not marked. A text
    mark position is named `field#i` (policies.watermark_text.position_field): run i's bit."""
    name, sep, run = field.partition("#")
    if sep:
        i = int(run)
        return run_bits(secret, recipient, dataset, name, row_key, gamma)[i] if i < MAX_RUNS else None
    hit = _cell(secret, recipient, dataset, field, row_key, gamma)
    return None if hit is None else hit[0]


def _as_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            d = Decimal(value.strip().replace(",", ""))
        except InvalidOperation:
            return None
        return d if d.is_finite() else None
    return None


def embed_bit(value: Any, tolerance: Decimal, bit: int, up: bool = False) -> Any:
    """`value` moved to the nearest multiple of `tolerance` whose unit count has parity `bit`;
    never further than `tolerance` from `value`. A value on the grid with the wrong parity
    steps one unit up or down as `up` says (keyed, so the marks add no bias on average).
    Keeps the value's Python type (and a Decimal's scale, unless the tolerance is finer)."""
    d = _as_decimal(value)
    if d is None:
        return value
    units = d / tolerance
    lo = units.to_integral_value(rounding=ROUND_FLOOR)
    if lo == units:  # on the grid: keep it, or step one unit
        n = lo if int(lo) % 2 == bit else lo + 1 if up else lo - 1
    else:  # between two grid points: one of them has the parity wanted, both are within t
        n = lo if int(lo) % 2 == bit else lo + 1
    marked = n * tolerance
    if isinstance(value, int):
        return int(marked)
    if isinstance(value, float):
        return float(marked)
    if isinstance(value, Decimal):
        exponent = min(value.as_tuple().exponent, tolerance.as_tuple().exponent)
        return marked.quantize(Decimal(1).scaleb(int(exponent)))
    return str(marked)


def read_bit(value: Any, tolerance: Decimal) -> int | None:
    """The parity a (possibly leaked) value shows in units of `tolerance`; None if unreadable."""
    d = _as_decimal(value)
    if d is None:
        return None
    return int((d / tolerance).to_integral_value(rounding=ROUND_HALF_EVEN)) % 2


def mark_value(
    value: Any,
    tolerance: Decimal,
    secret: bytes,
    recipient: str,
    dataset: str,
    field: str,
    row_key: Any,
    gamma: float = DEFAULT_GAMMA,
) -> Any:
    """The value as delivered to `recipient`: marked if the PRF selects the cell, else as is."""
    if value is None or row_key is None:
        return value
    hit = _cell(secret, recipient, dataset, field, str(row_key), gamma)
    if hit is None:
        return value
    return embed_bit(value, tolerance, *hit)


# Delivered cells remembered per process, for hot rows (a consumer paging the same rows again):
# (column, row key) → (type, exact form of the stored value, delivered value). The column is a
# token per marker, never reused, so one recipient's marks can never answer for another's, nor a
# retired key's for the current one. The exact form tells apart values that compare equal but are
# delivered differently (Decimal('1.0') and Decimal('1.00'): str keeps the scale; True and 1:
# the type). At most MEMO_CELLS entries (≈ 20 MB); full, it is emptied and fills again.
MEMO_CELLS = 65536
_memo: dict[tuple[int, str], tuple[type, Any, Any]] = {}
_columns = itertools.count()


_FAST_LIMIT = 10**12  # below it, the Decimal arithmetic of embed_bit is exact: integers give the same


def _embed_scaled(text: str, t_coef: int, t_exp: int, bit: int, up: bool) -> Decimal | None:
    """`embed_bit` for a non-negative Decimal given as `str(value)`, in integers: the value is
    c·10^e, the tolerance t_coef·10^t_exp, both counted in units of 10^min(e, t_exp). The same
    result as embed_bit (same value, same exponent, so the same str), or None to let embed_bit
    decide (a sign, an exponent in the text, numbers too long for the bound)."""
    point = text.find(".")
    digits = text if point < 0 else text[:point] + text[point + 1 :]
    if not digits.isascii() or not digits.isdigit():
        return None
    exp = 0 if point < 0 else point + 1 - len(text)
    low = min(exp, t_exp)
    a = int(digits) * 10 ** (exp - low)  # the value, in units of 10^low
    b = t_coef * 10 ** (t_exp - low)  # the tolerance, in the same units
    if a >= _FAST_LIMIT or b >= _FAST_LIMIT:
        return None
    lo, rest = divmod(a, b)
    if lo % 2 == bit:
        n = lo
    elif rest:  # between two grid points: the one above has the parity wanted
        n = lo + 1
    else:  # on the grid with the wrong parity: one unit up or down
        n = lo + 1 if up else lo - 1
    return Decimal(f"{n * b}E{low}")


def column_marker(
    tolerance: Decimal,
    secret: bytes,
    recipient: str,
    dataset: str,
    field: str,
    gamma: float = DEFAULT_GAMMA,
    then: Callable[[Any], Any] | None = None,
) -> Callable[[Any, Any], Any]:
    """`mark_value` bound to one recipient's column, for the rows of a delivery, followed by
    `then` (the planner's stringification) if given: `then(mark_value(value, …))`, the same
    values (property-tested, and pinned for a fixed key). Per row: a hot row's delivered value
    is remembered (`_memo`); otherwise one digest of the HMAC state set up once, and a
    non-negative Decimal on a power-of-ten-sized grid is moved in integer arithmetic."""
    digest = _keyed(secret, recipient, dataset, field).digest
    threshold = gamma * 2**32
    column = next(_columns)
    memo = _memo
    sign, t_digits, t_exp = tolerance.as_tuple()
    scaled = (
        not sign and isinstance(t_exp, int) and tolerance.is_finite() and tolerance > 0 and len(t_digits) < 12
    )
    t_coef = int("".join(map(str, t_digits))) if scaled else 0
    t_int = t_exp if isinstance(t_exp, int) else 0

    def mark(value: Any, row_key: Any) -> Any:
        if value is None or row_key is None:
            return value if then is None else then(value)
        kind = type(value)
        seen = str(value) if kind is Decimal else repr(value) if kind is float else value
        key = str(row_key)
        slot = (column, key)
        hit = memo.get(slot)
        if hit is not None and hit[0] is kind and hit[1] == seen:
            return hit[2]
        h = digest(key.encode())
        if int.from_bytes(h[:4], "big") >= threshold:
            out = value
        else:
            fast = (
                _embed_scaled(seen, t_coef, t_int, h[4] & 1, bool(h[5] & 1))
                if scaled and kind is Decimal
                else None
            )
            out = embed_bit(value, tolerance, h[4] & 1, bool(h[5] & 1)) if fast is None else fast
        if then is not None:
            out = then(out)
        if len(memo) >= MEMO_CELLS:
            memo.clear()
        memo[slot] = (kind, seen, out)
        return out

    return mark


# ---------------------------------------------------------------- detection


def binomial_tail(k: int, n: int) -> float:
    """P[X ≥ k] for X ~ Binomial(n, ½): the chance of k or more matches by luck."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    # exact integer arithmetic, then one division: no underflow for n in the thousands
    total = sum(math.comb(n, i) for i in range(k, n + 1))
    return float(Decimal(total) / (Decimal(2) ** n))


@dataclass(frozen=True, slots=True)
class Cell:
    """One observed value of a marked field in a leak: a number read in units of `tolerance`, or
    (a text mark position, policies.watermark_text, `tolerance` None) the bit already read."""

    dataset: str
    field: str
    row_key: str
    value: Any
    tolerance: Decimal | None
    bit: int | None = None

    def read(self) -> int | None:
        return self.bit if self.tolerance is None else read_bit(self.value, self.tolerance)


@dataclass(frozen=True, slots=True)
class Score:
    recipient: str
    kid: str
    marked: int  # distinct cells this recipient's PRF selects among those observed
    matches: int
    p_value: float  # false-match probability for this one recipient
    p_adjusted: float  # times the number of hypotheses tried (Bonferroni), at most 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "recipient": self.recipient,
            "kid": self.kid,
            "marked_cells": self.marked,
            "matching_bits": self.matches,
            "false_match_probability": self.p_value,
            "false_match_probability_adjusted": self.p_adjusted,
        }


def score(
    cells: Iterable[Cell],
    recipients: Iterable[str],
    keys: Iterable[MarkKey],
    gamma: float = DEFAULT_GAMMA,
) -> list[Score]:
    """Every (recipient, key) scored on the observed cells, most likely first.

    Several rows with the same key and field (a person's monthly records) carry the same bit,
    so they are one vote: the majority parity of the group, ties dropped. Counting them
    separately would make the binomial tail lie."""
    groups: dict[tuple[str, str, str], list[int]] = {}
    for c in cells:
        b = c.read()
        if b is not None and c.row_key:
            groups.setdefault((c.dataset, c.field, c.row_key), []).append(b)
    votes: list[tuple[tuple[str, str, str], int]] = []
    for k, bits in groups.items():
        ones = sum(bits)
        if ones * 2 != len(bits):
            votes.append((k, 1 if ones * 2 > len(bits) else 0))
    pairs = [(r, key) for key in keys for r in recipients]
    out: list[Score] = []
    for recipient, key in pairs:
        n = m = 0
        for (dataset, field, row_key), seen in votes:
            bit = cell_bit(key.secret, recipient, dataset, field, row_key, gamma)
            if bit is None:
                continue
            n += 1
            m += bit == seen
        p = binomial_tail(m, n)
        out.append(Score(recipient, key.kid, n, m, p, min(1.0, p * max(1, len(pairs)))))
    out.sort(key=lambda s: (s.p_value, -s.matches, s.recipient))
    return out
