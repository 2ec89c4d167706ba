import itertools
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from policies.masking import (
    AMOUNT_BUCKETS,
    AMOUNT_TOP_BUCKET,
    COMPOUND_SURNAMES,
    MASKERS,
    mask,
    mask_address,
    mask_amount_range,
    mask_bank_card,
    mask_date_year,
    mask_email,
    mask_id_number,
    mask_mobile,
    mask_name,
)
from policies.model import MaskRule

# (rule, value, expected) — the behaviour table. Odd inputs must come out fully masked.
CASES: list[tuple[MaskRule, object, str]] = [
    # ID number: keep 6 + 4
    (MaskRule.ID_NUMBER, "610113198503121234", "610113********1234"),
    (MaskRule.ID_NUMBER, "11010519491231002X", "110105********002X"),
    (MaskRule.ID_NUMBER, "11010519491231002x", "110105********002x"),
    (MaskRule.ID_NUMBER, " 610113198503121234 ", "610113********1234"),
    (MaskRule.ID_NUMBER, "610113850312123", "610113*****2123"),  # old 15-digit form
    (MaskRule.ID_NUMBER, "6101131985", "******************"),
    (MaskRule.ID_NUMBER, "1234", "******************"),
    (MaskRule.ID_NUMBER, "61011319850312123A", "******************"),
    (MaskRule.ID_NUMBER, "6101131985031212345", "******************"),
    (MaskRule.ID_NUMBER, 610113198503121234, "******************"),
    (MaskRule.ID_NUMBER, "", ""),
    # mobile: keep 3 + 4
    (MaskRule.MOBILE, "13812345678", "138****5678"),
    (MaskRule.MOBILE, "+86 138 1234 5678", "138****5678"),
    (MaskRule.MOBILE, "8613812345678", "138****5678"),
    (MaskRule.MOBILE, "138-1234-5678", "138****5678"),
    (MaskRule.MOBILE, "029-88881234", "***********"),  # a landline is not a mobile
    (MaskRule.MOBILE, "12812345678", "***********"),  # no 12x mobile prefix
    (MaskRule.MOBILE, "1381234567", "***********"),
    (MaskRule.MOBILE, "5678", "***********"),
    (MaskRule.MOBILE, 13812345678, "***********"),
    (MaskRule.MOBILE, "", ""),
    # name: keep the surname
    (MaskRule.NAME, "张三", "张*"),
    (MaskRule.NAME, "张三丰", "张**"),
    (MaskRule.NAME, "欧阳娜娜", "欧阳**"),
    (MaskRule.NAME, "欧阳修", "欧阳*"),
    (MaskRule.NAME, "司马光", "司马*"),
    (MaskRule.NAME, "诸葛亮", "诸葛*"),
    (MaskRule.NAME, "上官婉儿", "上官**"),
    (MaskRule.NAME, "欧阳", "欧*"),  # two characters: single surname
    (MaskRule.NAME, "李", "*"),
    (MaskRule.NAME, " 王小明 ", "王**"),
    (MaskRule.NAME, "买买提·艾力", "买*****"),
    (MaskRule.NAME, "John Smith", "J*********"),
    (MaskRule.NAME, 42, "*"),
    (MaskRule.NAME, "", ""),
    # bank card: keep the last 4
    (MaskRule.BANK_CARD, "6222021234567890123", "***************0123"),
    (MaskRule.BANK_CARD, "6222 0212 3456 7890", "************7890"),
    (MaskRule.BANK_CARD, "622202123456", "********3456"),
    (MaskRule.BANK_CARD, "12345", "****************"),
    (MaskRule.BANK_CARD, "62220212345678901234", "****************"),  # 20 digits
    (MaskRule.BANK_CARD, "6222abcd34567890", "****************"),
    (MaskRule.BANK_CARD, 6222021234567890, "****************"),
    # address: keep to the district / county
    (MaskRule.ADDRESS, "陕西省西安市雁塔区科技路10号", "陕西省西安市雁塔区"),
    (MaskRule.ADDRESS, "陕西省宝鸡市陈仓区虢镇街道东街3号", "陕西省宝鸡市陈仓区"),
    (MaskRule.ADDRESS, "陕西省商洛市镇安县永乐街道", "陕西省商洛市镇安县"),
    (MaskRule.ADDRESS, "陕西省榆林市神木市滨河路1号", "陕西省榆林市神木市"),
    (MaskRule.ADDRESS, "陕西省西安市高新技术产业开发区丈八一路1号", "陕西省西安市高新技术产业开发区"),
    (MaskRule.ADDRESS, "西安市雁塔区小寨东路5号", "西安市雁塔区"),
    (MaskRule.ADDRESS, "北京市朝阳区建国路88号", "北京市朝阳区"),
    (MaskRule.ADDRESS, "内蒙古自治区呼和浩特市新城区中山路1号", "内蒙古自治区呼和浩特市新城区"),
    (MaskRule.ADDRESS, "吉林省延边朝鲜族自治州延吉市光明街", "吉林省延边朝鲜族自治州延吉市"),
    (MaskRule.ADDRESS, "陕西省西安市长安南路88号", "陕西省西安市"),  # cut at the first marker
    (MaskRule.ADDRESS, "陕西省科技路10号", "***"),  # no district marker
    (MaskRule.ADDRESS, "雁塔区科技路10号", "***"),  # no province/city part
    (MaskRule.ADDRESS, "西安市科技路10号", "***"),
    (MaskRule.ADDRESS, "陕西省西安市大雁塔北广场小区", "***"),  # a housing estate is not a district
    (MaskRule.ADDRESS, "科技路10号", "***"),
    (MaskRule.ADDRESS, "Room 5, 10 Keji Road", "***"),
    (MaskRule.ADDRESS, ["陕西省西安市雁塔区"], "***"),
    (MaskRule.ADDRESS, "", ""),
    # email: first character of the local part + domain
    (MaskRule.EMAIL, "alice@x.cn", "a***@x.cn"),
    (MaskRule.EMAIL, "a@x.cn", "a***@x.cn"),
    (MaskRule.EMAIL, "zhang.san@samr.shaanxi.gov.cn", "z***@samr.shaanxi.gov.cn"),
    (MaskRule.EMAIL, "alice", "***"),
    (MaskRule.EMAIL, "alice@localhost", "***"),
    (MaskRule.EMAIL, "a@b@c.cn", "***"),
    (MaskRule.EMAIL, "@x.cn", "***"),
    (MaskRule.EMAIL, 7, "***"),
    # date → year
    (MaskRule.DATE_YEAR, date(1985, 3, 12), "1985"),
    (MaskRule.DATE_YEAR, datetime(1985, 3, 12, 8, 0, tzinfo=UTC), "1985"),
    (MaskRule.DATE_YEAR, "1985-03-12", "1985"),
    (MaskRule.DATE_YEAR, "19850312", "1985"),
    (MaskRule.DATE_YEAR, "1985-03-12T08:00:00+08:00", "1985"),
    (MaskRule.DATE_YEAR, date(985, 1, 1), "0985"),
    (MaskRule.DATE_YEAR, "1985-02-30", "****"),
    (MaskRule.DATE_YEAR, "12 March 1985", "****"),
    (MaskRule.DATE_YEAR, 1985, "****"),
    (MaskRule.DATE_YEAR, "", ""),
    # amount → bucket (yuan; lower bound inclusive)
    (MaskRule.AMOUNT_RANGE, Decimal("0"), "<1万"),
    (MaskRule.AMOUNT_RANGE, Decimal("9999.99"), "<1万"),
    (MaskRule.AMOUNT_RANGE, Decimal("10000"), "1万-10万"),
    (MaskRule.AMOUNT_RANGE, 99_999, "1万-10万"),
    (MaskRule.AMOUNT_RANGE, 100_000, "10万-50万"),
    (MaskRule.AMOUNT_RANGE, 500_000.0, "50万-100万"),
    (MaskRule.AMOUNT_RANGE, 1_000_000, "100万-500万"),
    (MaskRule.AMOUNT_RANGE, "5000000", "500万-1000万"),
    (MaskRule.AMOUNT_RANGE, "9,999,999.99", "500万-1000万"),
    (MaskRule.AMOUNT_RANGE, Decimal("10000000"), ">=1000万"),
    (MaskRule.AMOUNT_RANGE, 10**12, ">=1000万"),
    (MaskRule.AMOUNT_RANGE, -0.01, "<0"),
    (MaskRule.AMOUNT_RANGE, True, "***"),
    (MaskRule.AMOUNT_RANGE, float("nan"), "***"),
    (MaskRule.AMOUNT_RANGE, float("inf"), "***"),
    (MaskRule.AMOUNT_RANGE, Decimal("NaN"), "***"),
    (MaskRule.AMOUNT_RANGE, "一百万", "***"),
    (MaskRule.AMOUNT_RANGE, [1], "***"),
    (MaskRule.AMOUNT_RANGE, "", ""),
]


