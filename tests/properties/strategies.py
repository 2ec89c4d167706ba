"""Hypothesis strategies: catalogue entries, their rows, grants and probes.

Every cell holds a canary: a value unique to (example, field, row), so its clear form can
be searched for in any response text. The canary's masked form is written down here from
DESIGN.md's masking examples (keep 6 + 4, 138****5678, 张*, keep last 4, keep to district,
a***@x.cn, date → year, amount → range bucket), not computed by policies.masking.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from catalogue.spec import DatasetSpec, Entity, FieldSpec, FieldType
from policies.model import PI, Category, Level, MaskRule, Open, Share

STRING_MASKS = (
    MaskRule.ID_NUMBER,
    MaskRule.MOBILE,
    MaskRule.NAME,
    MaskRule.BANK_CARD,
    MaskRule.ADDRESS,
    MaskRule.EMAIL,
)
MASKS_BY_TYPE: dict[FieldType, tuple[MaskRule | None, ...]] = {
    FieldType.STRING: (None, *STRING_MASKS),
    FieldType.INTEGER: (None, MaskRule.AMOUNT_RANGE),
    FieldType.DECIMAL: (None, MaskRule.AMOUNT_RANGE),
    FieldType.FLOAT: (None, MaskRule.AMOUNT_RANGE),
    FieldType.DATE: (None, MaskRule.DATE_YEAR),
    FieldType.BOOLEAN: (None,),
}
SCALAR_TYPES = (
    FieldType.STRING,
    FieldType.INTEGER,
    FieldType.DECIMAL,
    FieldType.FLOAT,
    FieldType.DATE,
    FieldType.BOOLEAN,
)
HAN_DIGITS = "零一二三四五六七八九"
EXPIRIES = ("none", "future", "past")
FILTER_OPS = ("eq", "neq", "in", "gt", "prefix", "isNull")
DATASET_SHARES = (Share.UNCONDITIONAL, Share.UNCONDITIONAL, Share.CONDITIONAL, Share.CONDITIONAL, Share.NONE)
DATASET_OPENS = (Open.UNCONDITIONAL, Open.UNCONDITIONAL, Open.CONDITIONAL, Open.CONDITIONAL, Open.NONE)


def field_name(index: int) -> str:
    # Fixed width, so no field's GraphQL name (fld03Q) or enum value (FLD03_Q) is a part of another's.
    return f"fld{index:02d}_q"


@st.composite
def field_specs(draw: st.DrawFn, index: int) -> FieldSpec:
    # Weighted towards the combinations where the tiers differ (personal, open by law, masked).
    level = draw(st.sampled_from((Level.L1, Level.L1, Level.L2, Level.L2, Level.L3, Level.L4)))
    pi = draw(st.sampled_from((PI.NONE, PI.NONE, PI.PERSONAL, PI.PERSONAL, PI.SENSITIVE)))
    # L4 / sensitive values are stored encrypted, which the catalogue allows for strings only.
    protected = level >= Level.L4 or pi is PI.SENSITIVE
    ftype = FieldType.STRING if protected else draw(st.sampled_from(SCALAR_TYPES))
    return FieldSpec(
        name=field_name(index),
        type=ftype,
        title=f"信息项{index}",
        level=level,
        pi=pi,
        share=draw(st.sampled_from((None, None, None, *Share))),  # mostly inherited
        open=draw(st.sampled_from((None, None, None, *Open))),
        open_personal=draw(st.booleans()),
        mask=draw(st.sampled_from(MASKS_BY_TYPE[ftype])),
    )


@dataclass(frozen=True)
class DatasetDraw:
    """A dataset without its code: the harness names it once it knows the example number."""

    share: Share
    open: Open
    fields: tuple[FieldSpec, ...]
    entity: Entity | None
    entity_field: str | None
    rows: int

    def spec(self, code: str, resource_code: str, department: str) -> DatasetSpec:
        return DatasetSpec(
            code=code,
            resource_code=resource_code,
            name=f"性质测试数据集{code}",
            name_en=code,
            department=department,
            category=Category.THEME,
            share=self.share,
            open=self.open,
            fields=self.fields,
            entity=self.entity,
            entity_field=self.entity_field,
        )


@st.composite
def datasets(draw: st.DrawFn) -> DatasetDraw:
    n = draw(st.integers(2, 6))
    fields = tuple(draw(field_specs(i)) for i in range(n))
    strings = [f.name for f in fields if f.type is FieldType.STRING]
    entity = draw(st.none() | st.sampled_from(Entity)) if strings else None
    entity_field = draw(st.sampled_from(strings)) if entity is not None else None
    if entity is not None and draw(st.booleans()):
        # A column referencing the dataset's own entity (its values are other rows' keys),
        # so the schema offers a link to follow; same type and mask rule as the key.
        key = next(f for f in fields if f.name == entity_field)
        ref = draw(field_specs(n))
        link = f"fld{n:02d}_link"
        fields = (*fields, replace(ref, type=key.type, mask=key.mask, references=entity, link_name=link))
    return DatasetDraw(
        share=draw(st.sampled_from(DATASET_SHARES)),
        open=draw(st.sampled_from(DATASET_OPENS)),
        fields=fields,
        entity=entity,
        entity_field=entity_field,
        rows=draw(st.integers(1, 3)),
    )


@dataclass(frozen=True)
class GrantPlan:
    """A grant to create: fields listed, the subset in clear, and when it expires."""

    fields: tuple[str, ...]
    clear_fields: tuple[str, ...]
    expiry: str  # none | future | past


@st.composite
def grant_plans(draw: st.DrawFn, names: tuple[str, ...]) -> GrantPlan:
    fields = tuple(n for n in names if draw(st.booleans()))
    clear = tuple(n for n in fields if draw(st.booleans()))
    return GrantPlan(fields, clear, draw(st.sampled_from(EXPIRIES)))


@dataclass(frozen=True)
class Example:
    dataset: DatasetDraw
    # share-tier grants for the department with an SM2 key and the one without
    keyed_grant: GrantPlan | None
    plain_grant: GrantPlan | None
    # open-tier grant (the whole open view) for one enterprise; the other never has one
    open_grant: GrantPlan | None
    probe: int  # which visible field to filter and order on (modulo their number)
    probe_row: int
    probe_op: str = "eq"  # the filter operator tried on it


@st.composite
def examples(draw: st.DrawFn) -> Example:
    ds = draw(datasets())
    names = tuple(f.name for f in ds.fields)
    open_grant = draw(st.none() | st.builds(GrantPlan, st.just(()), st.just(()), st.sampled_from(EXPIRIES)))
    return Example(
        dataset=ds,
        keyed_grant=draw(st.none() | grant_plans(names)),
        plain_grant=draw(st.none() | grant_plans(names)),
        open_grant=open_grant,
        probe=draw(st.integers(0, 5)),
        probe_row=draw(st.integers(0, 2)),
        probe_op=draw(st.sampled_from(FILTER_OPS)),
    )


# ------------------------------------------------------------------ canaries


@dataclass(frozen=True)
class Cell:
    stored: Any  # what goes into the pool
    clear: Any  # its JSON form when read in clear
    masked: Any  # its JSON form when masked (None: the field has no mask rule)
    canary: str | None  # text that appears only if the clear value does (None: a boolean)


def cell(f: FieldSpec, serial: int) -> Cell:
    """The value of field `f` in the cell numbered `serial` (unique across the module)."""
    s = f"{serial:06d}"
    as_string = f.mask in (MaskRule.DATE_YEAR, MaskRule.AMOUNT_RANGE)  # typed String everywhere
    if f.type is FieldType.STRING:
        value, masked = {
            None: (f"cnry{s}q", None),
            MaskRule.ID_NUMBER: (f"610113{s}191234", "610113********1234"),
            MaskRule.MOBILE: (f"139{s}57", f"139****{s[-2:]}57"),
            MaskRule.NAME: ("张" + "".join(HAN_DIGITS[int(c)] for c in s), "张" + "*" * 6),
            MaskRule.BANK_CARD: (f"6222{s}888888", "*" * 12 + "8888"),
            MaskRule.ADDRESS: (f"陕西省西安市雁塔区科技路{s}号", "陕西省西安市雁塔区"),
            MaskRule.EMAIL: (f"m{s}@x.cn", "m***@x.cn"),
        }[f.mask]
        return Cell(value, value, masked, value)
    if f.type is FieldType.INTEGER:
        n = int(f"1{s}39")  # below 2^31: GraphQL's Int, which filters are typed in, is 32-bit
        return Cell(n, str(n) if as_string else n, ">=1000万", str(n))
    if f.type is FieldType.DECIMAL:
        d = Decimal(f"72{s}.25")
        return Cell(d, str(d), ">=1000万", str(d))
    if f.type is FieldType.FLOAT:
        x = float(f"73{s}.5")
        return Cell(x, repr(x) if as_string else x, ">=1000万", repr(x))
    if f.type is FieldType.DATE:
        d = date.fromordinal(date(1950, 1, 1).toordinal() + serial)
        return Cell(d, d.isoformat(), f"{d.year:04d}", d.isoformat())
    assert f.type is FieldType.BOOLEAN
    return Cell(serial % 2 == 0, serial % 2 == 0, None, None)
