"""Data watermarking (数据水印): a keyed mark in the least-significant part of numeric values.

Agrawal–Kiernan style (VLDB 2002), adapted: a keyed PRF — HMAC-SM3 under the gateway's watermark
secret — decides for each (recipient, dataset, row key, field) whether the cell carries a mark
(a fraction `gamma` of cells) and which bit. The value is moved to the nearest multiple of the
field's declared tolerance `t` whose parity (in units of `t`) is that bit, so a marked value
never leaves [v - t, v + t]. The mark depends only on the key, the recipient and the cell, so
asking again returns the same value: there is nothing to average.

Two schemes (docs/watermark.md, "The method"):

- `ak-parity-hmacsm3-v2` (new deliveries): ONE digest per (recipient, dataset, row key), shared by
  all the row's marked fields: each field reads its own bytes of it, at a slot fixed by the
  catalogue (`Layout`: the dataset's marked fields in name order, 2 bytes for a number, 20 for a
  text field; a 33rd byte starts a second digest, HMAC(… ‖ block 1 ‖ …)). Which fields a query
  selects does not change any slot. Disjoint bytes of one PRF output are independent, so every
  field (and every digit run) is still an independent vote.
- `ak-parity-hmacsm3-v1` (deliveries before it, still traced): one digest per cell, keyed by the
  field name too. The audit log records the scheme of every delivery (`watermark_id`).

Detection asks, for a candidate recipient, how many of the cells its PRF selects have the
parity its PRF predicts. Under "not this recipient" the predicted bit is independent of the
value seen, so each selected cell matches with probability ½ and the false-match probability
of k or more matches of n is the binomial tail Σ_{i≥k} C(n,i) 2⁻ⁿ.

Pure functions, no I/O; the secret is passed in and never returned or formatted.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as _field
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import lru_cache
from types import CodeType
from typing import Any

from keys.sm3 import PrefixedHmacSm3

SCHEME_V1 = "ak-parity-hmacsm3-v1"  # one digest per cell (deliveries before v2: traced only)
SCHEME_V2 = "ak-parity-hmacsm3-v2"  # one digest per row, sliced among its marked fields
SCHEME = SCHEME_V2  # what new deliveries carry
SCHEMES = (SCHEME_V2, SCHEME_V1)
DEFAULT_GAMMA = 0.5  # fraction of eligible cells that carry a bit


@dataclass(frozen=True, slots=True)
class MarkKey:
    """The secret and its public id. `repr` never shows the secret."""

    kid: str
    secret: bytes

    def __repr__(self) -> str:
        return f"MarkKey(kid={self.kid!r})"


def watermark_id(kid: str, recipient: str, scheme: str = SCHEME) -> str:
    """What the audit log records for a delivery: enough to re-derive the mark with the key."""
    return f"{scheme}:{kid}:{recipient}"


MAX_RUNS = 10  # text mark positions of one cell; runs past the tenth are never marked

# ---------------------------------------------------------------- scheme v2: one digest per row

BLOCK = 32  # bytes of one digest (SM3)
NUMBER_BYTES = 2  # a number: [selection byte, flags: bit 0 = the bit, bit 1 = step up]
TEXT_BYTES = 2 * MAX_RUNS  # a text field: per digit run [selection byte, bit byte]


@dataclass(frozen=True, slots=True)
class Layout:
    """Where each marked field of one dataset reads its bytes of the row's PRF output (v2).

    Fixed by the catalogue alone — the dataset's marked fields (number or text), in name order,
    packed into 32-byte blocks (a field never straddles two) — so a delivery and a trace agree,
    and a query asking for one field marks it exactly as one asking for all. A field whose slot
    lies in block j costs digest j of the row, computed once per row whichever fields ask."""

    slots: tuple[tuple[str, int, int], ...]  # (field, block, offset within the block)
    index: dict[str, tuple[int, int]] = _field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {name: (block, offset) for name, block, offset in self.slots})

    @classmethod
    def of(cls, fields: Iterable[tuple[str, bool]]) -> Layout:
        """From the dataset's marked fields as (name, is a text mark); one object per field set."""
        return _layout_of(tuple(sorted(set(fields))))

    def slot(self, field: str) -> tuple[int, int] | None:
        return self.index.get(field)


