"""The classification model: the vocabulary every policy decision is made in.

Plain frozen dataclasses and enums, no I/O and no ORM: the gateway turns catalogue
rows into these, so the decisions in this package can be tested exhaustively.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum, StrEnum


class Level(IntEnum):
    """Field classification level (within GB/T 43697 "一般数据")."""

    L1 = 1  # 公开 public
    L2 = 2  # 内部 internal
    L3 = 3  # 敏感 sensitive
    L4 = 4  # 高敏感 highly sensitive


class PI(StrEnum):
    """Personal-information category (PIPL)."""

    NONE = "none"
    PERSONAL = "personal"  # 个人信息
    SENSITIVE = "sensitive"  # 敏感个人信息 (PIPL art. 28)


class Share(StrEnum):
    """共享属性."""

    UNCONDITIONAL = "unconditional"  # 无条件共享
    CONDITIONAL = "conditional"  # 有条件共享
    NONE = "none"  # 不予共享


class Open(StrEnum):
    """开放属性."""

    UNCONDITIONAL = "unconditional"  # 无条件开放
    CONDITIONAL = "conditional"  # 有条件开放
    NONE = "none"  # 不予开放


class Category(StrEnum):
    BASE = "base"  # 基础库
    THEME = "theme"  # 主题库
    SPECIAL = "special"  # 专题库


class MaskRule(StrEnum):
    """脱敏 rules; see policies.masking for what each keeps."""

    ID_NUMBER = "id_number"
    MOBILE = "mobile"
    NAME = "name"
    BANK_CARD = "bank_card"
    ADDRESS = "address"
    EMAIL = "email"
    DATE_YEAR = "date_year"
    AMOUNT_RANGE = "amount_range"


# Masks whose output is not of the column's own type: such fields are typed String
# in every schema so one query works for every caller (masked or not).
TYPE_CHANGING_MASKS = frozenset({MaskRule.DATE_YEAR, MaskRule.AMOUNT_RANGE})

# One table per enum: StrEnum members of different enums with the same value compare
# (and hash) equal, so a single mixed dict would silently merge share and open labels.
SHARE_LABELS = {Share.UNCONDITIONAL: "无条件共享", Share.CONDITIONAL: "有条件共享", Share.NONE: "不予共享"}
OPEN_LABELS = {Open.UNCONDITIONAL: "无条件开放", Open.CONDITIONAL: "有条件开放", Open.NONE: "不予开放"}
CATEGORY_LABELS = {Category.BASE: "基础库", Category.THEME: "主题库", Category.SPECIAL: "专题库"}


class Action(StrEnum):
    ALLOW = "allow"
    MASK = "mask"
    ENCRYPT = "encrypt"
    DENY = "deny"


class Tier(StrEnum):
    OPEN = "open"
    SHARE = "share"


@dataclass(frozen=True, slots=True)
class FieldPolicy:
    """What the catalogue says about one 信息项, as far as policy cares."""

    name: str
    level: Level
    pi: PI = PI.NONE
    share: Share | None = None  # None: inherit the dataset's
    open: Open | None = None  # None: inherit the dataset's
    mask: MaskRule | None = None
    # A personal field is open only when explicitly marked so (e.g. 法定代表人 by law).
    open_personal: bool = False


@dataclass(frozen=True, slots=True)
class DatasetPolicy:
    code: str
    resource_code: str
    provider: str  # department code
    share: Share
    open: Open
    published: bool = True


@dataclass(frozen=True, slots=True)
class Grant:
    """An approved application: consumer may read these fields of this dataset."""

    id: int
    dataset: str
    consumer: str  # department code (share tier) or enterprise code (open tier)
    tier: Tier
    fields: frozenset[str] = frozenset()  # empty on the open tier: the whole open view
    clear_fields: frozenset[str] = frozenset()  # fields granted without masking
    purpose: str = ""
    expires_at: datetime | None = None
    approved: bool = True

    def active(self, now: datetime) -> bool:
        return self.approved and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str
    mask: MaskRule | None = None
    grant_id: int | None = None

    @property
    def readable(self) -> bool:
        return self.action is not Action.DENY


@dataclass(frozen=True, slots=True)
class DatasetAccess:
    allowed: bool
    reason: str
    grant: Grant | None = None
    extra: dict[str, str] = field(default_factory=dict)
