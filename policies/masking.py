"""脱敏: one pure function per MaskRule, and `mask(rule, value)` to dispatch.

What each rule keeps (DESIGN.md section 4):

| rule          | keeps                                   | example                                  |
| ------------- | --------------------------------------- | ---------------------------------------- |
| ID_NUMBER     | first 6 (region) + last 4               | 610113********1234                       |
| MOBILE        | first 3 (carrier) + last 4              | 138****5678                              |
| NAME          | the surname (compound ones whole)       | 张*, 欧阳**                              |
| BANK_CARD     | last 4                                  | ************1234                         |
| ADDRESS       | province / city / district or county    | 陕西省西安市雁塔区(科技路10号)           |
| EMAIL         | local part's first character + domain   | a***@x.cn                                |
| DATE_YEAR     | the year                                | 1985                                     |
| AMOUNT_RANGE  | a bucket (yuan, see AMOUNT_BUCKETS)     | 1万-10万                                 |

Rules of the house:
- `None` stays `None`; an empty string stays empty (there is nothing to hide).
- Anything a rule does not recognise (wrong type, wrong length, stray characters) becomes
  the rule's fully masked form. A masker never returns any part of a value it could not parse:
  "keep the last 4" on a 5-character string would publish most of it.
- Output is always `str`, whatever the column type, so masked fields are typed String.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from policies.model import MaskRule

# Fully masked forms, returned for values a rule cannot parse.
FULL_ID_NUMBER = "*" * 18
FULL_MOBILE = "*" * 11
FULL_NAME = "*"
FULL_BANK_CARD = "*" * 16
FULL_ADDRESS = "***"
FULL_EMAIL = "***"
FULL_DATE_YEAR = "****"
FULL_AMOUNT = "***"

# ---- ID number ----------------------------------------------------------------------------

_ID_RE = re.compile(r"[0-9]{17}[0-9Xx]|[0-9]{15}")  # 18-digit GB 11643, or the old 15-digit form


def mask_id_number(value: object) -> str:
    if not isinstance(value, str):
        return FULL_ID_NUMBER
    s = value.strip()
    if not s:
        return ""
    if not _ID_RE.fullmatch(s):
        return FULL_ID_NUMBER
    return s[:6] + "*" * (len(s) - 10) + s[-4:]


# ---- mobile -------------------------------------------------------------------------------

_MOBILE_RE = re.compile(r"(?:\+?86)?(1[3-9][0-9]{9})")
_PHONE_SEPARATORS = re.compile(r"[\s\-()]")


def mask_mobile(value: object) -> str:
    """Mainland mobile numbers, with or without +86 and separators; anything else fully masked."""
    if not isinstance(value, str):
        return FULL_MOBILE
    s = _PHONE_SEPARATORS.sub("", value)
    if not s:
        return ""
    m = _MOBILE_RE.fullmatch(s)
    if not m:
        return FULL_MOBILE
    number = m.group(1)
    return number[:3] + "****" + number[-4:]


# ---- name ---------------------------------------------------------------------------------

# 复姓 kept whole. A two-character name is never read as a compound surname (欧阳 alone is
# more likely 欧 + 阳), so only names of three characters or more use this list.
_COMPOUND_SURNAMES_TEXT = """
欧阳 司马 诸葛 上官 东方 皇甫 尉迟 公孙 慕容 令狐 长孙 宇文 司徒 夏侯 轩辕 端木 独孤 南宫 西门 百里 呼延
澹台 公冶 太史 申屠 万俟 闻人 赫连 钟离 宗政 濮阳 淳于 单于 仲孙 东郭 拓跋 鲜于 闾丘 司空 亓官 司寇 子车
颛孙 巫马 公西 漆雕 乐正 壤驷 公良 梁丘 左丘 东门 第五 羊舌 微生 公羊 谷梁 段干 贺兰 完颜 纳兰
"""
COMPOUND_SURNAMES = frozenset(_COMPOUND_SURNAMES_TEXT.split())


def surname_length(name: str) -> int:
    """How many leading characters of a (stripped, non-empty) Chinese name are the surname."""
    if len(name) >= 3 and name[:2] in COMPOUND_SURNAMES:
        return 2
    return 1


def mask_name(value: object) -> str:
    """Keep the surname, one '*' per remaining character: 张三 → 张*, 欧阳娜娜 → 欧阳**, 李 → *.

    Names in other scripts keep their first character only (张 stands for any first letter)."""
    if not isinstance(value, str):
        return FULL_NAME
    s = value.strip()
    if not s:
        return ""
    if len(s) == 1:
        return FULL_NAME
    keep = surname_length(s) if _is_han(s[0]) else 1
    # Length preserved: a name's length is not what protection is for, and it keeps tables legible.
    return s[:keep] + "*" * (len(s) - keep)


def _is_han(ch: str) -> bool:
    return "\u3400" <= ch <= "\u9fff" or "\U00020000" <= ch <= "\U0003134f"


# ---- bank card ----------------------------------------------------------------------------


def mask_bank_card(value: object) -> str:
    """Keep the last 4 of a 12-19 digit card number (spaces and hyphens ignored)."""
    if not isinstance(value, str):
        return FULL_BANK_CARD
    s = _PHONE_SEPARATORS.sub("", value)
    if not s:
        return ""
    if not (s.isascii() and s.isdigit() and 12 <= len(s) <= 19):
        return FULL_BANK_CARD
    return "*" * (len(s) - 4) + s[-4:]


# ---- address ------------------------------------------------------------------------------

# Characters that never occur in a province, city or district name but do in street-level
# detail. A segment containing one is not an administrative name, so nothing after it leaks
# through a false "district". (Two real districts, 唐山 路北区/路南区, fall back to fully masked.)
_NOT_ADMIN = r"0-9０-９A-Za-z省市区县旗路街巷号弄栋楼室村组院\s"
_ADDRESS_RE = re.compile(
    rf"(?P<province>[^{_NOT_ADMIN}]{{2,7}}?(?:省|自治区|特别行政区))?"
    rf"(?P<city>[^{_NOT_ADMIN}]{{2,12}}?(?:市|自治州|地区|盟))?"
    rf"(?P<district>[^{_NOT_ADMIN}]{{1,10}}?(?:区|县|市|旗))"
)


# Words ending in 区 that name a place below the district (a housing estate, a campus…).
_SUB_DISTRICT_SUFFIXES = ("小区", "社区", "校区", "景区", "厂区", "街区", "园区", "片区", "营区", "辖区")


def mask_address(value: object) -> str:
    """Keep the address down to the district or county: 陕西省西安市雁塔区科技路10号 → 陕西省西安市雁塔区.

    The cut is after the first 区/县/市/旗 that follows a province or city part (so a
    county-level city counts: 陕西省榆林市神木市… → 陕西省榆林市神木市). Without a province or
    city part, or without such a marker, the whole address is masked as '***'. This is a
    heuristic on the text: a malformed address can keep at most a short place name, never a
    house number or a street (see _NOT_ADMIN)."""
    if not isinstance(value, str):
        return FULL_ADDRESS
    s = value.strip()
    if not s:
        return ""
    m = _ADDRESS_RE.match(s)
    if not m or not (m.group("province") or m.group("city")):
        return FULL_ADDRESS
    if m.group("district").endswith(_SUB_DISTRICT_SUFFIXES):
        return FULL_ADDRESS
    return m.group(0)


# ---- email --------------------------------------------------------------------------------

_EMAIL_RE = re.compile(r"([^@\s]+)@([^@\s]+\.[^@\s]+)")


def mask_email(value: object) -> str:
    """Keep the local part's first character and the domain: alice@x.cn → a***@x.cn."""
    if not isinstance(value, str):
        return FULL_EMAIL
    s = value.strip()
    if not s:
        return ""
    m = _EMAIL_RE.fullmatch(s)
    if not m:
        return FULL_EMAIL
    return f"{m.group(1)[0]}***@{m.group(2)}"