@lru_cache(maxsize=1024)
def _layout_of(fields: tuple[tuple[str, bool], ...]) -> Layout:
    out: list[tuple[str, int, int]] = []
    block = used = 0
    for name, text in fields:
        size = TEXT_BYTES if text else NUMBER_BYTES
        if used + size > BLOCK:
            block, used = block + 1, 0
        out.append((name, block, used))
        used += size
    return Layout(tuple(out))


def _slot(layout: Layout | None, field: str, text: bool) -> tuple[int, int]:
    """The field's slot; without a layout, the field taken as its dataset's only marked one."""
    slot = (layout or Layout.of([(field, text)])).slot(field)
    if slot is None:
        raise ValueError(f"{field} has no slot in the dataset's watermark layout")
    return slot


@lru_cache(maxsize=4096)
def _row_state(secret: bytes, recipient: str, dataset: str, block: int) -> PrefixedHmacSm3:
    return PrefixedHmacSm3(secret, "\x00".join((SCHEME_V2, recipient, dataset, str(block), "")).encode())


def row_prf(secret: bytes, recipient: str, dataset: str, row_key: str, block: int = 0) -> bytes:
    """= HMAC-SM3(secret, SCHEME_V2 ‖ 0 ‖ recipient ‖ 0 ‖ dataset ‖ 0 ‖ block ‖ 0 ‖ row key)."""
    return _row_state(secret, recipient, dataset, block).digest(row_key.encode())


# ---------------------------------------------------------------- scheme v1: one digest per cell


@lru_cache(maxsize=4096)
def _keyed(secret: bytes, recipient: str, dataset: str, field: str) -> PrefixedHmacSm3:
    """The v1 HMAC state for one recipient's column."""
    return PrefixedHmacSm3(secret, "\x00".join((SCHEME_V1, recipient, dataset, field, "")).encode())


def _prf(secret: bytes, recipient: str, dataset: str, field: str, row_key: str) -> bytes:
    # = HMAC-SM3(secret, SCHEME_V1 ‖ 0 ‖ recipient ‖ 0 ‖ dataset ‖ 0 ‖ field ‖ 0 ‖ row key)
    return _keyed(secret, recipient, dataset, field).digest(row_key.encode())


# ---------------------------------------------------------------- a cell's bits, either scheme
# What differs between the schemes is where a cell's bytes come from (`_bytes`) and, for a
# number, how the selection is read (`_number`); a text position is [selection, bit] at a stride
# of 3 bytes (v1) or 2 (v2). v2's delivery path (`row_marker`) reads the same bytes of the same
# digest; it is tested value for value against these.

_STRIDE = {SCHEME_V1: 3, SCHEME_V2: 2}


def _bytes(
    secret: bytes,
    recipient: str,
    dataset: str,
    field: str,
    row_key: str,
    layout: Layout | None,
    scheme: str,
    text: bool,
) -> tuple[bytes, int]:
    """The PRF output a cell reads, and where its bytes start."""
    if scheme == SCHEME_V1:
        return _prf(secret, recipient, dataset, field, row_key), 0
    block, offset = _slot(layout, field, text)
    return row_prf(secret, recipient, dataset, row_key, block), offset


def _number(h: bytes, o: int, gamma: float, scheme: str) -> tuple[int, bool] | None:
    """(bit, step up) of a numeric cell from its bytes, or None when it is not marked."""
    if scheme == SCHEME_V1:  # a 4-byte fraction, then a bit byte and a step byte
        chosen, bit, up = int.from_bytes(h[:4], "big") / 2**32 < gamma, h[4] & 1, bool(h[5] & 1)
    else:  # a selection byte, then one flags byte
        chosen, bit, up = h[o] < int(256 * gamma), h[o + 1] & 1, bool(h[o + 1] & 2)
    return (bit, up) if chosen else None


def _cell(
    secret: bytes,
    recipient: str,
    dataset: str,
    field: str,
    row_key: str,
    gamma: float,
    layout: Layout | None,
    scheme: str,
) -> tuple[int, bool] | None:
    """(bit, step up) of a numeric cell, or None when the cell is not marked."""
    h, o = _bytes(secret, recipient, dataset, field, row_key, layout, scheme, False)
    return _number(h, o, gamma, scheme)


