"""DESIGN.md section 4, written again from the text, for the property tests to check the
gateway against. It deliberately does not call `policies.decisions`: an oracle that asks
the code under test what the answer is cannot disagree with it.

Each function returns the set of answers the design allows. Where the design fixes the
answer the set has one member; where it is silent (noted at each place) the set holds
every answer that reveals nothing the design forbids, so the properties stay honest
without inventing rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from catalogue.spec import DatasetSpec, FieldSpec
from policies.model import PI, Level, Open, Share, Tier

# What a caller can observe about one field.
ABSENT = "absent"  # not in this caller's schema (nor its introspection)
DENIED = "denied"  # null, with a FORBIDDEN_FIELD error at its path
MASKED = "masked"  # the mask rule's form of the value
CLEAR = "clear"  # the stored value
ENCRYPTED = "encrypted"  # sealed to the consuming department's SM2 key

# What a caller can observe about the dataset as a whole.
DS_ABSENT = "absent"  # no root field, no types
DS_FORBIDDEN = "forbidden"  # root field null, errors saying how to apply
DS_OK = "ok"


@dataclass(frozen=True)
class Caller:
    name: str
    tier: Tier
    consumer: str | None  # department (share tier) or enterprise (open tier); None: anonymous
    has_sm2_key: bool = False


@dataclass(frozen=True)
class GrantDraw:
    """A grant as the property generates it (one per consumer, tier and dataset)."""

    consumer: str
    tier: Tier
    fields: frozenset[str]
    clear_fields: frozenset[str]
    expires_at: datetime | None

    def active(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at


def _active_grant(grants: list[GrantDraw], caller: Caller, tier: Tier, now: datetime) -> GrantDraw | None:
    found = [g for g in grants if g.consumer == caller.consumer and g.tier is tier and g.active(now)]
    assert len(found) <= 1, "the main property draws at most one grant per consumer"
    return found[0] if found else None


def _open_attr(ds: DatasetSpec, f: FieldSpec) -> Open:
    return f.open if f.open is not None else ds.open  # "inherit the dataset's unless set"


def _share_attr(ds: DatasetSpec, f: FieldSpec) -> Share:
    return f.share if f.share is not None else ds.share


def in_open_schema(ds: DatasetSpec, f: FieldSpec) -> bool:
    """ "a field appears in the open schema only if its open ≠ 不予开放, level ≤ L2 and
    pi ≠ sensitive; a personal field appears only when explicitly marked open"."""
    if _open_attr(ds, f) is Open.NONE or f.level > Level.L2 or f.pi is PI.SENSITIVE:
        return False
    return f.pi is not PI.PERSONAL or f.open_personal


# ------------------------------------------------------------------ open tier


def open_dataset(ds: DatasetSpec, caller: Caller, grants: list[GrantDraw], now: datetime) -> str:
    if ds.open is Open.NONE:  # 不予开放 → absent from the open schema
        return DS_ABSENT
    if not any(in_open_schema(ds, f) for f in ds.fields):
        # Section 4 does not say; a dataset with no open field has nothing to show (and no
        # GraphQL type can have no field), so it is absent.
        return DS_ABSENT
    if ds.open is Open.UNCONDITIONAL:
        return DS_OK
    # 有条件开放: data only for an API key holding an approved, unexpired grant.
    if caller.consumer is not None and _active_grant(grants, caller, Tier.OPEN, now) is not None:
        return DS_OK
    return DS_FORBIDDEN


def open_field(ds: DatasetSpec, f: FieldSpec) -> frozenset[str]:
    if not in_open_schema(ds, f):
        return frozenset({ABSENT})  # "Fields that do not appear do not exist"
    if f.pi is PI.PERSONAL and f.mask is not None:
        return frozenset({MASKED})  # "masked if it has a mask rule"
    return frozenset({CLEAR})


# ------------------------------------------------------------------ share tier


def share_dataset(ds: DatasetSpec, caller: Caller, grants: list[GrantDraw], now: datetime) -> str:
    if caller.consumer == ds.department:
        return DS_OK  # "P reads its own data in clear"
    if ds.share is Share.NONE:
        return DS_ABSENT  # "absent for everyone but P"
    if all(_share_attr(ds, f) is Share.NONE for f in ds.fields):
        return DS_ABSENT  # no field shared: nothing to show (as on the open tier)
    if ds.share is Share.UNCONDITIONAL:
        return DS_OK
    return DS_OK if _active_grant(grants, caller, Tier.SHARE, now) is not None else DS_FORBIDDEN


def share_field(
    ds: DatasetSpec, f: FieldSpec, caller: Caller, grants: list[GrantDraw], now: datetime
) -> frozenset[str]:
    if caller.consumer == ds.department:
        return frozenset({CLEAR})
    share = _share_attr(ds, f)
    if share is Share.NONE:
        # Not shared. Section 4 says so of datasets (absent); of a field it does not say
        # whether it is absent or denied — either reveals nothing.
        return frozenset({ABSENT, DENIED})
    grant = _active_grant(grants, caller, Tier.SHARE, now)
    listed = grant is not None and f.name in grant.fields
    if (share is Share.CONDITIONAL or ds.share is Share.CONDITIONAL) and not listed:
        return frozenset({DENIED})  # "a field outside the grant is denied"
    if f.level >= Level.L4 or f.pi is PI.SENSITIVE:
        # "deny unless the grant lists it, and then encrypt to D's SM2 key": without a key
        # there is nothing to encrypt to, and clear is never an option.
        return frozenset({ENCRYPTED}) if listed and caller.has_sm2_key else frozenset({DENIED})
    if f.level >= Level.L3 or f.pi is PI.PERSONAL:
        if grant is not None and f.name in grant.clear_fields:
            return frozenset({CLEAR})  # "unless the grant lists the field in clear"
        if f.mask is not None:
            return frozenset({MASKED})
        # No mask rule: section 4 does not say. Denying reveals nothing; clear is allowed
        # only where the open tier already publishes the value in clear (a department never
        # sees less than the public: 法定代表人, personal and open by law, has no mask).
        if f.pi is PI.PERSONAL and in_open_schema(ds, f) and ds.open is not Open.NONE:
            return frozenset({DENIED, CLEAR})
        return frozenset({DENIED})
    return frozenset({CLEAR})  # "L1–L2 → allow"


# ------------------------------------------------------------------ both


def dataset_outcome(ds: DatasetSpec, caller: Caller, grants: list[GrantDraw], now: datetime) -> str:
    if caller.tier is Tier.OPEN:
        return open_dataset(ds, caller, grants, now)
    return share_dataset(ds, caller, grants, now)


def field_outcomes(
    ds: DatasetSpec, f: FieldSpec, caller: Caller, grants: list[GrantDraw], now: datetime
) -> frozenset[str]:
    if caller.tier is Tier.OPEN:
        return open_field(ds, f)
    return share_field(ds, f, caller, grants, now)


def may_filter(observed: str) -> bool:
    """Filtering or ordering reveals a field's clear value by probing, so it is accepted only
    on fields the caller may know in clear (DESIGN.md does not state this rule; it is
    `policies.decisions.may_filter`'s docstring): read in clear, or received encrypted to
    its own key."""
    return observed in (CLEAR, ENCRYPTED)
