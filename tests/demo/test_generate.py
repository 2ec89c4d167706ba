import re
from collections import Counter
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from catalogue.service import _validate
from catalogue.spec import DatasetSpec, FieldType
from gateway.demo.catalogue import (
    AQI_CITIES,
    DATASETS,
    DEMO_ENTERPRISES,
    demo_catalogue,
    demo_grants,
)
from gateway.demo.generate import AS_OF, DEFAULT_SEED, SIZES, DemoGenerator, Size
from gateway.demo.regions import DISTRICT_BY_CODE, DISTRICTS
from gateway.identifiers import is_valid_credit_code, is_valid_id_number, organization_code_check_char
from policies.masking import mask_address
from policies.model import PI, Level, MaskRule, Open, Share, Tier

SPECS = {d.code: d for d in DATASETS}
PY_TYPES = {
    FieldType.STRING: str,
    FieldType.INTEGER: int,
    FieldType.FLOAT: float,
    FieldType.DECIMAL: Decimal,
    FieldType.DATE: date,
}
MOBILE = re.compile(r"1(3[0-9]|4[579]|5[0-35-9]|6[6]|7[1235-8]|8[0-9]|9[0-35-9])[0-9]{8}")


@pytest.fixture(scope="module")
def gen() -> DemoGenerator:
    return DemoGenerator("small")


@pytest.fixture(scope="module")
def small(gen: DemoGenerator) -> dict[str, list[dict[str, Any]]]:
    return {code: list(gen.dicts(code)) for code in SPECS}


# ---- catalogue -----------------------------------------------------------------------------


def test_catalogue_matches_the_demo_contract() -> None:
    departments, datasets = demo_catalogue()
    assert [d.code for d in departments] == ["samr", "tax", "eco", "hrss", "police"]
    assert all(d.name and d.name_en for d in departments)
    by = {d.code: d for d in datasets}
    expected = {
        "enterprise_registration": ("samr", Share.UNCONDITIONAL, Open.UNCONDITIONAL),
        "tax_credit_rating": ("tax", Share.UNCONDITIONAL, Open.CONDITIONAL),
        "discharge_permit": ("eco", Share.UNCONDITIONAL, Open.UNCONDITIONAL),
        "air_quality_daily": ("eco", Share.UNCONDITIONAL, Open.UNCONDITIONAL),
        "social_insurance": ("hrss", Share.CONDITIONAL, Open.NONE),
        "population": ("police", Share.CONDITIONAL, Open.NONE),
    }
    assert {code: (d.department, d.share, d.open) for code, d in by.items()} == expected
    for spec in datasets:
        _validate(spec)  # the lead's own catalogue rules
        assert re.fullmatch(rf"610000-{spec.department.upper()}-\d{{6}}", spec.resource_code)
        assert spec.name and spec.name_en and spec.description and spec.update_cycle
        if spec.share is Share.CONDITIONAL:
            assert "凭已批准的共享申请" in spec.share_conditions
        if spec.entity:
            assert spec.field(spec.entity_field).indexed and not spec.field(spec.entity_field).nullable
    assert len({d.resource_code for d in datasets}) == len(datasets)


def test_field_classifications() -> None:
    er = SPECS["enterprise_registration"]
    rep = er.field("legal_representative")
    assert rep.level is Level.L1 and rep.pi is PI.PERSONAL and rep.open_personal and rep.mask is None
    rep_id = er.field("legal_rep_id_number")
    assert (rep_id.level, rep_id.pi, rep_id.share, rep_id.open, rep_id.mask) == (
        Level.L4, PI.SENSITIVE, Share.CONDITIONAL, Open.NONE, MaskRule.ID_NUMBER
    )  # fmt: skip
    phone = er.field("contact_phone")
    assert (phone.level, phone.pi, phone.open) == (Level.L3, PI.PERSONAL, Open.NONE)
    assert phone.mask is MaskRule.MOBILE
    assert SPECS["tax_credit_rating"].field("tax_paid_amount").mask is MaskRule.AMOUNT_RANGE
    si = SPECS["social_insurance"]
    employer = si.field("employer_credit_code")
    assert employer.references is not None and employer.link_name == "employer"
    pop = SPECS["population"]
    assert pop.field("id_number").level is Level.L4 and pop.field("id_number").pi is PI.SENSITIVE
    assert pop.field("name").mask is MaskRule.NAME
    assert pop.field("birth_date").mask is MaskRule.DATE_YEAR
    assert pop.field("ethnicity").pi is PI.SENSITIVE
    assert pop.field("household_address").mask is MaskRule.ADDRESS
    assert pop.field("phone").mask is MaskRule.MOBILE
    assert pop.field("district").level is Level.L1


def test_every_personal_field_below_l4_has_a_mask_or_is_open_by_law() -> None:
    # Otherwise the share tier could only deny it (policies.decisions): say so in the catalogue.
    for spec in DATASETS:
        for f in spec.fields:
            if f.pi is PI.PERSONAL and f.mask is None:
                assert f.open_personal or f.name == "gender", (spec.code, f.name)