def run_bits(
    secret: bytes,
    recipient: str,
    dataset: str,
    field: str,
    row_key: str,
    gamma: float = DEFAULT_GAMMA,
    *,
    layout: Layout | None = None,
    scheme: str = SCHEME,
) -> list[int | None]:
    """The bits of a text cell's first MAX_RUNS mark positions (policies.watermark_text), all from
    one PRF output. v2: position i is marked when byte offset+2i of the row's digest, as a
    fraction of 256, is below γ, and carries bit (byte offset+2i+1) & 1. v1: the cell's own
    digest, bytes 3i and 3i+1."""
    threshold = int(256 * gamma)
    h, o = _bytes(secret, recipient, dataset, field, row_key, layout, scheme, True)
    s = _STRIDE[scheme]
    return [(h[o + s * i + 1] & 1) if h[o + s * i] < threshold else None for i in range(MAX_RUNS)]


def cell_bit(
    secret: bytes,
    recipient: str,
    dataset: str,
    field: str,
    row_key: str,
    gamma: float = DEFAULT_GAMMA,
    *,
    layout: Layout | None = None,
    scheme: str = SCHEME,
) -> int | None:
    """The bit this cell carries for this recipient, or None when the cell is not marked. A text
    mark position is named `field#i` (policies.watermark_text.position_field): run i's bit.
    v2 needs the dataset's `layout` (without one: the field as its dataset's only marked one);
    a field the layout does not hold is not marked."""
    name, sep, run = field.partition("#")
    if scheme != SCHEME_V1 and layout is not None and layout.slot(name) is None:
        return None
    if sep:
        i = int(run)
        if i >= MAX_RUNS:
            return None
        return run_bits(secret, recipient, dataset, name, row_key, gamma, layout=layout, scheme=scheme)[i]
    hit = _cell(secret, recipient, dataset, field, row_key, gamma, layout, scheme)
    return None if hit is None else hit[0]


# ---------------------------------------------------------------- embedding


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
    *,
    layout: Layout | None = None,
    scheme: str = SCHEME,
) -> Any:
    """The value as delivered to `recipient`: marked if the PRF selects the cell, else as is.
    The reference the planner's `column_marker` is tested against; `layout` as for cell_bit."""
    if value is None or row_key is None:
        return value
    hit = _cell(secret, recipient, dataset, field, str(row_key), gamma, layout, scheme)
    if hit is None:
        return value
    return embed_bit(value, tolerance, *hit)


_FAST_LIMIT = 10**12  # below it, the Decimal arithmetic of embed_bit is exact: integers give the same


def _embed_scaled(
    text: str, t_coef: int, t_exp: int, bit: int, up: int, grids: dict[int, tuple[int, int, int]]
) -> tuple[int, int] | None:
    """`embed_bit` for a non-negative Decimal given as `str(value)`, in integers: the value is
    c·10^e, the tolerance t_coef·10^t_exp, both counted in units of 10^min(e, t_exp). The
    result as (coefficient, exponent) — the same value and exponent as embed_bit's, so the same
    str — or None to let embed_bit decide (a sign, an exponent in the text, numbers too long for
    the bound). `grids` remembers, per value exponent e, (low, value scale 10^(e-low), tolerance
    in units of 10^low)."""
    point = text.find(".")
    digits = text if point < 0 else text[:point] + text[point + 1 :]
    if not digits.isascii() or not digits.isdigit():
        return None
    exp = 0 if point < 0 else point + 1 - len(text)
    grid = grids.get(exp)
    if grid is None:
        low = min(exp, t_exp)
        grid = grids[exp] = (low, 10 ** (exp - low), t_coef * 10 ** (t_exp - low))
    low, scale, b = grid
    a = int(digits) * scale  # the value, in units of 10^low
    if a >= _FAST_LIMIT or b >= _FAST_LIMIT:
        return None
    lo, rest = divmod(a, b)
    if lo % 2 == bit:
        n = lo
    elif rest:  # between two grid points: the one above has the parity wanted
        n = lo + 1
    else:  # on the grid with the wrong parity: one unit up or down
        n = lo + 1 if up else lo - 1
    return n * b, low


