"""The alert-handling state machine, exhaustively: every state × action × kind of input, against a
table written out here by hand (not derived from the module's own TRANSITIONS)."""

from __future__ import annotations

import itertools

import pytest

from policies.alert_handling import (
    ACTIONS,
    CLOSE_REASONS,
    MAX_TEXT,
    STATES,
    AlertAction,
    Outcome,
    Refusal,
    decide,
)

# state -> action -> state after a well-formed action (None: refused with 409)
EXPECTED = {
    "open": {"acknowledge": "acknowledged", "assign": "assigned", "comment": "open", "close": "closed"},
    "acknowledged": {"acknowledge": None, "assign": "assigned", "comment": "acknowledged", "close": "closed"},
    "assigned": {"acknowledge": None, "assign": "assigned", "comment": "assigned", "close": "closed"},
    "closed": {"acknowledge": None, "assign": None, "comment": "closed", "close": None},
}


def well_formed(action: str) -> AlertAction:
    return AlertAction(action, comment="夜间批处理，已报备", assignee="officer-b", reason="resolved")


@pytest.mark.parametrize(("state", "action"), list(itertools.product(STATES, ACTIONS)))
def test_every_state_and_action(state: str, action: str) -> None:
    result = decide(state, "officer-a", well_formed(action))
    after = EXPECTED[state][action]
    if after is None:
        assert isinstance(result, Refusal) and (result.status, result.code) == (409, "CONFLICT")
    else:
        assert result == Outcome(after, acknowledges=state == "open" and after != "open")


def test_the_table_covers_every_pair() -> None:
    assert set(EXPECTED) == set(STATES)
    assert all(set(row) == set(ACTIONS) for row in EXPECTED.values())


MALFORMED = [
    AlertAction("acknowledge", comment=""),
    AlertAction("acknowledge", comment="   "),
    AlertAction("comment", comment=""),
    AlertAction("assign", assignee=None),
    AlertAction("assign", assignee="  "),
    AlertAction("close", reason=None),
    AlertAction("close", reason="bored"),
    AlertAction("close", reason="other", comment=""),
    AlertAction("comment", comment="x" * (MAX_TEXT + 1)),
    AlertAction("reopen", comment="x"),
    AlertAction("delete", comment="x"),
]


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("act", MALFORMED, ids=lambda a: f"{a.action}-{a.reason}-{len(a.comment)}")
def test_malformed_actions_are_400_in_every_state(state: str, act: AlertAction) -> None:
    result = decide(state, None, act)
    assert isinstance(result, Refusal) and (result.status, result.code) == (400, "BAD_USER_INPUT")


@pytest.mark.parametrize("reason", CLOSE_REASONS)
def test_every_reason_closes_and_only_other_needs_words(reason: str) -> None:
    bare = decide("open", None, AlertAction("close", reason=reason))
    assert isinstance(bare, Refusal) if reason == "other" else bare == Outcome("closed", acknowledges=True)
    assert decide("assigned", "a", AlertAction("close", reason=reason, comment="why")) == Outcome(
        "closed", acknowledges=False
    )


def test_reassigning_to_the_same_officer_is_a_conflict_to_another_is_not() -> None:
    same = decide("assigned", "officer-a", AlertAction("assign", assignee="officer-a"))
    assert isinstance(same, Refusal) and same.status == 409
    assert decide("assigned", "officer-a", AlertAction("assign", assignee="officer-b")) == Outcome(
        "assigned", acknowledges=False
    )


def test_closed_says_only_comments_remain() -> None:
    refused = decide("closed", None, AlertAction("assign", assignee="x"))
    assert isinstance(refused, Refusal) and "only comments" in refused.message
    acked = decide("acknowledged", None, AlertAction("acknowledge", comment="again"))
    assert isinstance(acked, Refusal) and acked.message == "The alert was already acknowledged."


def test_an_unknown_stored_state_is_a_bug_not_a_refusal() -> None:
    with pytest.raises(ValueError):
        decide("archived", None, AlertAction("comment", comment="x"))