@pytest.mark.parametrize(("rule", "value", "expected"), CASES)
def test_mask_table(rule: MaskRule, value: object, expected: str) -> None:
    assert mask(rule, value) == expected
    assert MASKERS[rule](value) == expected


@pytest.mark.parametrize("rule", list(MaskRule))
def test_none_stays_none(rule: MaskRule) -> None:
    assert mask(rule, None) is None


def test_every_rule_has_a_masker_and_cases() -> None:
    assert set(MASKERS) == set(MaskRule)
    assert {rule for rule, _, _ in CASES} == set(MaskRule)


def test_mask_accepts_the_rule_by_value() -> None:
    assert mask("mobile", "13812345678") == "138****5678"  # type: ignore[arg-type]


ODD_VALUES: list[object] = [
    "1",
    "12",
    "123",
    "1234",
    "12345",
    "abcdefgh",
    "张",
    "6101",
    "x@y",
    b"13812345678",
    12345,
    1.5,
    object(),
    ("13812345678",),
    {"v": "610113198503121234"},
]


@pytest.mark.parametrize("rule", [r for r in MaskRule if r not in (MaskRule.AMOUNT_RANGE,)])
@pytest.mark.parametrize("value", ODD_VALUES, ids=repr)
def test_odd_inputs_never_leak(rule: MaskRule, value: object) -> None:
    out = mask(rule, value)
    assert isinstance(out, str)
    # Nothing of the clear value survives: no run of 2+ of its characters appears in the output.
    text = value if isinstance(value, str) else repr(value)
    for i in range(len(text) - 1):
        assert text[i : i + 2] not in out, (rule, value, out)