def _decimal_text(coef: int, exp: int) -> str | None:
    """`str(Decimal(f"{coef}E{exp}"))` for exp <= 0, without building the Decimal: the digits with
    the point put in (Python's Decimal.__str__, non-scientific case), or None when Decimal would
    write an exponent (more than six zeros after the point)."""
    digits = str(-coef if coef < 0 else coef)
    left = exp + len(digits)
    if left <= -6:
        return None
    if exp == 0:
        body = digits
    elif left <= 0:
        body = "0." + "0" * -left + digits
    else:
        body = digits[:left] + "." + digits[left:]
    return "-" + body if coef < 0 else body


Embed = Callable[[Any, bytes], Any]  # (stored value, the row's digest) → delivered value


def _number_embedder(
    tolerance: Decimal, offset: int, threshold: int, then: Callable[[Any], Any] | None
) -> Embed:
    """A numeric cell of scheme v2 as delivered, from the row's digest, followed by `then`:
    `then(mark_value(value, …))`. A non-negative Decimal on a power-of-ten-sized grid moves in
    integer arithmetic (`_embed_scaled`) and, when `then` is `str` (a Decimal field's
    stringification), is written out as text directly."""
    flags = offset + 1
    sign, t_digits, t_exp = tolerance.as_tuple()
    scaled = (
        not sign and isinstance(t_exp, int) and tolerance.is_finite() and tolerance > 0 and len(t_digits) < 12
    )
    t_coef = int("".join(map(str, t_digits))) if scaled else 0
    t_int = t_exp if isinstance(t_exp, int) else 0
    as_str = then is str
    # the commonest case, a Decimal column of the tolerance's own scale (numeric(…, 2) with ± 0.01):
    # the value is on the grid, its parity that of its last digit, a step one unit changes that
    # digit alone unless it carries — done on the text (`places`: the tolerance's decimals)
    places = -t_int if scaled and t_coef == 1 and t_int <= 0 else -1
    point_at = -places - 1
    grids: dict[int, tuple[int, int, int]] = {}

    def embed(value: Any, h: bytes) -> Any:
        if h[offset] >= threshold:  # not marked: as stored
            return value if then is None else then(value)
        f = h[flags]
        bit, up = f & 1, f & 2
        if value.__class__ is Decimal and scaled:
            seen = str(value)
            if (
                as_str
                and places >= 0
                and seen.isascii()
                and (
                    seen[point_at : point_at + 1] == "." and seen.replace(".", "", 1).isdigit()
                    if places
                    else seen.isdigit()
                )
            ):
                last = seen[-1]
                if ord(last) & 1 == bit:  # right parity ("0" is code 48): as it came
                    return seen
                if up and last != "9":  # one unit up, no carry
                    return seen[:-1] + chr(ord(last) + 1)
                if not up and last != "0":  # one unit down, no borrow
                    return seen[:-1] + chr(ord(last) - 1)
            moved = _embed_scaled(seen, t_coef, t_int, bit, up, grids)
            if moved is not None:
                if as_str and (text := _decimal_text(*moved)) is not None:
                    return text
                out = Decimal(f"{moved[0]}E{moved[1]}")
                return out if then is None else then(out)
        out = embed_bit(value, tolerance, bit, bool(up))
        return out if then is None else then(out)

    return embed


@dataclass(frozen=True, slots=True)
class MarkedColumn:
    """One marked column of a delivery: its field, its tolerance (None: a text mark,
    policies.watermark_text), and the stringification that follows the mark."""

    field: str
    tolerance: Decimal | None
    then: Callable[[Any], Any] | None = None


# Rows remembered per process, for hot rows (a consumer paging the same rows again):
# (marker, row key) → (the delivered values, then the stored values' str and types). The marker is a
# token per marker built (one per set of `row_marker`'s arguments: secret, recipient, dataset,
# columns, γ, layout), never reused for other arguments, so one recipient's marks can never
# answer for another's, nor a retired key's for the current one. Types and str tell apart values
# that compare equal but are delivered differently (Decimal('1.0') and Decimal('1.00'): str keeps
# the scale; True and 1: the type). A row's first sight leaves only a placeholder (`_FIRST`): a
# page read once costs one dict insertion a row; its second sight is remembered. At most
# MEMO_ROWS entries (≈ 20 MB with the demo's two marked cells a row); full, it is emptied and
# fills again.
MEMO_ROWS = 32768
_FIRST: tuple[Any, ...] = ()
_memo: dict[tuple[int, str], tuple[Any, ...]] = {}
_tokens = itertools.count()


