"""The sharing workflow's rules (DESIGN.md section 9), as pure functions: who may move an
application (申请) from which state to which, what a field may be asked for and approved as,
what a row scope may say, and what an approval may change (narrow, never widen).

    draft ──submit──▶ submitted ──approve──▶ approved   (a grant is created)
      │                  │  ├────reject───▶ rejected    (reason required)
      │                  │  └────return───▶ returned ──resubmit──▶ submitted
      └──withdraw──▶ withdrawn ◀──withdraw── (submitted, returned)

The applicant is the consumer (a department, or an enterprise on the open tier) whose
application it is; the steward is a holder of `grants:approve` in the *provider* department;
an administrator (`admin`) may do every transition. No I/O here: the gateway turns rows and
tokens into these values, so every rule can be tested exhaustively.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from policies.decisions import field_share, open_dataset_listed, open_field_exists
from policies.model import PI, DatasetPolicy, FieldPolicy, Level, Share, Tier, Treatment


class State(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"
    RETURNED = "returned"
    WITHDRAWN = "withdrawn"


class Step(StrEnum):
    CREATE = "create"
    SUBMIT = "submit"
    RESUBMIT = "resubmit"
    WITHDRAW = "withdraw"
    APPROVE = "approve"
    REJECT = "reject"
    RETURN = "return"


class Role(StrEnum):
    APPLICANT = "applicant"
    STEWARD = "steward"


# step -> (states it starts from, the state it ends in, who besides an administrator may take it)
TRANSITIONS: dict[Step, tuple[frozenset[State | None], State, Role]] = {
    Step.CREATE: (frozenset({None}), State.DRAFT, Role.APPLICANT),
    Step.SUBMIT: (frozenset({State.DRAFT}), State.SUBMITTED, Role.APPLICANT),
    Step.RESUBMIT: (frozenset({State.RETURNED}), State.SUBMITTED, Role.APPLICANT),
    Step.WITHDRAW: (
        frozenset({State.DRAFT, State.SUBMITTED, State.RETURNED}),
        State.WITHDRAWN,
        Role.APPLICANT,
    ),
    Step.APPROVE: (frozenset({State.SUBMITTED}), State.APPROVED, Role.STEWARD),
    Step.REJECT: (frozenset({State.SUBMITTED}), State.REJECTED, Role.STEWARD),
    Step.RETURN: (frozenset({State.SUBMITTED}), State.RETURNED, Role.STEWARD),
}
REASON_REQUIRED = frozenset({Step.REJECT, Step.RETURN})
FINAL = frozenset({State.APPROVED, State.REJECTED, State.WITHDRAWN})


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: a person or system of a department (or an enterprise's user), and what its
    token lets it do. `apply`: may apply for its own organisation (share:read); `approve`:
    a steward of `department` (grants:approve); `admin`: everything."""

    principal: str
    kind: str = "person"  # person | system (client credentials) | operator (the CLI)
    department: str | None = None
    enterprise: str | None = None
    apply: bool = False
    approve: bool = False
    admin: bool = False

    @property
    def organisation(self) -> str | None:
        return self.department or self.enterprise


@dataclass(frozen=True, slots=True)
class Facts:
    """What a transition rule needs of an application."""

    consumer: str  # department code (share tier) or enterprise code (open tier)
    provider: str  # the dataset's department
    state: State | None  # None: not created yet


@dataclass(frozen=True, slots=True)
class Verdict:
    """`code` is the GraphQL error code when refused: FORBIDDEN (not yours to do) or CONFLICT
    (not from this state)."""

    allowed: bool
    code: str = ""
    message: str = ""


ALLOWED = Verdict(True)


def may(actor: Actor, step: Step, app: Facts) -> Verdict:
    """Whether `actor` may take `step` on `app`. Who is checked before the state, so a caller
    who may not act at all learns nothing about the application's progress."""
    starts, _, role = TRANSITIONS[step]
    if not actor.admin:
        if role is Role.APPLICANT:
            if not actor.apply or actor.organisation != app.consumer:
                return Verdict(
                    False,
                    "FORBIDDEN",
                    f"only {app.consumer} (the applicant) or an administrator "
                    f"may {step.value} this application",
                )
        elif not actor.approve or actor.department != app.provider:
            return Verdict(
                False,
                "FORBIDDEN",
                f"only a steward of {app.provider} (the provider, grants:approve) or an administrator "
                f"may {step.value} this application",
            )
    if step is Step.CREATE and app.consumer == app.provider:
        return Verdict(
            False, "BAD_USER_INPUT", f"{app.provider} provides this dataset and reads it without one"
        )
    if app.state not in starts:
        valid = ", ".join(sorted(s.value for s in starts if s is not None)) or "(new)"
        return Verdict(
            False,
            "CONFLICT",
            f"cannot {step.value} an application that is {app.state.value if app.state else 'new'}; "
            f"{step.value} applies to: {valid}",
        )
    return ALLOWED


