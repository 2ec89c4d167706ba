"""Text marks (数据水印, docs/watermark.md): keyed choices among equivalent representations.

A string field declared `watermark: {text: digit_width}` carries its marks in the width of its
runs of digits: each maximal run of ASCII or full-width digits (`390`, `３９０`) is one mark
position, and keyed PRF output (policies.watermark.run_bits: scheme v2, 20 bytes of the row's
digest at the field's slot; v1, the cell's own digest) decides for each of the first ten runs
whether it carries a bit and which: 0 =
half-width (ASCII) digits, 1 = full-width (U+FF10–U+FF19); runs past the tenth are never
marked. A run the PRF does not select is left as stored. The digits themselves never change, so
NFKC — Unicode's compatibility normalisation, which every address matcher applies — maps every
delivered variant back to the stored value, and a reader sees the same number.

Detection reads each run's width (a run of mixed widths reads as nothing) and scores it with
the numeric cells: under "not this recipient" a position's predicted bit is independent of the
width seen, so each selected position matches with probability ½, as for numbers.

It cannot survive normalisation: a leak passed through NFKC (or retyped) has every run
half-width, and reads as noise. Pure, no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Any

from policies.watermark import (
    DEFAULT_GAMMA,
    MAX_RUNS,
    SCHEME,
    Embed,
    Layout,
    column_marker,
    run_bits,
)

DIGIT_WIDTH = "digit_width"
TEXT_SCHEMES = (DIGIT_WIDTH,)
_RUN = re.compile(r"[0-9０-９]+")  # a run of mixed widths is one run, read as nothing
_SPLIT = re.compile(r"([0-9０-９]+)")
_FULL = str.maketrans("0123456789", "０１２３４５６７８９")
_HALF = str.maketrans("０１２３４５６７８９", "0123456789")
_WIDE: dict[str, str] = {}  # a short run of digits → its full-width form (text_embedder)


def position_field(field: str, i: int) -> str:
    """The name a mark position is keyed and counted under: one vote per run."""
    return f"{field}#{i}"


def normalise(text: str) -> str:
    """What a reader, and an address matcher, compares: the NFKC form."""
    return unicodedata.normalize("NFKC", text)


def mark_text(
    value: Any,
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
    """The string as delivered to `recipient`: each selected digit run in the width of its bit.
    The reference the planner's `text_marker` is tested against; `layout` as for cell_bit."""
    if not isinstance(value, str) or row_key is None:
        return value
    parts = _SPLIT.split(value)  # text, run, text, run, …, text
    if len(parts) == 1:
        return value
    bits = run_bits(secret, recipient, dataset, field, str(row_key), gamma, layout=layout, scheme=scheme)
    for i, bit in enumerate(bits[: len(parts) // 2]):
        if bit is not None:
            parts[2 * i + 1] = parts[2 * i + 1].translate(_FULL if bit else _HALF)
    return "".join(parts)


def read_text_bits(value: Any) -> list[int | None]:
    """The width of each digit run of a (possibly leaked) string: 0 half, 1 full, None mixed."""
    if not isinstance(value, str):
        return []
    bits: list[int | None] = []
    for m in _RUN.finditer(value):
        run = m.group(0)
        full = sum("０" <= c <= "９" for c in run)
        bits.append(1 if full == len(run) else 0 if full == 0 else None)
    return bits


def text_embedder(offset: int, threshold: int, then: Callable[[Any], Any] | None = None) -> Embed:
    """A text cell of scheme v2 as delivered, from the row's digest (its bytes from `offset`),
    followed by `then` if given: `then(mark_text(value, …))` (policies.watermark.row_marker)."""
    split = _SPLIT.split
    full = _WIDE
    end = 2 * MAX_RUNS + 1  # parts past it are runs past the tenth: never marked

    def embed(value: Any, h: bytes) -> Any:
        out = value
        if isinstance(value, str):
            parts = split(value)  # text, run, text, run, …, text
            n = len(parts)
            changed = False
            o = offset
            for i in range(1, n if n < end else end, 2):
                if h[o] < threshold:
                    run = parts[i]
                    if h[o + 1] & 1:
                        wide = full.get(run)
                        if wide is None:
                            wide = run.translate(_FULL)
                            if len(run) <= 4:  # house, floor, room numbers: at most 2 × 11,110 entries
                                full[run] = wide
                        parts[i] = wide
                        changed = True
                    elif not run.isascii():  # half-width already: translating would change nothing
                        parts[i] = run.translate(_HALF)
                        changed = True
                o += 2
            if changed:
                out = "".join(parts)
        return out if then is None else then(out)

    return embed


def text_marker(
    secret: bytes,
    recipient: str,
    dataset: str,
    field: str,
    gamma: float = DEFAULT_GAMMA,
    then: Callable[[Any], Any] | None = None,
    *,
    layout: Layout | None = None,
) -> Callable[[Any, Any], Any]:
    """`mark_text` (scheme v2) bound to one recipient's column, followed by `then` if given; the
    same values — policies.watermark.row_marker for this one column."""
    return column_marker(None, secret, recipient, dataset, field, gamma, then, layout=layout)
