"""DESIGN.md section 4, row by row: every rule of the policy matrix as a table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from policies import decisions
from policies.model import (
    PI,
    Action,
    DatasetPolicy,
    FieldPolicy,
    Grant,
    Level,
    MaskRule,
    Open,
    Share,
    Tier,
)

NOW = datetime(2026, 11, 22, tzinfo=UTC)
P = "police"  # provider
D = "hrss"  # consumer


def ds(
    share: Share = Share.UNCONDITIONAL, open_: Open = Open.UNCONDITIONAL, published: bool = True
) -> DatasetPolicy:
    return DatasetPolicy("population", "610000-POLICE-000001", P, share, open_, published)


def fld(
    name: str = "f",
    level: Level = Level.L1,
    pi: PI = PI.NONE,
    mask: MaskRule | None = None,
    share: Share | None = None,
    open_: Open | None = None,
    open_personal: bool = False,
) -> FieldPolicy:
    return FieldPolicy(name, level, pi, share, open_, mask, open_personal)


def grant(
    fields: tuple[str, ...] = (),
    clear: tuple[str, ...] = (),
    *,
    consumer: str = D,
    expires: datetime | None = NOW + timedelta(days=1),
    approved: bool = True,
    tier: Tier = Tier.SHARE,
    gid: int = 7,
) -> Grant:
    return Grant(
        gid, "population", consumer, tier, frozenset(fields), frozenset(clear), "purpose", expires, approved
    )


# ------------------------------------------------------------------ open tier: datasets


@pytest.mark.parametrize(
    ("open_", "published", "listed"),
    [
        (Open.NONE, True, False),  # 不予开放 → absent
        (Open.CONDITIONAL, True, True),  # 有条件开放 → listed
        (Open.UNCONDITIONAL, True, True),
        (Open.UNCONDITIONAL, False, False),  # unpublished → absent
    ],
)
def test_open_dataset_listing(open_: Open, published: bool, listed: bool) -> None:
    assert decisions.open_dataset_listed(ds(open_=open_, published=published)) is listed


@pytest.mark.parametrize(
    ("open_", "consumer", "grants", "allowed"),
    [
        (Open.UNCONDITIONAL, None, (), True),
        (Open.CONDITIONAL, None, (), False),  # anonymous: must apply
        (Open.CONDITIONAL, "bank", (), False),  # key without grant
        (Open.CONDITIONAL, "bank", (grant(consumer="bank", tier=Tier.OPEN),), True),
        (
            Open.CONDITIONAL,
            "bank",
            (grant(consumer="bank", tier=Tier.OPEN, expires=NOW - timedelta(1)),),
            False,
        ),
        (Open.CONDITIONAL, "bank", (grant(consumer="bank", tier=Tier.OPEN, approved=False),), False),
        (Open.CONDITIONAL, "bank", (grant(consumer="bank", tier=Tier.SHARE),), False),  # wrong tier
        (Open.CONDITIONAL, "bank", (grant(consumer="other", tier=Tier.OPEN),), False),  # someone else's
        (Open.NONE, "bank", (grant(consumer="bank", tier=Tier.OPEN),), False),  # a grant cannot open 不予开放
    ],
)
def test_open_dataset_access(
    open_: Open, consumer: str | None, grants: tuple[Grant, ...], allowed: bool
) -> None:
    access = decisions.open_dataset_access(ds(open_=open_), consumer, grants, NOW)
    assert access.allowed is allowed
    if not allowed and open_ is Open.CONDITIONAL:
        assert "grant" in access.reason


# ------------------------------------------------------------------ open tier: fields


@pytest.mark.parametrize(
    ("field", "exists", "action"),
    [
        (fld(level=Level.L1), True, Action.ALLOW),
        (fld(level=Level.L2), True, Action.ALLOW),
        (fld(level=Level.L3), False, Action.DENY),  # level ≤ L2 only
        (fld(level=Level.L4), False, Action.DENY),
        (fld(pi=PI.SENSITIVE), False, Action.DENY),  # sensitive PI never
        (fld(pi=PI.SENSITIVE, open_personal=True), False, Action.DENY),
        (fld(pi=PI.PERSONAL), False, Action.DENY),  # personal only when explicitly open
        (fld(pi=PI.PERSONAL, open_personal=True), True, Action.ALLOW),  # 法定代表人
        (fld(pi=PI.PERSONAL, open_personal=True, mask=MaskRule.NAME), True, Action.MASK),
        (fld(open_=Open.NONE), False, Action.DENY),  # field override 不予开放
        (fld(level=Level.L2, open_=Open.UNCONDITIONAL), True, Action.ALLOW),
    ],
)
def test_open_fields(field: FieldPolicy, exists: bool, action: Action) -> None:
    assert decisions.open_field_exists(ds(), field) is exists
    d = decisions.decide_open_field(ds(), field)
    assert d.action is action
    if action is Action.MASK:
        assert d.mask is field.mask


def test_open_field_inherits_dataset_open_attribute() -> None:
    assert not decisions.open_field_exists(ds(open_=Open.NONE), fld())
    assert decisions.open_field_exists(ds(open_=Open.CONDITIONAL), fld())


# ------------------------------------------------------------------ share tier: datasets


@pytest.mark.parametrize(
    ("share", "consumer", "grants", "listed", "allowed"),
    [
        (Share.NONE, D, (), False, False),  # 不予共享 → absent for everyone…
        (Share.NONE, P, (), True, True),  # …but the provider
        (Share.UNCONDITIONAL, D, (), True, True),  # 无条件 → any authenticated department
        (Share.CONDITIONAL, D, (), True, False),  # 有条件 → only with a grant
        (Share.CONDITIONAL, D, (grant(),), True, True),
        (Share.CONDITIONAL, D, (grant(expires=NOW),), True, False),  # expired at this instant
        (Share.CONDITIONAL, D, (grant(approved=False),), True, False),  # pending
        (Share.CONDITIONAL, D, (grant(consumer="samr"),), True, False),
        (Share.CONDITIONAL, P, (), True, True),  # provider reads its own
    ],
)
def test_share_dataset_access(
    share: Share, consumer: str, grants: tuple[Grant, ...], listed: bool, allowed: bool
) -> None:
    policy = ds(share=share)
    assert decisions.share_dataset_listed(policy, consumer) is listed
    assert decisions.share_dataset_access(policy, consumer, grants, NOW).allowed is allowed


def test_unpublished_dataset_is_absent_even_for_provider() -> None:
    assert not decisions.share_dataset_listed(ds(published=False), P)


# ------------------------------------------------------------------ share tier: fields

G_NONE = None
G_LISTED = grant(("f",))
G_CLEAR = grant(("f",), ("f",))
G_OTHER = grant(("g",))

SHARE_FIELD_ROWS = [
    # (dataset share, field, consumer, grant, can_encrypt, action, mask)
    # the provider reads everything in clear
    (Share.CONDITIONAL, fld(level=Level.L4, pi=PI.SENSITIVE), P, G_NONE, False, Action.ALLOW, None),
    (Share.NONE, fld(level=Level.L3, mask=MaskRule.MOBILE), P, G_NONE, False, Action.ALLOW, None),
    # L1–L2 → allow
    (Share.UNCONDITIONAL, fld(level=Level.L1), D, G_NONE, False, Action.ALLOW, None),
    (Share.UNCONDITIONAL, fld(level=Level.L2), D, G_NONE, False, Action.ALLOW, None),
    # L3 or personal → mask unless the grant lists it in clear
    (
        Share.UNCONDITIONAL,
        fld(level=Level.L3, mask=MaskRule.AMOUNT_RANGE),
        D,
        G_NONE,
        False,
        Action.MASK,
        MaskRule.AMOUNT_RANGE,
    ),
    (
        Share.UNCONDITIONAL,
        fld(pi=PI.PERSONAL, mask=MaskRule.NAME),
        D,
        G_NONE,
        False,
        Action.MASK,
        MaskRule.NAME,
    ),
    (
        Share.UNCONDITIONAL,
        fld(level=Level.L3, mask=MaskRule.MOBILE),
        D,
        G_LISTED,
        False,
        Action.MASK,
        MaskRule.MOBILE,
    ),
    (Share.UNCONDITIONAL, fld(level=Level.L3, mask=MaskRule.MOBILE), D, G_CLEAR, False, Action.ALLOW, None),
    (Share.UNCONDITIONAL, fld(level=Level.L3), D, G_NONE, False, Action.DENY, None),  # no rule → deny
    # L4 or sensitive → deny unless listed, then encrypt (deny while encryption is unavailable)
    (Share.UNCONDITIONAL, fld(level=Level.L4), D, G_NONE, True, Action.DENY, None),
    (Share.UNCONDITIONAL, fld(pi=PI.SENSITIVE), D, G_OTHER, True, Action.DENY, None),
    (Share.UNCONDITIONAL, fld(level=Level.L4), D, G_LISTED, True, Action.ENCRYPT, None),
    (Share.UNCONDITIONAL, fld(pi=PI.SENSITIVE), D, G_CLEAR, True, Action.ENCRYPT, None),  # never clear
    (Share.UNCONDITIONAL, fld(level=Level.L4), D, G_LISTED, False, Action.DENY, None),
    # 有条件共享: a field outside the grant is denied, whatever its level
    (Share.CONDITIONAL, fld(level=Level.L1), D, G_NONE, False, Action.DENY, None),
    (Share.CONDITIONAL, fld(level=Level.L1), D, G_OTHER, False, Action.DENY, None),
    (Share.CONDITIONAL, fld(level=Level.L1), D, G_LISTED, False, Action.ALLOW, None),
    (
        Share.CONDITIONAL,
        fld(level=Level.L3, mask=MaskRule.NAME),
        D,
        G_LISTED,
        False,
        Action.MASK,
        MaskRule.NAME,
    ),
    (Share.CONDITIONAL, fld(level=Level.L3, mask=MaskRule.NAME), D, G_CLEAR, False, Action.ALLOW, None),
    (Share.CONDITIONAL, fld(level=Level.L4, pi=PI.SENSITIVE), D, G_LISTED, True, Action.ENCRYPT, None),
    # a field-level 有条件共享 inside an unconditionally shared dataset
    (Share.UNCONDITIONAL, fld(share=Share.CONDITIONAL), D, G_NONE, False, Action.DENY, None),
    (Share.UNCONDITIONAL, fld(share=Share.CONDITIONAL), D, G_LISTED, False, Action.ALLOW, None),
    # personal information the law makes public (法定代表人) is no more restricted than on the open tier
    (Share.UNCONDITIONAL, fld(pi=PI.PERSONAL, open_personal=True), D, G_NONE, False, Action.ALLOW, None),
    (
        Share.UNCONDITIONAL,
        fld(level=Level.L3, pi=PI.PERSONAL, open_personal=True, mask=MaskRule.NAME),
        D,
        G_NONE,
        False,
        Action.MASK,
        MaskRule.NAME,
    ),
    # 不予共享 (field override) → denied to all but the provider, grant or not
    (Share.UNCONDITIONAL, fld(share=Share.NONE), D, G_CLEAR, True, Action.DENY, None),
]


@pytest.mark.parametrize(
    ("share", "field", "consumer", "g", "can_encrypt", "action", "mask"), SHARE_FIELD_ROWS
)
def test_share_fields(
    share: Share,
    field: FieldPolicy,
    consumer: str,
    g: Grant | None,
    can_encrypt: bool,
    action: Action,
    mask: MaskRule | None,
) -> None:
    d = decisions.decide_share_field(ds(share=share), field, consumer, g, can_encrypt=can_encrypt)
    assert d.action is action, d.reason
    assert d.mask is mask
    assert d.reason


def test_field_share_none_hides_field_from_other_departments_schema() -> None:
    f = fld(share=Share.NONE)
    assert not decisions.share_field_exists(ds(), f, D)
    assert decisions.share_field_exists(ds(), f, P)


def test_active_grants_combine_rather_than_the_latest_winning() -> None:
    """The rules in detail: tests/policies/test_grant_combination.py."""
    old = grant(("a",), gid=1)
    new = grant(("b",), gid=2)
    expired = grant(("c",), gid=3, expires=NOW - timedelta(seconds=1))
    chosen = decisions.combine_grants([old, expired, new], "population", D, Tier.SHARE, NOW)
    assert chosen is not None and chosen.ids == (1, 2) and chosen.fields == {"a", "b"}


@pytest.mark.parametrize(
    ("action", "filterable"),
    [(Action.ALLOW, True), (Action.ENCRYPT, True), (Action.MASK, False), (Action.DENY, False)],
)
def test_only_clear_readable_fields_are_filterable(action: Action, filterable: bool) -> None:
    from policies.model import Decision

    assert decisions.may_filter(Decision(action, "r")) is filterable


def test_str_enums_of_share_and_open_do_not_collide_in_labels() -> None:
    from policies.model import OPEN_LABELS, SHARE_LABELS

    assert SHARE_LABELS[Share.CONDITIONAL] == "有条件共享"
    assert OPEN_LABELS[Open.CONDITIONAL] == "有条件开放"