def next_state(step: Step) -> State:
    return TRANSITIONS[step][1]


def steps_for(actor: Actor, app: Facts) -> list[Step]:
    """What `actor` may do next (for the console's buttons and the CLI's hints)."""
    return [s for s in Step if s is not Step.CREATE and may(actor, s, app).allowed]


def may_see(actor: Actor, app: Facts) -> bool:
    """The applicant sees its applications; the provider's stewards see those addressed to
    them once submitted (a draft is the applicant's own); an administrator sees all."""
    if actor.admin or actor.organisation == app.consumer:
        return True
    return actor.approve and actor.department == app.provider and app.state is not State.DRAFT


def reason_missing(step: Step, reason: str | None) -> str | None:
    if step in REASON_REQUIRED and not (reason or "").strip():
        return f"{step.value} needs a reason, which the applicant is shown"
    return None


# ---------------------------------------------------------------- grants

GRANT_CHANGES = ("revoke", "renew")


def may_see_grant(actor: Actor, consumer: str, provider: str) -> bool:
    """A consumer sees its own grants; the provider's stewards those on its datasets."""
    if actor.admin or actor.organisation == consumer:
        return True
    return actor.approve and actor.department == provider


def may_change_grant(actor: Actor, change: str, consumer: str, provider: str) -> Verdict:
    """Revoke: the provider's steward, an administrator, or the consumer giving it up.
    Renew: the provider's steward or an administrator (a renewal widens access in time; a
    consumer applies again)."""
    if change not in GRANT_CHANGES:
        raise ValueError(f"no grant change {change!r}")
    if actor.admin or (actor.approve and actor.department == provider):
        return ALLOWED
    if change == "revoke" and actor.apply and actor.organisation == consumer:
        return ALLOWED
    who = f"a steward of {provider} or an administrator" + (
        f", or {consumer} itself" if change == "revoke" else ""
    )
    return Verdict(False, "FORBIDDEN", f"only {who} may {change} this grant")


# ---------------------------------------------------------------- fields and treatments

TREATMENTS: dict[str, Treatment] = {
    "masked": Treatment.MASKED,
    "encrypted": Treatment.ENCRYPTED,
    "clear": Treatment.CLEAR,
}


def valid_treatments(tier: Tier, dataset: DatasetPolicy, field: FieldPolicy) -> tuple[str, ...]:
    """How this field can be delivered under a grant, as an application names it. Empty: no
    grant can give it on this tier. L4 / sensitive personal information only ever encrypted
    to the consumer's SM2 key; L3 / personal with a masking rule masked or clear; the rest
    (L1–L2, public by law, no masking rule) as it is."""
    if tier is Tier.OPEN:
        if not open_field_exists(dataset, field):
            return ()
        return ("masked",) if field.pi is PI.PERSONAL and field.mask is not None else ("clear",)
    if field_share(dataset, field) is Share.NONE or dataset.share is Share.NONE:
        return ()
    if field.level >= Level.L4 or field.pi is PI.SENSITIVE:
        return ("encrypted",)
    if (
        field.pi is PI.PERSONAL
        and field.mask is None
        and open_dataset_listed(dataset)
        and open_field_exists(dataset, field)
    ):
        return ("clear",)  # public by law: every department reads it as the public does
    if field.level >= Level.L3 or field.pi is PI.PERSONAL:
        return ("masked", "clear") if field.mask is not None else ("clear",)
    return ("clear",)


def default_treatment(valid: tuple[str, ...]) -> str:
    """The most protective of the valid treatments (masked before encrypted before clear)."""
    return min(valid, key=lambda t: TREATMENTS[t])


