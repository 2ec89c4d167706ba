"""How row-scoped grants combine (policies.model.GrantSet.of) and what the share tier decides
with them: a scoped grant counts only where every row read is inside its scope."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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
    scope_within,
)

NOW = datetime(2026, 12, 3, tzinfo=UTC)
X = (("district", ("雁塔区",)),)
XY = (("district", ("碑林区", "雁塔区")),)
Y = (("district", ("碑林区",)),)
X_AND_CODE = (("district", ("雁塔区",)), ("district_code", ("610113",)))


def g(i: int, fields: tuple[str, ...], scope: object = None) -> Grant:
    return Grant(
        id=i,
        dataset="population",
        consumer="d",
        tier=Tier.SHARE,
        fields=frozenset(fields),
        expires_at=NOW + timedelta(days=30),
        row_scope=scope,  # type: ignore[arg-type]
    )


def test_scope_within() -> None:
    assert scope_within(X, XY) and not scope_within(XY, X)
    assert scope_within(X_AND_CODE, X) and not scope_within(X, X_AND_CODE)
    assert scope_within(X, ()) and not scope_within((), X)


def test_unscoped_grants_are_as_before() -> None:
    s = GrantSet.of(g(2, ("a",)), g(1, ("b",)))
    assert s.ids == (1, 2) and s.rows is None and s.withheld == ()


def test_an_unscoped_grant_opens_every_row_and_withholds_the_scoped() -> None:
    s = GrantSet.of(g(1, ("name",)), g(2, ("phone",), X))
    assert s.rows is None and s.ids == (1,) and [w.id for w in s.withheld] == [2]
    assert s.fields == {"name"}


def test_rows_not_from_grants_withhold_every_scoped_grant() -> None:
    s = GrantSet.of(g(1, ("phone",), X), rows_from_grants=False)
    assert s.rows is None and s.grants == () and [w.id for w in s.withheld] == [1]


def test_scoped_grants_limit_the_rows() -> None:
    same = GrantSet.of(g(1, ("a",), X), g(2, ("b",), X))
    assert same.rows == (X,) and same.ids == (1, 2)
    nested = GrantSet.of(g(1, ("a",), XY), g(2, ("b",), X))
    assert nested.rows == (XY, X) and nested.ids == (1,) and [w.id for w in nested.withheld] == [2]
    disjoint = GrantSet.of(g(1, ("a",), X), g(2, ("b",), Y))
    assert disjoint.rows == (X,) and disjoint.ids == (1,) and [w.id for w in disjoint.withheld] == [2]


POP = DatasetPolicy("population", "R-1", "police", Share.CONDITIONAL, Open.NONE)
ENT = DatasetPolicy("enterprise_registration", "R-2", "samr", Share.UNCONDITIONAL, Open.NONE)
PHONE = FieldPolicy("phone", Level.L3, PI.PERSONAL, mask=MaskRule.MOBILE)


def test_share_access_carries_the_rows() -> None:
    access = decisions.share_dataset_access(POP, "d", [g(1, ("phone",), X)], NOW)
    assert access.allowed and access.grant is not None and access.grant.rows == (X,)
    # a dataset every department reads: the scoped grant limits nothing, so it gives nothing
    ent = [Grant(1, "enterprise_registration", "d", Tier.SHARE, frozenset({"phone"}), row_scope=X)]
    access = decisions.share_dataset_access(ENT, "d", ent, NOW)
    assert access.allowed and access.grant is None


def test_a_withheld_field_says_why() -> None:
    grants = [g(1, ("name",)), g(2, ("phone",), X)]
    access = decisions.share_dataset_access(POP, "d", grants, NOW)
    assert access.grant is not None and access.grant.rows is None
    d = decisions.decide_share_field(POP, PHONE, "d", access.grant, can_encrypt=True)
    assert d.action is Action.DENY and "row scope" in d.reason
    alone = decisions.share_dataset_access(POP, "d", [g(2, ("phone",), X)], NOW)
    d = decisions.decide_share_field(POP, PHONE, "d", alone.grant, can_encrypt=True)
    assert d.action is Action.MASK and d.grant_id == 2
