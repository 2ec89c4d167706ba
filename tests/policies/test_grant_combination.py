"""Several grants of one consumer on one dataset combine: the union of their fields, the
strictest treatment where they overlap; never "the newest replaces" (issue 15, item 2)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from policies import decisions
from policies.model import (
    PI,
    Action,
    DatasetPolicy,
    FieldPolicy,
    Grant,
    GrantSet,
    Level,
    MaskRule,
    Open,
    Share,
    Tier,
    Treatment,
)

NOW = datetime(2026, 11, 22, tzinfo=UTC)
LATER = NOW + timedelta(days=30)
P, D = "police", "hrss"

POPULATION = DatasetPolicy("population", "610000-POLICE-000001", P, Share.CONDITIONAL, Open.NONE)
ID_NUMBER = FieldPolicy("id_number", Level.L4, PI.SENSITIVE, mask=MaskRule.ID_NUMBER)
NAME = FieldPolicy("name", Level.L3, PI.PERSONAL, mask=MaskRule.NAME)
BIRTH_DATE = FieldPolicy("birth_date", Level.L3, PI.PERSONAL, mask=MaskRule.DATE_YEAR)
DISTRICT = FieldPolicy("district", Level.L1)
NO_MASK = FieldPolicy("note", Level.L3)  # L3 with no masking rule: only in clear, or not at all
FIELDS = {f.name: f for f in (ID_NUMBER, NAME, BIRTH_DATE, DISTRICT, NO_MASK)}


def g(
    gid: int,
    fields: tuple[str, ...] = (),
    clear: tuple[str, ...] = (),
    *,
    consumer: str = D,
    dataset: str = "population",
    tier: Tier = Tier.SHARE,
    expires: datetime | None = LATER,
    approved: bool = True,
    purpose: str = "社保待遇资格认证",
) -> Grant:
    return Grant(
        gid, dataset, consumer, tier, frozenset(fields), frozenset(clear), purpose, expires, approved
    )


def share(
    grants: list[Grant], field: FieldPolicy, *, can_encrypt: bool = True, dataset: DatasetPolicy = POPULATION
):
    combined = decisions.combine_grants(grants, dataset.code, D, Tier.SHARE, NOW)
    return decisions.decide_share_field(dataset, field, D, combined, can_encrypt=can_encrypt)


# ------------------------------------------------------------------ which grants count


def test_no_grant_is_none() -> None:
    assert decisions.combine_grants([], "population", D, Tier.SHARE, NOW) is None


@pytest.mark.parametrize(
    "other",
    [
        g(2, ("name",), consumer="samr"),  # another consumer's
        g(2, ("name",), dataset="household"),  # another dataset
        g(2, ("name",), tier=Tier.OPEN),  # the other tier
        g(2, ("name",), expires=NOW - timedelta(seconds=1)),  # expired
        g(2, ("name",), expires=NOW),  # expires exactly now: no longer valid
        g(2, ("name",), approved=False),  # pending (an application not decided yet)
    ],
    ids=["consumer", "dataset", "tier", "expired", "expiring-now", "pending"],
)
def test_only_the_consumers_active_grants_on_this_dataset_and_tier_count(other: Grant) -> None:
    combined = decisions.combine_grants([g(1, ("birth_date",)), other], "population", D, Tier.SHARE, NOW)
    assert combined is not None and combined.ids == (1,) and combined.fields == {"birth_date"}
    alone = decisions.combine_grants([other], "population", D, Tier.SHARE, NOW)
    assert alone is None


def test_a_grant_without_expiry_counts() -> None:
    combined = decisions.combine_grants([g(1, ("name",), expires=None)], "population", D, Tier.SHARE, NOW)
    assert combined is not None and combined.expires_at is None


# ------------------------------------------------------------------ the README case


def test_readme_case_a_new_grant_for_name_adds_and_takes_nothing_away() -> None:
    demo = g(1, ("id_number", "name", "birth_date"), ("name", "birth_date"))
    new = g(5, ("name",), ("name",), purpose="待遇发放核验")
    for grants in ([demo, new], [new, demo]):  # order in which they were loaded is irrelevant
        assert share(grants, ID_NUMBER).action is Action.ENCRYPT
        assert share(grants, BIRTH_DATE).action is Action.ALLOW
        assert share(grants, NAME).action is Action.ALLOW
        assert share(grants, DISTRICT).action is Action.DENY  # conditional dataset, listed by neither
    assert share([demo, new], ID_NUMBER).grant_id == 1
    assert share([demo, new], NAME).grant_id == 1  # both give it in clear: the oldest is named


def test_a_new_grant_listing_a_field_masked_keeps_it_masked_even_if_another_gives_clear() -> None:
    demo = g(1, ("id_number", "name", "birth_date"), ("name", "birth_date"))
    narrower = g(6, ("name",))  # name, masked
    d = share([demo, narrower], NAME)
    assert d.action is Action.MASK and d.mask is MaskRule.NAME
    assert d.grant_id == 6  # the grant whose (stricter) treatment applied
    assert "strictest" in d.reason
    assert share([demo, narrower], BIRTH_DATE).action is Action.ALLOW  # untouched by the other grant
    assert share([demo, narrower], ID_NUMBER).action is Action.ENCRYPT


# ------------------------------------------------------------------ the rules, exhaustively

CHOICES: tuple[Treatment | None, ...] = (None, Treatment.MASKED, Treatment.CLEAR)


def _grant_for(gid: int, field: str, t: Treatment | None) -> Grant:
    if t is None:
        return g(gid, ("unrelated",))  # says nothing about `field`
    return g(gid, (field,), (field,) if t is Treatment.CLEAR else ())


@pytest.mark.parametrize("field", list(FIELDS.values()), ids=list(FIELDS))
@pytest.mark.parametrize("choices", list(itertools.product(CHOICES, repeat=3)), ids=str)
@pytest.mark.parametrize("can_encrypt", [True, False])
def test_combination_equals_one_grant_with_the_strictest_treatment(
    field: FieldPolicy, choices: tuple[Treatment | None, ...], can_encrypt: bool
) -> None:
    """For every field class and every way three grants can treat it, the combined decision is
    the decision under one grant carrying the strictest of the treatments given."""
    grants = [_grant_for(i + 1, field.name, t) for i, t in enumerate(choices)]
    given = [t for t in choices if t is not None]
    strictest = min(given) if given else None
    combined = share(grants, field, can_encrypt=can_encrypt)
    single = share([_grant_for(1, field.name, strictest)], field, can_encrypt=can_encrypt)
    assert combined.action is single.action
    assert combined.mask is single.mask
    if strictest is None:
        assert combined.grant_id is None
    else:
        assert combined.grant_id == 1 + choices.index(strictest)  # the oldest with that treatment


@pytest.mark.parametrize("dataset_share", [Share.CONDITIONAL, Share.UNCONDITIONAL])
def test_adding_a_grant_never_takes_a_readable_field_away(dataset_share: Share) -> None:
    """Over every subset of a pool of grants: a superset reads every field a subset reads."""
    dataset = DatasetPolicy("population", "610000-POLICE-000001", P, dataset_share, Open.NONE)
    pool = [
        g(1, ("id_number", "name", "birth_date"), ("name", "birth_date")),
        g(2, ("name",)),
        g(3, ("note",), ("note",)),
        g(4, ("district", "birth_date")),
    ]
    subsets = [list(c) for r in range(len(pool) + 1) for c in itertools.combinations(pool, r)]
    for small in subsets:
        for big in subsets:
            if not {x.id for x in small} <= {x.id for x in big}:
                continue
            for f in FIELDS.values():
                if share(small, f, dataset=dataset).readable:
                    assert share(big, f, dataset=dataset).readable, (f.name, small, big)


def test_l4_sensitive_is_always_encrypted_whatever_the_grants_say() -> None:
    for grants in (
        [g(1, ("id_number",), ("id_number",))],
        [g(1, ("id_number",)), g(2, ("id_number",), ("id_number",))],
    ):
        assert share(grants, ID_NUMBER).action is Action.ENCRYPT
        assert share(grants, ID_NUMBER, can_encrypt=False).action is Action.DENY


def test_treatment_order_is_masked_then_encrypted_then_clear() -> None:
    assert Treatment.MASKED < Treatment.ENCRYPTED < Treatment.CLEAR


def test_unlisted_field_of_an_unconditional_dataset_names_no_grant() -> None:
    """Nothing was needed from a grant to read it, so the audit log names none."""
    dataset = DatasetPolicy("population", "610000-POLICE-000001", P, Share.UNCONDITIONAL, Open.NONE)
    d = share([g(1, ("name",))], DISTRICT, dataset=dataset)
    assert d.action is Action.ALLOW and d.grant_id is None
    assert share([g(1, ("district",))], DISTRICT, dataset=dataset).grant_id == 1


# ------------------------------------------------------------------ the combined view


def test_grant_set_summary() -> None:
    a = g(3, ("name",), expires=NOW + timedelta(days=10), purpose="认证")
    b = g(1, ("birth_date",), expires=None, purpose="发放")
    c = g(2, ("name",), expires=NOW + timedelta(days=5), purpose="认证")
    s = GrantSet.of(a, b, c)
    assert s.ids == (1, 2, 3)
    assert s.fields == {"name", "birth_date"}
    assert s.expires_at == NOW + timedelta(days=5)  # the view first changes when c expires
    assert s.purposes == ("发放", "认证")
    assert s.decided_by("nothing") is None and s.treatment("nothing") is None


def test_share_dataset_access_carries_every_active_grant() -> None:
    grants = [g(1, ("name",)), g(2, ("birth_date",)), g(3, ("note",), expires=NOW)]
    access = decisions.share_dataset_access(POPULATION, D, grants, NOW)
    assert access.allowed and access.grant is not None and access.grant.ids == (1, 2)


# ------------------------------------------------------------------ open tier

TAX = DatasetPolicy("tax_credit_rating", "610000-TAX-000001", "tax", Share.UNCONDITIONAL, Open.CONDITIONAL)
CREDIT = FieldPolicy("credit_code", Level.L1)
TAXPAYER = FieldPolicy("taxpayer_name", Level.L1)
REP = FieldPolicy("legal_rep", Level.L1, PI.PERSONAL, mask=MaskRule.NAME, open_personal=True)
ENT = "demo-bank"


def _open(grants: list[Grant], field: FieldPolicy):
    access = decisions.open_dataset_access(TAX, ENT, grants, NOW)
    assert access.allowed
    return decisions.decide_open_field(TAX, field, access.grant)


def og(gid: int, fields: tuple[str, ...] = ()) -> Grant:
    return g(gid, fields, consumer=ENT, dataset="tax_credit_rating", tier=Tier.OPEN)


def test_open_grant_without_fields_is_the_whole_open_view() -> None:
    for f in (CREDIT, TAXPAYER):
        d = _open([og(1)], f)
        assert d.action is Action.ALLOW and d.grant_id == 1
    assert _open([og(1)], REP).action is Action.MASK


def test_open_grant_with_fields_serves_only_those() -> None:
    assert _open([og(1, ("credit_code",))], CREDIT).action is Action.ALLOW
    d = _open([og(1, ("credit_code",))], TAXPAYER)
    assert d.action is Action.DENY and "not in an approved grant" in d.reason


def test_open_grants_combine_and_a_whole_view_grant_covers_everything() -> None:
    assert _open([og(1, ("credit_code",)), og(2, ("taxpayer_name",))], TAXPAYER).grant_id == 2
    assert _open([og(1, ("credit_code",)), og(2)], TAXPAYER).grant_id == 2
    assert _open([og(1, ("credit_code",)), og(2)], CREDIT).grant_id == 1


def test_a_grant_cannot_open_what_the_classification_keeps_closed() -> None:
    secret = FieldPolicy("taxpayer_phone", Level.L3, PI.PERSONAL, mask=MaskRule.MOBILE)
    assert _open([og(1, ("taxpayer_phone",))], secret).action is Action.DENY
    assert _open([og(1)], secret).action is Action.DENY


def test_public_view_without_grant_is_unchanged() -> None:
    """The explorer asks without a grant: the whole open view (dataset access is checked apart)."""
    assert decisions.decide_open_field(TAX, TAXPAYER).action is Action.ALLOW
