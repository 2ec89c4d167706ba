"""Check characters of the two national identifiers that key Shuqiao's entities.

- 公民身份号码 (citizen ID number), GB 11643-1999: 6-digit administrative division code,
  8-digit birth date (YYYYMMDD), 3-digit sequence (odd for men, even for women) and a check
  character computed with ISO 7064 MOD 11-2 ('X' stands for 10).
- 统一社会信用代码 (unified social credit code), GB 32100-2015: registration-authority code,
  institution-category code, 6-digit administrative division code, 9-character organisation
  code (GB 11714) and a MOD 31 check character, all drawn from 0-9 and A-Z without I O Z S V.

Validators accept only the canonical form (upper case, no spaces): these strings are lookup
keys, and a lenient validator would let non-canonical keys through that then match nothing.
"""

from __future__ import annotations

from datetime import date

# --- GB 11643-1999 citizen ID number -------------------------------------------------------

# ISO 7064 MOD 11-2: weight of position i (1-based from the left of 18) is 2^(18-i) mod 11.
_ID_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))
# Check character for each value of (weighted sum mod 11).
_ID_CHECK = "10X98765432"


def id_number_check_digit(first17: str) -> str:
    """The 18th character ('0'-'9' or 'X') for the first 17 digits of a citizen ID number."""
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise ValueError("the first 17 characters of an ID number must be 17 ASCII digits")
    total = sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def _is_real_date(yyyymmdd: str) -> bool:
    try:
        born = date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    # The scheme dates from 1999 but numbers were issued to people born in the 19th century.
    return born.year >= 1800


def is_valid_id_number(s: object) -> bool:
    """True for a canonical 18-character ID number with a real birth date and a correct check digit."""
    if not isinstance(s, str) or len(s) != 18:
        return False
    first17, check = s[:17], s[17]
    if not first17.isascii() or not first17.isdigit():
        return False
    if not _is_real_date(first17[6:14]):
        return False
    return id_number_check_digit(first17) == check


# --- GB 32100-2015 unified social credit code ---------------------------------------------

# The code's 31 characters: digits and capitals except I O Z S V (easily misread); the
# index of a character is its value.
CREDIT_CODE_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CREDIT_VALUES = {c: i for i, c in enumerate(CREDIT_CODE_CHARSET)}
_CREDIT_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))  # 1 3 9 27 19 26 16 17 20 29 25 13 8 24 10 30 28


def credit_code_check_char(first17: str) -> str:
    """The 18th character of a unified social credit code, from its first 17."""
    if len(first17) != 17 or any(c not in _CREDIT_VALUES for c in first17):
        raise ValueError(f"the first 17 characters of a credit code must come from {CREDIT_CODE_CHARSET}")
    total = sum(_CREDIT_VALUES[c] * w for c, w in zip(first17, _CREDIT_WEIGHTS, strict=True))
    return CREDIT_CODE_CHARSET[(31 - total % 31) % 31]


def is_valid_credit_code(s: object) -> bool:
    """True for a canonical 18-character credit code whose MOD 31 check character is right."""
    if not isinstance(s, str) or len(s) != 18 or any(c not in _CREDIT_VALUES for c in s):
        return False
    return credit_code_check_char(s[:17]) == s[17]


# --- GB 11714-1997 organisation code (characters 9-17 of a credit code) ---------------------

_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_ORG_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")  # value = int(c, 36)


def organization_code_check_char(first8: str) -> str:
    """The 9th character of an organisation code: 11 - (weighted sum mod 11); 10 → 'X', 11 → '0'.

    Real credit codes carry a valid organisation code in positions 9-17; the demo generator
    uses this so its codes pass both checks."""
    if len(first8) != 8 or any(c not in _ORG_CHARS for c in first8):
        raise ValueError("the first 8 characters of an organisation code must be digits or capitals")
    total = sum(int(c, 36) * w for c, w in zip(first8, _ORG_WEIGHTS, strict=True))
    value = 11 - total % 11
    return {10: "X", 11: "0"}.get(value, str(value))
