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


class Treatment(IntEnum):
    """What a grant gives of one listed field, ordered by how much the consumer learns.

    The full order is denied (not granted) < masked < encrypted < clear: a masked value
    hides part of the value from the consumer itself, an encrypted one hands the whole
    value to the holder of the consumer's SM2 key (protected on the way, not reduced),
    clear hands it over as is. Where grants overlap on a field the lowest wins
    (`GrantSet.treatment`). The field's classification still caps the result
    (`decisions.decide_share_field`): L4 / sensitive personal information is only ever
    delivered encrypted, L1–L2 fields are never masked. Grants store `fields` and
    `clear_fields` today, so a grant says MASKED or CLEAR; an application asking for an
    L3 field encrypted to its key is the place ENCRYPTED will come from.
    """

    MASKED = 1  # listed: delivered as classified (masked if L3 / personal, encrypted if L4 / sensitive)
    ENCRYPTED = 2
    CLEAR = 3  # listed in clear_fields


# A grant's row scope: rows where every listed column holds one of its values (a conjunction),
# columns sorted. Values are strings or integers, as the column stores them.
RowScope = tuple[tuple[str, tuple[str | int, ...]], ...]


def scope_within(inner: RowScope, outer: RowScope) -> bool:
    """Whether every row `inner` admits, `outer` admits too: each column `outer` restricts is
    restricted by `inner` to some of the same values."""
    mine = dict(inner)
    return all(col in mine and set(mine[col]) <= set(values) for col, values in outer)


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
    approved: bool = True  # False: pending (an application not decided yet); revoked grants are not loaded
    row_scope: RowScope | None = None  # None: every row

    def active(self, now: datetime) -> bool:
        return self.approved and (self.expires_at is None or now < self.expires_at)

    def treatment(self, name: str) -> Treatment | None:
        """What this grant gives of field `name`; None when it does not list it."""
        if name not in self.fields:
            return None
        return Treatment.CLEAR if name in self.clear_fields else Treatment.MASKED


@dataclass(frozen=True, slots=True)
class GrantSet:
    """The active grants of one consumer on one dataset and tier, combined (never empty).

    Grants add up: the granted fields are the union of theirs, and where several list the
    same field the strictest treatment wins (`Treatment`). No grant takes away what
    another gives, and a new grant never silently widens what an older one restricted:
    a field stays masked while any active grant lists it masked.

    Row scopes: a scoped grant gives its fields only on the rows its scope admits, so it
    counts only where every row read is inside its scope. When the rows are read because of
    the grants (a conditionally shared or open dataset) and every grant is scoped, the rows
    are those the scopes admit (`rows`, a disjunction) and the grants that cover all of them
    count. Otherwise (an unscoped grant, or a dataset every consumer reads) every row is read
    and the scoped grants are `withheld`: they give nothing, and take nothing away.
    """

    grants: tuple[Grant, ...]  # oldest first: the grants whose fields count
    rows: tuple[RowScope, ...] | None = None  # None: every row; else rows any of these admit
    withheld: tuple[Grant, ...] = ()  # scoped grants that do not cover the rows read

    @staticmethod
    def of(*grants: Grant, rows_from_grants: bool = True) -> GrantSet:
        ordered = tuple(sorted(grants, key=lambda g: g.id))
        scoped = [g for g in ordered if g.row_scope is not None]
        if not scoped:
            return GrantSet(ordered)
        if not rows_from_grants or len(scoped) < len(ordered):
            return GrantSet(tuple(g for g in ordered if g.row_scope is None), None, tuple(scoped))
        rows = tuple(dict.fromkeys(g.row_scope for g in scoped if g.row_scope is not None))
        counted = [g for g in scoped if all(scope_within(r, g.row_scope or ()) for r in rows)]
        if not counted:  # no grant covers them all: read the oldest grant's rows only
            rows = (scoped[0].row_scope or (),)
            counted = [g for g in scoped if scope_within(rows[0], g.row_scope or ())]
        return GrantSet(tuple(counted), rows, tuple(g for g in scoped if g not in counted))

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(g.id for g in self.grants)

    @property
    def fields(self) -> frozenset[str]:
        return frozenset().union(*(g.fields for g in self.grants))

    @property
    def whole_view(self) -> bool:
        """Open tier: a grant listing no field grants the whole open view."""
        return any(not g.fields for g in self.grants)

    def treatment(self, name: str) -> Treatment | None:
        given = [t for g in self.grants if (t := g.treatment(name)) is not None]
        return min(given) if given else None

    def decided_by(self, name: str) -> int | None:
        """The grant whose treatment of `name` applies (the oldest, where several agree):
        what the audit log names as the grant a field was read under."""
        wanted = self.treatment(name)
        if wanted is None:
            return None
        return next(g.id for g in self.grants if g.treatment(name) is wanted)

    @property
    def expires_at(self) -> datetime | None:
        """When the combination first changes: the earliest expiry among the grants."""
        ends = [g.expires_at for g in self.grants if g.expires_at is not None]
        return min(ends) if ends else None

    @property
    def purposes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(g.purpose for g in self.grants if g.purpose))


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
    grant: GrantSet | None = None  # the consumer's active grants on the dataset, combined
    extra: dict[str, str] = field(default_factory=dict)