@pytest.mark.parametrize("value", ODD_VALUES, ids=repr)
def test_amount_for_odd_inputs_is_a_bucket_or_masked(value: object) -> None:
    labels = {label for _, label in AMOUNT_BUCKETS} | {AMOUNT_TOP_BUCKET, "<0", "***"}
    assert mask(MaskRule.AMOUNT_RANGE, value) in labels


def test_masked_id_and_mobile_keep_length_and_only_the_agreed_parts() -> None:
    for clear in ["610113198503121234", "61052219400101001X"]:
        out = mask_id_number(clear)
        assert len(out) == 18 and out[:6] == clear[:6] and out[-4:] == clear[-4:]
        assert set(out[6:14]) == {"*"}
    out = mask_mobile("15912345678")
    assert out == "159****5678"


def test_compound_surnames_include_the_common_ones() -> None:
    common = {"欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "令狐"}
    assert common <= COMPOUND_SURNAMES
    for surname in COMPOUND_SURNAMES:
        assert mask_name(surname + "明") == surname + "*"
        assert mask_name(surname + "明明") == surname + "**"


def test_amount_buckets_are_increasing_and_contiguous() -> None:
    uppers = [upper for upper, _ in AMOUNT_BUCKETS]
    assert uppers == sorted(uppers)
    for (upper, label), (_, next_label) in itertools.pairwise(AMOUNT_BUCKETS):
        assert mask_amount_range(upper - Decimal("0.01")) == label
        assert mask_amount_range(upper) == next_label


def test_each_function_is_exported_for_direct_use() -> None:
    assert mask_bank_card("6222021234567890") == "************7890"
    assert mask_address("陕西省安康市汉滨区江北街道") == "陕西省安康市汉滨区"
    assert mask_email("b@c.cn") == "b***@c.cn"
    assert mask_date_year(date(2000, 1, 1)) == "2000"
