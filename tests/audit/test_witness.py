"""ChainWitness: one unbroken run of what this process appended; it vouches only for segments it
saw appended whole, linked from the given start, and hands out rule facts only from the event
right after a cursor."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.audit.chain import GENESIS_HASH
from gateway.audit.witness import ChainWitness


def rows(first: int, n: int, prev: str) -> list[dict[str, Any]]:
    out = []
    for seq in range(first, first + n):
        out.append(
            {
                "seq": seq,
                "prev_hash": prev,
                "hash": f"h{seq}",
                "principal_id": "p",
                "principal_kind": "department",
                "consumer": "samr",
                "client_address": "10.0.0.1",
                "occurred_at": datetime(2026, 12, 1, tzinfo=UTC),
                "row_count": seq,
                "detail": "{}",
            }
        )
        prev = f"h{seq}"
    return out


def test_vouches_for_a_segment_appended_whole_from_its_start() -> None:
    w = ChainWitness()
    assert w.head is None and w.vouches((0, GENESIS_HASH), 1) is None
    w.appended(rows(1, 3, GENESIS_HASH))
    w.appended(rows(4, 2, "h3"))
    assert w.head == (5, "h5")
    assert w.vouches((0, GENESIS_HASH), 5) == "h5"
    assert w.vouches((2, "h2"), 4) == "h4"
    assert w.vouches((2, "forged"), 4) is None  # the start must link
    assert w.vouches((5, "h5"), 5) is None and w.vouches((3, "h3"), 9) is None  # empty or beyond


def test_a_batch_that_does_not_link_on_starts_a_new_run() -> None:
    w = ChainWitness()
    w.appended(rows(1, 3, GENESIS_HASH))
    w.appended(rows(7, 2, "x6"))  # another worker wrote 4..6
    assert w.head == (8, "h8")
    assert w.vouches((0, GENESIS_HASH), 8) is None  # 4..6 were not seen
    assert w.vouches((6, "x6"), 8) == "h8"  # from the link the new run starts at
    assert w.hash_at(3) is None
    assert w.facts_after(3, 10) is None  # events 4..6 must come from the database
    assert [f.seq for f in w.facts_after(6, 10) or []] == [7, 8]
    # a batch with the right seq but another prev_hash (the head was rewritten) also breaks the run
    w.appended(rows(9, 1, "not-h8"))
    assert w.vouches((6, "x6"), 9) is None and w.vouches((8, "not-h8"), 9) == "h9"


def test_facts_after_a_cursor_are_contiguous_bounded_and_dropped_once_evaluated() -> None:
    w = ChainWitness(max_facts=4)
    w.appended(rows(1, 6, GENESIS_HASH))
    assert w.facts_after(0, 10) is None  # 1 and 2 fell out of the bounded buffer
    got = w.facts_after(2, 3) or []
    assert [(f.seq, f.row_count, f.client_address) for f in got] == [
        (3, 3, "10.0.0.1"),
        (4, 4, "10.0.0.1"),
        (5, 5, "10.0.0.1"),
    ]
    assert [f.seq for f in w.facts_after(5, 10) or []] == [6]
    assert w.facts_after(2, 10) is None  # evaluated events are not kept
    assert w.facts_after(6, 10) is None  # nothing after the last one yet


def test_hashes_are_bounded_and_the_run_keeps_its_newest_end() -> None:
    w = ChainWitness(max_hashes=10)
    w.appended(rows(1, 25, GENESIS_HASH))
    assert w.head == (25, "h25") and w.hash_at(25) == "h25"
    assert w.hash_at(1) is None and w.vouches((0, GENESIS_HASH), 25) is None
    # trimmed to the newest half: seqs 21..25
    assert w.hash_at(20) is None and w.vouches((21, "h21"), 25) == "h25"