def check_fields(
    tier: Tier,
    dataset: DatasetPolicy,
    fields: Mapping[str, FieldPolicy],
    requested: Mapping[str, str | None],
) -> dict[str, str]:
    """{field: treatment} as stored, or ValueError naming what is wrong and what is valid.
    A treatment left out (None) is the field's most protective one."""
    grantable = {n: v for n in fields if (v := valid_treatments(tier, dataset, fields[n]))}
    if not requested:
        raise ValueError(f"an application names the fields it asks for; valid: {_listing(grantable)}")
    unknown = [n for n in requested if n not in grantable]
    if unknown:
        raise ValueError(
            f"field(s) {_listing(unknown)} cannot be granted on {dataset.code} ({tier.value} tier); "
            f"valid: {_listing(grantable)}"
        )
    out: dict[str, str] = {}
    for name, treatment in requested.items():
        valid = grantable[name]
        chosen = treatment or default_treatment(valid)
        if chosen not in valid:
            raise ValueError(
                f"{name} cannot be delivered {chosen}: valid for it: {', '.join(valid)}"
                + (
                    " (L4 / sensitive: only ever encrypted to your SM2 key)"
                    if valid == ("encrypted",)
                    else ""
                )
            )
        out[name] = chosen
    return out


def check_narrowing(requested: Mapping[str, str], approved: Mapping[str, str]) -> None:
    """An approval may drop fields and lower a treatment (clear → masked), never add a field
    or raise one. ValueError says which."""
    added = [n for n in approved if n not in requested]
    if added:
        raise ValueError(
            f"an approval cannot add field(s) {_listing(added)}; asked for: {_listing(requested)}"
        )
    raised = [n for n, t in approved.items() if TREATMENTS[t] > TREATMENTS[requested[n]]]
    if raised:
        raise ValueError(
            "an approval cannot widen a treatment: "
            + ", ".join(f"{n} was asked {requested[n]}, not {approved[n]}" for n in raised)
        )
    if not approved:
        raise ValueError("an approval grants at least one field; to grant none, reject the application")


# ---------------------------------------------------------------- row scope

SCOPE_OPERATORS = ("eq", "in")
MAX_SCOPE_VALUES = 200


def check_scope(scope: Any, fields: Iterable[str]) -> dict[str, dict[str, Any]] | None:
    """A row scope: {field: {"in": [values]}} or {field: {"eq": value}}, every condition must
    hold. None or {} is no scope. ValueError names what is wrong and what is valid."""
    if scope is None or scope == {}:
        return None
    names = set(fields)
    if not isinstance(scope, dict):
        raise ValueError('a row scope is an object like {"district": {"in": ["雁塔区"]}}')
    out: dict[str, dict[str, Any]] = {}
    for name, cond in scope.items():
        if name not in names:
            raise ValueError(f"row scope: no field {name!r}; fields: {_listing(names)}")
        if not isinstance(cond, dict) or len(cond) != 1 or next(iter(cond)) not in SCOPE_OPERATORS:
            raise ValueError(f"row scope on {name}: one operator of {', '.join(SCOPE_OPERATORS)}")
        op, value = next(iter(cond.items()))
        if op == "in":
            if not isinstance(value, list) or not value or len(value) > MAX_SCOPE_VALUES:
                raise ValueError(f"row scope on {name}: in takes a list of 1 to {MAX_SCOPE_VALUES} values")
            if not all(isinstance(v, (str, int, float, bool)) for v in value):
                raise ValueError(f"row scope on {name}: values are strings or numbers")
            out[name] = {"in": sorted(set(value), key=str)}
        else:
            if not isinstance(value, (str, int, float, bool)):
                raise ValueError(f"row scope on {name}: eq takes a string or number")
            out[name] = {"eq": value}
    return out


def _values(cond: Mapping[str, Any]) -> set[Any]:
    return set(cond["in"]) if "in" in cond else {cond["eq"]}


def scope_narrows(requested: Mapping[str, Any] | None, approved: Mapping[str, Any] | None) -> bool:
    """Whether `approved` admits no row that `requested` does not: every condition of the
    request is kept, with the same or fewer values (an approval may add conditions)."""
    if not requested:
        return True
    if not approved:
        return False
    return all(
        name in approved and _values(approved[name]) <= _values(cond) for name, cond in requested.items()
    )


# ---------------------------------------------------------------- period


def check_period(start: datetime | None, end: datetime, now: datetime) -> None:
    if end <= now:
        raise ValueError("the period ends in the past")
    if start is not None and start >= end:
        raise ValueError("the period starts after it ends")


def period_narrows(
    requested: tuple[datetime | None, datetime], approved: tuple[datetime | None, datetime]
) -> bool:
    """Approved no longer than asked: ends no later, starts no earlier."""
    (r_start, r_end), (a_start, a_end) = requested, approved
    if a_end > r_end:
        return False
    return r_start is None or (a_start is not None and a_start >= r_start)


def _listing(values: Iterable[str]) -> str:
    names = sorted(values)
    return ", ".join(names) if names else "(none)"