def test_demo_grants_and_enterprise() -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime(2025, 3, 1, tzinfo=UTC)
    grants = {g.consumer: g for g in demo_grants(now)}
    hrss = grants["hrss"]
    assert (hrss.tier, hrss.dataset, hrss.purpose) == (Tier.SHARE, "population", "社保待遇资格认证")
    assert set(hrss.fields) == {"id_number", "name", "birth_date"}
    assert set(hrss.clear_fields) == {"name", "birth_date"}
    assert hrss.expires_at == now + timedelta(days=365)
    bank = grants["demo-bank"]
    assert (bank.tier, bank.dataset, bank.fields) == (Tier.OPEN, "tax_credit_rating", ())
    assert "samr" not in grants
    bank_ent, credit = DEMO_ENTERPRISES
    assert (bank_ent.code, bank_ent.name) == ("demo-bank", "示例银行股份有限公司")
    assert (credit.code, credit.name) == ("demo-credit", "示例征信服务有限公司")  # no grant: it applies
    assert "demo-credit" not in grants
    assert all(is_valid_credit_code(e.credit_code) for e in DEMO_ENTERPRISES)
    for g in grants.values():
        for name in (*g.fields, *g.clear_fields):
            SPECS[g.dataset].field(name)


# ---- rows ----------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", DATASETS, ids=lambda s: s.code)
def test_rows_follow_field_order_and_types(spec: DatasetSpec, gen: DemoGenerator) -> None:
    rows = list(gen.rows(spec.code))
    assert rows and len(rows) == gen.count(spec.code)
    assert gen.columns(spec.code) == tuple(f.name for f in spec.fields)
    for row in rows:
        assert len(row) == len(spec.fields)
        for f, value in zip(spec.fields, row, strict=True):
            if value is None:
                assert f.nullable, (spec.code, f.name)
            else:
                assert type(value) is PY_TYPES[f.type], (spec.code, f.name, value)


def test_same_seed_same_rows_and_streams_are_independent(gen: DemoGenerator) -> None:
    a, b = gen, DemoGenerator("small", DEFAULT_SEED)
    # b asks in reverse order: one dataset's stream must not depend on another's.
    b_rows = {code: list(b.rows(code)) for code in reversed(list(SPECS))}
    for code in SPECS:
        assert list(a.rows(code)) == b_rows[code], code
        assert list(a.rows(code)) == b_rows[code], f"{code}: second call differs"
    other = DemoGenerator("small", seed=DEFAULT_SEED + 1)
    assert list(other.rows("population"))[:10] != b_rows["population"][:10]


def test_people(small: dict[str, list[dict[str, Any]]]) -> None:
    people = small["population"]
    assert len(people) == SIZES["small"].people
    assert len({p["id_number"] for p in people}) == len(people)
    for p in people:
        ident = p["id_number"]
        assert is_valid_id_number(ident)
        assert ident[:6] == p["district_code"] and DISTRICT_BY_CODE[ident[:6]].name == p["district"]
        assert ident[6:14] == p["birth_date"].strftime("%Y%m%d")
        assert date(1940, 1, 1) <= p["birth_date"] <= date(2008, 12, 31)
        assert (int(ident[16]) % 2 == 1) == (p["gender"] == "男")
        assert 2 <= len(p["name"]) <= 4
        assert p["phone"] is None or MOBILE.fullmatch(p["phone"]), p["phone"]
        if p["birth_date"].year > AS_OF.year - 12:
            assert p["phone"] is None
        district = DISTRICT_BY_CODE[p["district_code"]]
        assert mask_address(p["household_address"]) == f"陕西省{district.city.name}{district.name}"
    genders = Counter(p["gender"] for p in people)
    assert 0.45 < genders["男"] / len(people) < 0.57
    assert Counter(p["ethnicity"] for p in people).most_common(1)[0][0] == "汉族"
    # Names are realistic: common surnames dominate, a few compound ones appear at scale.
    surnames = Counter(p["name"][0] for p in people)
    assert {"王", "李", "张"} <= {s for s, _ in surnames.most_common(6)}
    # Many districts are represented, weighted towards Xi'an.
    codes = Counter(p["district_code"] for p in people)
    assert len(codes) > 80
    assert sum(n for c, n in codes.items() if c.startswith("6101")) > len(people) * 0.15


def test_enterprises_and_their_legal_representatives(small: dict[str, list[dict[str, Any]]]) -> None:
    people = {p["id_number"]: p for p in small["population"]}
    enterprises = small["enterprise_registration"]
    assert len(enterprises) == SIZES["small"].enterprises
    assert len({e["credit_code"] for e in enterprises}) == len(enterprises)
    assert len({e["name"] for e in enterprises}) == len(enterprises)
    for e in enterprises:
        code = e["credit_code"]
        assert is_valid_credit_code(code) and code[:2] == "91"
        assert organization_code_check_char(code[8:16]) == code[16]
        assert code[2:8] in {e["district_code"], DISTRICT_BY_CODE[e["district_code"]].city.code, "610000"}
        rep = people[e["legal_rep_id_number"]]  # a real person in population
        assert rep["name"] == e["legal_representative"]
        assert rep["birth_date"].year <= 1999 and e["establishment_date"] <= AS_OF
        assert (e["establishment_date"] - rep["birth_date"]).days >= 19 * 365
        assert MOBILE.fullmatch(e["contact_phone"])
        assert e["registered_address"].startswith("陕西省")
        assert e["registered_capital"] > 0
    assert Counter(e["status"] for e in enterprises).most_common(1)[0][0] == "存续"