RowMarker = Callable[[Any, tuple[Any, ...]], tuple[Any, ...]]  # (row key, values) → delivered values


# The row marker's body, generated per shape (how many columns, which block each reads) like the
# planner's shaper: the values unpacked into locals and each column's embedder called directly, no
# loop and no tuple built per step — in CPython that halves what a row costs around its digest.
# Only names are substituted: v{i} (a value), s{i} (its str), e{i} (its embedder), h{j}/d{j} (a
# block's digest and digest function).
_ROW_MARKER = """
def mark(row_key, values):
    if row_key is None:  # nothing to key the mark on: as stored
        return unmarked(values)
    key = row_key if row_key.__class__ is str else str(row_key)
    slot = (token, key)
    hit = remembered(slot)
    {unpack} = values
    if hit is None:  # first sight: only remember that it was seen
        if len(memo) >= module.MEMO_ROWS:
            memo.clear()
        memo[slot] = FIRST
        kb = key.encode()
        {digests}
        return ({delivered},)
    {texts}
    if hit is not FIRST and {same}:
        return hit[0]
    kb = key.encode()  # seen again (or its values changed): remember it
    {digests}
    out = ({delivered},)
    memo[slot] = (out, {exact})
    return out
"""


@lru_cache(maxsize=256)
def _compiled(source: str) -> CodeType:
    """The row marker's code, compiled once per shape: `compile` costs ≈ 0.3 ms, more than marking
    a 100-row page, and the source holds only indexes, so a handful of shapes cover every dataset
    and recipient. Each marker gets its own `env` (token, digests, embedders)."""
    return compile(source, "<shuqiao-row-marker>", "exec")


def row_marker(
    secret: bytes,
    recipient: str,
    dataset: str,
    columns: Sequence[MarkedColumn],
    gamma: float = DEFAULT_GAMMA,
    *,
    layout: Layout | None = None,
) -> RowMarker:
    """Scheme v2 for one recipient's marked columns of a dataset, a row at a time:
    `mark(row key, (value, …))` is, column for column, `then(mark_value(…))` for a number and
    `then(mark_text(…))` for a text (the same values: property-tested, pinned for a fixed key);
    a None value stays None, a row without a key is delivered unmarked (stringified). Per row
    one HMAC-SM3 per block of the layout the columns read (one for every dataset of the demo), or
    none for a hot row (`_memo`). `layout`: the dataset's (without one: these columns as its only
    marked fields).

    One marker per set of arguments, kept (`_markers`): the planner asks for one per plan, and
    a plan is built per query *and variables*, so a consumer paging with new cursors asks for the
    same marker every request — building it (its embedders, its generated body) cost more than
    marking the page. Same arguments, same marks: sharing it, and its memo token, changes no value."""
    columns = tuple(columns)
    layout = layout or Layout.of((c.field, c.tolerance is None) for c in columns)
    # a tolerance's str too: Decimal("0.01") == Decimal("0.010"), but the marks keep its scale
    key = (secret, recipient, dataset, columns, tuple(str(c.tolerance) for c in columns), gamma, layout)
    mark = _markers.get(key)
    if mark is None:
        if len(_markers) >= MARKERS:
            _markers.clear()
        mark = _markers[key] = _row_marker(secret, recipient, dataset, columns, gamma, layout)
    return mark


MARKERS = 1024  # markers kept (a few per recipient and dataset); full, emptied
_markers: dict[tuple[Any, ...], RowMarker] = {}