# ---- date → year --------------------------------------------------------------------------


def mask_date_year(value: object) -> str:
    """The year of a date, datetime or ISO 8601 string (1985-03-12, 19850312, 1985-03-12T08:00:00+08:00)."""
    if isinstance(value, date):  # datetime is a date too
        return f"{value.year:04d}"
    if not isinstance(value, str):
        return FULL_DATE_YEAR
    s = value.strip()
    if not s:
        return ""
    try:
        parsed = datetime.fromisoformat(s)
    except ValueError:
        return FULL_DATE_YEAR
    return f"{parsed.year:04d}"


# ---- amount → range -----------------------------------------------------------------------

# Buckets for amounts in yuan (元), lower bound inclusive, upper bound exclusive:
#   [0, 1万) "<1万" · [1万, 10万) "1万-10万" · [10万, 50万) · [50万, 100万) · [100万, 500万)
#   · [500万, 1000万) · [1000万, ∞) ">=1000万".  Negative amounts are "<0".
AMOUNT_BUCKETS: tuple[tuple[Decimal, str], ...] = (
    (Decimal(10_000), "<1万"),
    (Decimal(100_000), "1万-10万"),
    (Decimal(500_000), "10万-50万"),
    (Decimal(1_000_000), "50万-100万"),
    (Decimal(5_000_000), "100万-500万"),
    (Decimal(10_000_000), "500万-1000万"),
)
AMOUNT_TOP_BUCKET = ">=1000万"
AMOUNT_NEGATIVE_BUCKET = "<0"


def _to_decimal(value: object) -> Decimal | None:
    # bool is an int, but True is not an amount.
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            return None
        amount = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            amount = Decimal(value.strip().replace(",", ""))
        except InvalidOperation:
            return None
    else:
        return None
    return amount if amount.is_finite() else None


def mask_amount_range(value: object) -> str:
    """The bucket an amount in yuan falls into (see AMOUNT_BUCKETS)."""
    if isinstance(value, str) and not value.strip():
        return ""
    amount = _to_decimal(value)
    if amount is None:
        return FULL_AMOUNT
    if amount < 0:
        return AMOUNT_NEGATIVE_BUCKET
    for upper, label in AMOUNT_BUCKETS:
        if amount < upper:
            return label
    return AMOUNT_TOP_BUCKET


# ---- dispatch -----------------------------------------------------------------------------

MASKERS: dict[MaskRule, Callable[[object], str]] = {
    MaskRule.ID_NUMBER: mask_id_number,
    MaskRule.MOBILE: mask_mobile,
    MaskRule.NAME: mask_name,
    MaskRule.BANK_CARD: mask_bank_card,
    MaskRule.ADDRESS: mask_address,
    MaskRule.EMAIL: mask_email,
    MaskRule.DATE_YEAR: mask_date_year,
    MaskRule.AMOUNT_RANGE: mask_amount_range,
}


def mask(rule: MaskRule, value: object) -> str | None:
    """Apply `rule` to `value`; None stays None."""
    if value is None:
        return None
    return MASKERS[MaskRule(rule)](value)
