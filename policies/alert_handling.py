"""How an officer handles an audit alert: the states, the actions, and which action is allowed in
which state. Pure: the gateway (gateway/audit/alert_handling.py) stores the outcome and its history.

    open ──acknowledge──▶ acknowledged
     │  ╲                   │
     │   ╲──assign──▶ assigned ◀──assign── (acknowledged)
     │                      │  ╲──assign (another officer)──▶ assigned
     └──────close──────▶ closed ◀──close── (acknowledged, assigned)

`comment` is allowed in every state and changes none; `closed` is final (comments only). Every
action needs its text: an acknowledgement or a comment its comment, an assignment the officer,
a closing one of CLOSE_REASONS (and, for `other`, a comment that says what)."""

from __future__ import annotations

from dataclasses import dataclass

STATES = ("open", "acknowledged", "assigned", "closed")
ACTIONS = ("acknowledge", "assign", "comment", "close")
CLOSE_REASONS = ("resolved", "false_positive", "authorised", "duplicate", "other")
CLOSE_REASON_LABELS = {
    "resolved": "已处置 resolved",
    "false_positive": "误报 false positive",
    "authorised": "已授权/已报备 authorised",
    "duplicate": "重复 duplicate",
    "other": "其他 other",
}
MAX_TEXT = 2000

# (state, action) -> the state after it; a pair not listed is refused (409).
TRANSITIONS: dict[tuple[str, str], str] = {
    ("open", "acknowledge"): "acknowledged",
    ("open", "assign"): "assigned",
    ("acknowledged", "assign"): "assigned",
    ("assigned", "assign"): "assigned",
    ("open", "close"): "closed",
    ("acknowledged", "close"): "closed",
    ("assigned", "close"): "closed",
    **{(s, "comment"): s for s in STATES},
}


@dataclass(frozen=True)
class AlertAction:
    action: str
    comment: str = ""
    assignee: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Refusal:
    status: int  # 400: the action is malformed; 409: not allowed in this state
    code: str  # BAD_USER_INPUT | CONFLICT
    message: str


@dataclass(frozen=True)
class Outcome:
    state: str
    acknowledges: bool  # the alert's first handling: it stops counting as unacknowledged


def decide(state: str, current_assignee: str | None, act: AlertAction) -> Outcome | Refusal:
    """The state after `act`, or why it is refused. Malformed input (400) is judged before the
    state (409), so the answer to a bad request does not depend on what others did meanwhile."""
    if state not in STATES:
        raise ValueError(f"unknown alert state {state!r}")
    if act.action not in ACTIONS:
        return Refusal(400, "BAD_USER_INPUT", f"action is one of {', '.join(ACTIONS)}")
    comment = act.comment.strip()
    if len(comment) > MAX_TEXT:
        return Refusal(400, "BAD_USER_INPUT", f"a comment has at most {MAX_TEXT} characters")
    if act.action in ("acknowledge", "comment") and not comment:
        return Refusal(
            400,
            "BAD_USER_INPUT",
            f"{'An acknowledgement' if act.action == 'acknowledge' else 'A comment'} needs a comment.",
        )
    if act.action == "assign" and not (act.assignee or "").strip():
        return Refusal(400, "BAD_USER_INPUT", "An assignment names the officer (assignee).")
    if act.action == "close":
        if act.reason not in CLOSE_REASONS:
            return Refusal(
                400, "BAD_USER_INPUT", f"A closing needs a reason: one of {', '.join(CLOSE_REASONS)}."
            )
        if act.reason == "other" and not comment:
            return Refusal(
                400, "BAD_USER_INPUT", "Closing for another reason needs a comment that says what."
            )
    after = TRANSITIONS.get((state, act.action))
    if after is None:
        return Refusal(409, "CONFLICT", _conflict(state, act.action))
    if act.action == "assign" and state == "assigned" and (act.assignee or "").strip() == current_assignee:
        return Refusal(409, "CONFLICT", f"The alert is already assigned to {current_assignee}.")
    return Outcome(after, acknowledges=state == "open" and after != "open")


def _conflict(state: str, action: str) -> str:
    if state == "closed":
        return "The alert is closed; only comments can be added."
    if action == "acknowledge":
        return "The alert was already acknowledged."
    return f"An alert that is {state} cannot be {action}d."  # pragma: no cover (every other pair is allowed)
