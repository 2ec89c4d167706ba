"""The KPI rules (policies.kpi) on plain facts: each ratio's numerator and denominator, per
department and overall, the edge cases of each definition, and no value without a denominator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from policies.kpi import (
    BY_KEY,
    DEFINITIONS,
    OVERALL,
    ApplicationFact,
    DatasetFact,
    DemandFact,
    Facts,
    QualityFact,
    Ratio,
    cataloguing,
    collection,
    compute,
    opening,
    quality_timeliness,
    sharing,
)

NOW = datetime(2025, 11, 20, 4, 0, tzinfo=UTC)


def ds(
    code: str, dept: str, published: bool = True, collected: bool = True, fields: int = 10, open_: int = 0
):
    return DatasetFact(code, dept, published, collected, fields, open_)


def test_the_plan_targets_and_order() -> None:
    assert [(d.name, d.target) for d in DEFINITIONS] == [
        ("编目率", 1.0),
        ("归集率", 1.0),
        ("数据共享率", 0.99),
        ("数据开放率", 0.25),
        ("问题数据及时整改率", 0.8),
    ]
    assert all(d.definition and d.numerator and d.denominator for d in DEFINITIONS)


def test_cataloguing_counts_drafts_and_promised_demands_in_the_inventory() -> None:
    facts = Facts(
        datasets=(ds("a", "samr"), ds("b", "samr", published=False), ds("c", "tax")),
        demands=(
            DemandFact("hrss", "tax", "will_provide"),  # promised, not catalogued yet: inventory
            DemandFact("hrss", "tax", "open"),  # not acknowledged: not inventory
            DemandFact("hrss", "samr", "cannot_provide"),
            DemandFact("hrss", "samr", "fulfilled"),  # its dataset is in the catalogue already
        ),
    )
    got = cataloguing(facts)
    assert got["samr"] == Ratio(1, 2) and got["tax"] == Ratio(1, 2) and got[OVERALL] == Ratio(2, 4)
    assert "hrss" not in got  # requesters are not attributed


def test_collection_is_over_published_datasets_only() -> None:
    facts = Facts(
        datasets=(
            ds("a", "eco"),
            ds("b", "eco", collected=False),
            ds("c", "eco", published=False, collected=False),  # a draft is not due for collection
        )
    )
    assert collection(facts) == {OVERALL: Ratio(1, 2), "eco": Ratio(1, 2)}


def test_sharing_counts_demands_and_submitted_applications_by_provider() -> None:
    facts = Facts(
        demands=(DemandFact("hrss", "police", "fulfilled"), DemandFact("samr", "police", "will_provide")),
        applications=(
            ApplicationFact("hrss", "police", "approved"),
            ApplicationFact("eco", "police", "rejected"),
            ApplicationFact("eco", "police", "returned"),
            ApplicationFact("tax", "hrss", "submitted"),
            ApplicationFact("tax", "hrss", "draft"),  # not yet a demand
        ),
    )
    got = sharing(facts)
    assert got["police"] == Ratio(2, 5) and got["hrss"] == Ratio(0, 1) and got[OVERALL] == Ratio(2, 6)


def test_opening_is_over_the_fields_of_collected_datasets() -> None:
    facts = Facts(
        datasets=(
            ds("a", "samr", fields=10, open_=8),
            ds("b", "police", fields=5, open_=0),
            ds("c", "samr", collected=False, fields=100, open_=100),  # not collected: not counted
        )
    )
    assert opening(facts) == {OVERALL: Ratio(8, 15), "samr": Ratio(8, 10), "police": Ratio(0, 5)}


def q(state: str, due_days: float, resolved_days: float | None = None, provider: str = "samr") -> QualityFact:
    """A report due `due_days` after NOW (negative: in the past), resolved `resolved_days` after NOW."""
    resolved = None if resolved_days is None else NOW + timedelta(days=resolved_days)
    return QualityFact(provider, state, NOW + timedelta(days=due_days), resolved)


def test_quality_timeliness_edge_cases() -> None:
    cases = {
        "fixed in time": (q("fixed", -5, -6), Ratio(1, 1)),
        "fixed exactly at the deadline": (q("fixed", -5, -5), Ratio(1, 1)),
        "fixed late": (q("fixed", -5, -4), Ratio(0, 1)),
        "fixed early, not yet due": (q("fixed", 2, -1), Ratio(1, 1)),
        "open and overdue": (q("open", -1), Ratio(0, 1)),
        "open, not yet due": (q("open", 1), Ratio(0, 0)),
        "disputed in time": (q("disputed", -5, -6), Ratio(0, 0)),
        "disputed late": (q("disputed", -5, -4), Ratio(0, 1)),
    }
    for name, (fact, expected) in cases.items():
        assert quality_timeliness(Facts(quality=(fact,)), NOW)[OVERALL] == expected, name


def test_quality_timeliness_per_provider() -> None:
    facts = Facts(
        quality=(q("fixed", -5, -6, "samr"), q("open", -1, None, "samr"), q("fixed", -5, -6, "tax"))
    )
    got = quality_timeliness(facts, NOW)
    assert got == {OVERALL: Ratio(2, 3), "samr": Ratio(1, 2), "tax": Ratio(1, 1)}


def test_a_zero_denominator_has_no_value_and_meets_nothing() -> None:
    kpis = compute(Facts(), NOW)
    assert [k.overall for k in kpis] == [Ratio(0, 0)] * 5
    assert all(k.overall.value is None and k.met() is None for k in kpis)


def test_met_compares_with_the_target() -> None:
    facts = Facts(datasets=(ds("a", "eco", fields=4, open_=1), ds("b", "tax", fields=4, open_=0)))
    opening_kpi = next(k for k in compute(facts, NOW) if k.definition is BY_KEY["opening"])
    assert opening_kpi.met("eco") is True  # 1/4 = 25 % meets 25 %
    assert opening_kpi.met("tax") is False
    assert opening_kpi.met() is False  # 1/8