def test_tax_ratings_and_permits_cover_subsets_of_enterprises(small: dict[str, list[dict[str, Any]]]) -> None:
    enterprises = {e["credit_code"]: e for e in small["enterprise_registration"]}
    ratings = small["tax_credit_rating"]
    assert 0 < len({r["credit_code"] for r in ratings}) < len(enterprises)
    for r in ratings:
        e = enterprises[r["credit_code"]]
        assert r["taxpayer_name"] == e["name"] and e["status"] == "存续"
        assert r["rating"] in "ABMCD" and r["rating_year"] >= e["establishment_date"].year
        assert r["evaluated_on"].year == r["rating_year"] + 1
        assert r["tax_paid_amount"] == r["tax_paid_amount"].quantize(Decimal("0.01"))
    assert len({(r["credit_code"], r["rating_year"]) for r in ratings}) == len(ratings)
    permits = small["discharge_permit"]
    assert 0 < len(permits) < len(enterprises)
    assert len({p["permit_number"] for p in permits}) == len(permits)
    for p in permits:
        e = enterprises[p["credit_code"]]
        assert p["unit_name"] == e["name"] and p["district_code"] == e["district_code"]
        assert re.fullmatch(re.escape(p["credit_code"]) + r"\d{3}P", p["permit_number"])
        assert p["valid_from"] < p["valid_to"]


def test_air_quality_covers_every_city_every_day(small: dict[str, list[dict[str, Any]]]) -> None:
    rows = small["air_quality_daily"]
    days = SIZES["small"].aqi_days
    assert len(rows) == days * len(AQI_CITIES) == days * 11
    assert Counter(r["city"] for r in rows) == dict.fromkeys(AQI_CITIES, days)
    dates = sorted({r["date"] for r in rows})
    assert dates[-1] == AS_OF and (dates[-1] - dates[0]).days == days - 1
    levels = [(50, "优"), (100, "良"), (150, "轻度污染"), (200, "中度污染"), (300, "重度污染")]
    levels.append((10**6, "严重污染"))
    for r in rows:
        assert r["quality_level"] == next(label for top, label in levels if r["aqi"] <= top)
        assert (r["primary_pollutant"] is None) == (r["aqi"] <= 50)
        assert r["pm25"] > 0 and r["pm10"] >= r["pm25"] * 0.9
    # The heating season is dirtier than summer in Xi'an.
    xian = [r for r in rows if r["city"] == "西安市"]
    winter = [r["pm25"] for r in xian if r["date"].month in (1, 12)]
    summer = [r["pm25"] for r in xian if r["date"].month in (6, 7)]
    assert sum(winter) / len(winter) > 1.5 * sum(summer) / len(summer)


def test_social_insurance_joins_people_and_employers(small: dict[str, list[dict[str, Any]]]) -> None:
    people = {p["id_number"]: p for p in small["population"]}
    enterprises = {e["credit_code"]: e for e in small["enterprise_registration"]}
    rows = small["social_insurance"]
    assert rows
    for r in rows:
        p = people[r["id_number"]]
        assert p["name"] == r["name"]
        age = AS_OF.year - p["birth_date"].year
        assert 18 <= age < (60 if p["gender"] == "男" else 55)
        employer = enterprises[r["employer_credit_code"]]
        assert employer["name"] == r["employer_name"] and employer["status"] == "存续"
        assert Decimal(4000) < r["contribution_base"] < Decimal(21000)
        assert re.fullmatch(r"20\d\d-(0[1-9]|1[0-2])", r["contribution_month"])
    assert len({(r["id_number"], r["insurance_type"]) for r in rows}) == len(rows)
    assert {r["insurance_type"] for r in rows} == {"企业职工基本养老保险", "失业保险", "工伤保险"}


def test_sizes() -> None:
    assert SIZES["large"].people >= 1_000_000
    assert SIZES["large"].enterprises > SIZES["small"].enterprises
    tiny = DemoGenerator(Size("tiny", people=300, enterprises=40, aqi_days=3))
    assert tiny.count("population") == 300 and tiny.count("air_quality_daily") == 33
    assert len(list(tiny.rows("enterprise_registration"))) == 40


def test_districts_are_real_shaanxi_codes() -> None:
    assert len(DISTRICTS) == 107  # Shaanxi's county-level divisions
    assert DISTRICT_BY_CODE["610113"].name == "雁塔区" and DISTRICT_BY_CODE["610113"].city.name == "西安市"
    assert all(re.fullmatch(r"61(0[1-9]|10)\d\d", d.code) for d in DISTRICTS)
