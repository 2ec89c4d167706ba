"""policies.workflow: every step from every state for every kind of actor, treatments per field
class, narrowing, row scope and period rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from policies.model import PI, DatasetPolicy, FieldPolicy, Level, MaskRule, Open, Share, Tier
from policies.workflow import (
    TRANSITIONS,
    Actor,
    Facts,
    State,
    Step,
    check_fields,
    check_narrowing,
    check_period,
    check_scope,
    may,
    may_change_grant,
    may_see,
    may_see_grant,
    period_narrows,
    reason_missing,
    scope_narrows,
    steps_for,
    valid_treatments,
)

APPLICANT = Actor("hrss-dev", department="hrss", apply=True)
APPLICANT_NO_SCOPE = Actor("hrss-ro", department="hrss")
OTHER_DEPT = Actor("samr-dev", department="samr", apply=True)
STEWARD = Actor("police-steward", department="police", apply=True, approve=True)
OTHER_STEWARD = Actor("samr-steward", department="samr", apply=True, approve=True)
CONSUMER_STEWARD = Actor("hrss-steward", department="hrss", apply=True, approve=True)
ADMIN = Actor("root", admin=True)
ACTORS = {
    "applicant": APPLICANT,
    "applicant_no_scope": APPLICANT_NO_SCOPE,
    "other_dept": OTHER_DEPT,
    "steward": STEWARD,
    "other_steward": OTHER_STEWARD,
    "consumer_steward": CONSUMER_STEWARD,
    "admin": ADMIN,
}
APPLICANT_STEPS = {Step.CREATE, Step.SUBMIT, Step.RESUBMIT, Step.WITHDRAW}
STEWARD_STEPS = {Step.APPROVE, Step.REJECT, Step.RETURN}
STARTS = {
    Step.CREATE: {None},
    Step.SUBMIT: {State.DRAFT},
    Step.RESUBMIT: {State.RETURNED},
    Step.WITHDRAW: {State.DRAFT, State.SUBMITTED, State.RETURNED},
    Step.APPROVE: {State.SUBMITTED},
    Step.REJECT: {State.SUBMITTED},
    Step.RETURN: {State.SUBMITTED},
}


def _who_may(step: Step) -> set[str]:
    if step in APPLICANT_STEPS:
        return {"applicant", "consumer_steward", "admin"}
    return {"steward", "admin"}


@pytest.mark.parametrize("step", list(Step))
@pytest.mark.parametrize("state", [None, *State])
@pytest.mark.parametrize("who", list(ACTORS))
def test_every_transition(step: Step, state: State | None, who: str) -> None:
    verdict = may(ACTORS[who], step, Facts("hrss", "police", state))
    if who not in _who_may(step):
        assert not verdict.allowed and verdict.code == "FORBIDDEN"  # who before state: nothing leaks
    elif state not in STARTS[step]:
        assert not verdict.allowed and verdict.code == "CONFLICT"
        assert step.value in verdict.message
    else:
        assert verdict.allowed


def test_table_matches_the_design() -> None:
    assert {s: set(TRANSITIONS[s][0]) for s in Step} == STARTS
    ends = {s: TRANSITIONS[s][1] for s in Step}
    assert ends == {
        Step.CREATE: State.DRAFT,
        Step.SUBMIT: State.SUBMITTED,
        Step.RESUBMIT: State.SUBMITTED,
        Step.WITHDRAW: State.WITHDRAWN,
        Step.APPROVE: State.APPROVED,
        Step.REJECT: State.REJECTED,
        Step.RETURN: State.RETURNED,
    }


def test_final_states_take_no_step() -> None:
    for state in (State.APPROVED, State.REJECTED, State.WITHDRAWN):
        assert steps_for(ADMIN, Facts("hrss", "police", state)) == []


def test_next_steps_per_actor() -> None:
    submitted = Facts("hrss", "police", State.SUBMITTED)
    assert steps_for(APPLICANT, submitted) == [Step.WITHDRAW]
    assert steps_for(STEWARD, submitted) == [Step.APPROVE, Step.REJECT, Step.RETURN]
    assert steps_for(OTHER_STEWARD, submitted) == []


def test_no_application_to_oneself() -> None:
    v = may(STEWARD, Step.CREATE, Facts("police", "police", None))
    assert not v.allowed and v.code == "BAD_USER_INPUT"


def test_reason_required_for_reject_and_return() -> None:
    for step in Step:
        missing = reason_missing(step, "  ")
        assert (missing is not None) == (step in (Step.REJECT, Step.RETURN))
        assert reason_missing(step, "because") is None


def test_visibility() -> None:
    for state in State:
        app = Facts("hrss", "police", state)
        assert may_see(APPLICANT, app) and may_see(ADMIN, app)
        assert not may_see(OTHER_DEPT, app) and not may_see(OTHER_STEWARD, app)
        assert may_see(STEWARD, app) == (state is not State.DRAFT)  # a draft is the applicant's own
    # a police developer (no grants:approve) does not see the queue
    assert not may_see(
        Actor("police-dev", department="police", apply=True), Facts("hrss", "police", State.SUBMITTED)
    )


def test_grant_visibility_and_changes() -> None:
    assert may_see_grant(APPLICANT, "hrss", "police") and may_see_grant(STEWARD, "hrss", "police")
    assert not may_see_grant(OTHER_DEPT, "hrss", "police") and not may_see_grant(
        OTHER_STEWARD, "hrss", "police"
    )
    assert may_change_grant(STEWARD, "renew", "hrss", "police").allowed
    assert may_change_grant(ADMIN, "renew", "hrss", "police").allowed
    assert may_change_grant(APPLICANT, "revoke", "hrss", "police").allowed  # giving it up
    refused = may_change_grant(APPLICANT, "renew", "hrss", "police")
    assert not refused.allowed and refused.code == "FORBIDDEN"
    for change in ("revoke", "renew"):
        assert not may_change_grant(OTHER_STEWARD, change, "hrss", "police").allowed
        assert not may_change_grant(OTHER_DEPT, change, "hrss", "police").allowed
    with pytest.raises(ValueError):
        may_change_grant(ADMIN, "widen", "hrss", "police")


# ---------------------------------------------------------------- treatments

POP = DatasetPolicy("population", "R-1", "police", Share.CONDITIONAL, Open.NONE)
FIELDS = {
    "id_number": FieldPolicy("id_number", Level.L4, PI.SENSITIVE, mask=MaskRule.ID_NUMBER),
    "ethnicity": FieldPolicy("ethnicity", Level.L3, PI.SENSITIVE),
    "name": FieldPolicy("name", Level.L3, PI.PERSONAL, mask=MaskRule.NAME),
    "phone": FieldPolicy("phone", Level.L3, PI.PERSONAL, mask=MaskRule.MOBILE),
    "gender": FieldPolicy("gender", Level.L2, PI.PERSONAL),
    "district": FieldPolicy("district", Level.L1),
    "secret": FieldPolicy("secret", Level.L2, share=Share.NONE),
    "legal_rep": FieldPolicy("legal_rep", Level.L1, PI.PERSONAL, open_personal=True),
}


def test_valid_treatments_share() -> None:
    assert valid_treatments(Tier.SHARE, POP, FIELDS["id_number"]) == ("encrypted",)
    assert valid_treatments(Tier.SHARE, POP, FIELDS["ethnicity"]) == ("encrypted",)
    assert valid_treatments(Tier.SHARE, POP, FIELDS["phone"]) == ("masked", "clear")
    assert valid_treatments(Tier.SHARE, POP, FIELDS["gender"]) == ("clear",)  # personal without a mask rule
    assert valid_treatments(Tier.SHARE, POP, FIELDS["district"]) == ("clear",)
    assert valid_treatments(Tier.SHARE, POP, FIELDS["secret"]) == ()
    assert valid_treatments(Tier.SHARE, POP, FIELDS["legal_rep"]) == ("clear",)
    public = DatasetPolicy("ent", "R-3", "samr", Share.UNCONDITIONAL, Open.UNCONDITIONAL)
    assert valid_treatments(Tier.SHARE, public, FIELDS["legal_rep"]) == ("clear",)  # as the public reads it
    masked_rep = FieldPolicy("rep", Level.L1, PI.PERSONAL, mask=MaskRule.NAME, open_personal=True)
    assert valid_treatments(Tier.SHARE, public, masked_rep) == ("masked", "clear")
    none = DatasetPolicy("x", "R", "police", Share.NONE, Open.NONE)
    assert valid_treatments(Tier.SHARE, none, FIELDS["district"]) == ()


def test_valid_treatments_open() -> None:
    ds = DatasetPolicy("tax", "R-2", "tax", Share.UNCONDITIONAL, Open.CONDITIONAL)
    assert valid_treatments(Tier.OPEN, ds, FIELDS["district"]) == ("clear",)
    assert valid_treatments(Tier.OPEN, ds, FIELDS["phone"]) == ()  # L3: not in the open view
    assert valid_treatments(Tier.OPEN, ds, FIELDS["legal_rep"]) == ("clear",)
    masked_rep = FieldPolicy("rep", Level.L1, PI.PERSONAL, mask=MaskRule.NAME, open_personal=True)
    assert valid_treatments(Tier.OPEN, ds, masked_rep) == ("masked",)


def test_check_fields() -> None:
    out = check_fields(Tier.SHARE, POP, FIELDS, {"phone": None, "id_number": None, "name": "clear"})
    assert out == {"phone": "masked", "id_number": "encrypted", "name": "clear"}  # default: most protective
    with pytest.raises(ValueError, match=r"id_number cannot be delivered clear: valid for it: encrypted"):
        check_fields(Tier.SHARE, POP, FIELDS, {"id_number": "clear"})
    with pytest.raises(ValueError, match=r"valid for it: masked, clear"):
        check_fields(Tier.SHARE, POP, FIELDS, {"phone": "encrypted"})
    with pytest.raises(ValueError, match=r"secret.*valid: district, ethnicity"):
        check_fields(Tier.SHARE, POP, FIELDS, {"secret": None})
    with pytest.raises(ValueError, match="names the fields"):
        check_fields(Tier.SHARE, POP, FIELDS, {})


def test_narrowing() -> None:
    asked = {"phone": "clear", "name": "clear", "id_number": "encrypted"}
    check_narrowing(asked, asked)
    check_narrowing(asked, {"phone": "masked"})  # fewer fields, lower treatment
    with pytest.raises(ValueError, match="cannot add field"):
        check_narrowing({"phone": "masked"}, {"phone": "masked", "name": "masked"})
    with pytest.raises(ValueError, match="phone was asked masked, not clear"):
        check_narrowing({"phone": "masked"}, {"phone": "clear"})
    with pytest.raises(ValueError, match="reject"):
        check_narrowing(asked, {})


def test_scope() -> None:
    cols = ["district", "name"]
    assert check_scope(None, cols) is None and check_scope({}, cols) is None
    assert check_scope({"district": {"in": ["b", "a", "a"]}}, cols) == {"district": {"in": ["a", "b"]}}
    assert check_scope({"district": {"eq": "a"}}, cols) == {"district": {"eq": "a"}}
    for bad, msg in [
        ([1], "an object"),
        ({"nope": {"eq": 1}}, "no field 'nope'; fields: district, name"),
        ({"district": {"like": "a"}}, "one operator of eq, in"),
        ({"district": {"in": []}}, "list of 1 to"),
        ({"district": {"in": [{"x": 1}]}}, "strings or numbers"),
        ({"district": {"eq": [1]}}, "eq takes"),
    ]:
        with pytest.raises(ValueError, match=msg):
            check_scope(bad, cols)
    asked = {"district": {"in": ["a", "b"]}}
    assert scope_narrows(asked, {"district": {"in": ["a"]}})
    assert scope_narrows(asked, {"district": {"eq": "b"}, "name": {"eq": "x"}})  # conditions added
    assert not scope_narrows(asked, {"district": {"in": ["a", "c"]}})
    assert not scope_narrows(asked, None)  # dropping the scope widens to every row
    assert scope_narrows(None, {"district": {"eq": "a"}}) and scope_narrows(None, None)


def test_period() -> None:
    now = datetime(2026, 12, 3, tzinfo=UTC)
    day = timedelta(days=1)
    check_period(None, now + day, now)
    with pytest.raises(ValueError, match="past"):
        check_period(None, now - day, now)
    with pytest.raises(ValueError, match="starts after"):
        check_period(now + 2 * day, now + day, now)
    assert period_narrows((None, now + 9 * day), (None, now + 5 * day))
    assert not period_narrows((None, now + 5 * day), (None, now + 9 * day))
    assert period_narrows((now, now + 5 * day), (now + day, now + 5 * day))
    assert not period_narrows((now, now + 5 * day), (None, now + 5 * day))
