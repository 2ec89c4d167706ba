import pytest

from gateway.identifiers import (
    CREDIT_CODE_CHARSET,
    credit_code_check_char,
    id_number_check_digit,
    is_valid_credit_code,
    is_valid_id_number,
    organization_code_check_char,
)

# The two worked examples of GB 11643-1999 itself (one with check 'X'), plus a Shaanxi one.
VALID_IDS = ["11010519491231002X", "440524188001010014", "610113198503121232"]

# GB 32100-2015's own example and published codes of large companies (letter and digit checks).
VALID_CREDIT_CODES = [
    "91350100M000100Y43",
    "914403001922038216",
    "91330100716105852F",
    "91110000100010433L",
]

ID_ALPHABET = "0123456789X"


@pytest.mark.parametrize("s", VALID_IDS)
def test_valid_id_numbers(s: str) -> None:
    assert is_valid_id_number(s)
    assert id_number_check_digit(s[:17]) == s[17]


def test_check_digit_x_stands_for_ten() -> None:
    assert id_number_check_digit("11010519491231002") == "X"


@pytest.mark.parametrize("s", VALID_IDS)
def test_every_single_character_corruption_of_an_id_is_detected(s: str) -> None:
    # MOD 11-2 detects every single substitution; together with the date check nothing slips.
    for pos in range(18):
        for c in ID_ALPHABET:
            if c == s[pos]:
                continue
            corrupted = s[:pos] + c + s[pos + 1 :]
            assert not is_valid_id_number(corrupted), corrupted


def _with_check(first17: str) -> str:
    return first17 + id_number_check_digit(first17)


@pytest.mark.parametrize(
    "s",
    [
        "",
        "61011319850312123",  # 17 chars
        "6101131985031212320",  # 19 chars
        "11010519491231002x",  # lower-case x is not canonical
        _with_check("61011319850230123"),  # 30 February, check digit right
        _with_check("61011319851301123"),  # month 13
        _with_check("61011319850100123"),  # day 0
        _with_check("61011317990101123"),  # before 1800
        "６１０１１３198503121232",  # full-width digits
        " 61011319850312123",
        None,
        610113198503121232,
    ],
)
def test_invalid_id_numbers(s: object) -> None:
    assert not is_valid_id_number(s)


@pytest.mark.parametrize("bad", ["", "1234567890123456", "1101051949123100A", "1101051949123100" + "１"])
def test_id_check_digit_rejects_bad_input(bad: str) -> None:
    with pytest.raises(ValueError):
        id_number_check_digit(bad)


@pytest.mark.parametrize("s", VALID_CREDIT_CODES)
def test_valid_credit_codes(s: str) -> None:
    assert is_valid_credit_code(s)
    assert credit_code_check_char(s[:17]) == s[17]
    # Real codes also carry a valid GB 11714 organisation code in positions 9-17.
    assert organization_code_check_char(s[8:16]) == s[16]


@pytest.mark.parametrize("s", VALID_CREDIT_CODES)
def test_every_single_character_corruption_of_a_credit_code_is_detected(s: str) -> None:
    for pos in range(18):
        for c in CREDIT_CODE_CHARSET + "IOZSV":
            if c == s[pos]:
                continue
            corrupted = s[:pos] + c + s[pos + 1 :]
            assert not is_valid_credit_code(corrupted), corrupted


def test_credit_code_charset_excludes_ambiguous_letters() -> None:
    assert len(CREDIT_CODE_CHARSET) == 31
    assert not set("IOZSV") & set(CREDIT_CODE_CHARSET)


@pytest.mark.parametrize(
    "s",
    ["", "91350100M000100Y4", "91350100M000100Y433", "91350100m000100y43", None, 914403001922038216],
)
def test_invalid_credit_codes(s: object) -> None:
    assert not is_valid_credit_code(s)


@pytest.mark.parametrize("bad", ["", "91350100M000100Y", "9135010OM000100Y4", "91350100M000100y4"])
def test_credit_check_char_rejects_bad_input(bad: str) -> None:
    with pytest.raises(ValueError):
        credit_code_check_char(bad)


def test_credit_check_char_can_be_zero() -> None:
    # (31 - 0) % 31: a weighted sum divisible by 31 gives '0', not an index error.
    assert credit_code_check_char("0" * 17) == "0"


@pytest.mark.parametrize(("first8", "check"), [("M000100Y", "4"), ("19220382", "1"), ("71610585", "2")])
def test_organization_code_check(first8: str, check: str) -> None:
    assert organization_code_check_char(first8) == check


def test_organization_code_special_values() -> None:
    # Find bodies whose raw value is 10 and 11 to pin the 'X' and '0' mappings.
    seen = {organization_code_check_char(f"{n:08d}") for n in range(200)}
    assert {"X", "0"} <= seen
    with pytest.raises(ValueError):
        organization_code_check_char("1234567")