def _row_marker(
    secret: bytes,
    recipient: str,
    dataset: str,
    columns: tuple[MarkedColumn, ...],
    gamma: float,
    layout: Layout,
) -> RowMarker:
    import sys

    from policies.watermark_text import text_embedder  # it builds on this module

    slots = [_slot(layout, c.field, c.tolerance is None) for c in columns]
    blocks = sorted({block for block, _ in slots})
    threshold = int(256 * gamma)
    thens = [c.then for c in columns]

    def unmarked(values: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple([v if t is None or v is None else t(v) for t, v in zip(thens, values, strict=True)])

    env: dict[str, Any] = {
        "token": next(_tokens),
        "memo": _memo,
        "remembered": _memo.get,
        "module": sys.modules[__name__],
        "FIRST": _FIRST,
        "unmarked": unmarked,
    }
    for j, block in enumerate(blocks):
        env[f"d{j}"] = _row_state(secret, recipient, dataset, block).digest
    for i, (c, (_, offset)) in enumerate(zip(columns, slots, strict=True)):
        env[f"e{i}"] = (
            text_embedder(offset, threshold, c.then)
            if c.tolerance is None
            else _number_embedder(c.tolerance, offset, threshold, c.then)
        )
    n = len(columns)
    source = _ROW_MARKER.format(
        unpack="".join(f"v{i}, " for i in range(n)),
        digests="; ".join(f"h{j} = d{j}(kb)" for j in range(len(blocks))),
        delivered=", ".join(
            f"None if v{i} is None else e{i}(v{i}, h{blocks.index(block)})"
            for i, (block, _) in enumerate(slots)
        ),
        texts="; ".join(f"s{i} = v{i} if v{i}.__class__ is str else str(v{i})" for i in range(n)),
        same=" and ".join(
            [f"hit[{1 + i}] == s{i}" for i in range(n)]
            + [f"hit[{1 + n + i}] is v{i}.__class__" for i in range(n)]
        ),
        exact=", ".join([f"s{i}" for i in range(n)] + [f"v{i}.__class__" for i in range(n)]),
    )
    exec(_compiled(source), env)  # noqa: S102 - generated from indexes only
    mark: RowMarker = env["mark"]
    return mark


def column_marker(
    tolerance: Decimal | None,
    secret: bytes,
    recipient: str,
    dataset: str,
    field: str,
    gamma: float = DEFAULT_GAMMA,
    then: Callable[[Any], Any] | None = None,
    *,
    layout: Layout | None = None,
) -> Callable[[Any, Any], Any]:
    """`mark_value` (scheme v2) bound to one recipient's column, followed by `then` if given:
    `then(mark_value(value, …))` — `row_marker` for this one column; `tolerance` None: a text
    column (`mark_text`, policies.watermark_text.text_marker)."""
    column = MarkedColumn(field, tolerance, then)
    rows = row_marker(secret, recipient, dataset, [column], gamma, layout=layout)

    def mark(value: Any, row_key: Any) -> Any:
        if value is None:
            return value if then is None else then(value)
        return rows(row_key, (value,))[0]

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
    scheme: str = SCHEME

    def as_dict(self) -> dict[str, Any]:
        return {
            "recipient": self.recipient,
            "kid": self.kid,
            "scheme": self.scheme,
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
    *,
    layouts: Mapping[str, Layout] | None = None,
    schemes: Mapping[str, Sequence[str]] | None = None,
) -> list[Score]:
    """Every (recipient, key, scheme) scored on the observed cells, most likely first.

    `layouts`: each dataset's v2 layout (from the catalogue; a dataset without one: each field
    as its only marked one). `schemes`: per key id, the schemes its deliveries were made under
    (what the audit log records); a key not listed is tried under the current scheme only.
    Every (recipient, key, scheme) tried counts as a hypothesis in the Bonferroni factor.

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
    layouts = layouts or {}
    hypotheses = [
        (r, key, scheme)
        for key in keys
        for scheme in (schemes or {}).get(key.kid, (SCHEME,))
        for r in recipients
    ]
    out: list[Score] = []
    for recipient, key, scheme in hypotheses:
        n = m = 0
        for (dataset, field, row_key), seen in votes:
            bit = cell_bit(
                key.secret,
                recipient,
                dataset,
                field,
                row_key,
                gamma,
                layout=layouts.get(dataset),
                scheme=scheme,
            )
            if bit is None:
                continue
            n += 1
            m += bit == seen
        p = binomial_tail(m, n)
        out.append(Score(recipient, key.kid, n, m, p, min(1.0, p * max(1, len(hypotheses))), scheme))
    out.sort(key=lambda s: (s.p_value, -s.matches, s.recipient, s.scheme))
    return out
