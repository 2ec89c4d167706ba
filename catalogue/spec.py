"""Catalogue entries as plain values: what a catalogue file (catalogue.document) declares.

The database models (models.py) persist these; policy and schema code consume them
through `DatasetSpec.policy()` / `FieldSpec.policy()` so neither depends on the ORM.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from policies.model import (
    PI,
    TYPE_CHANGING_MASKS,
    Category,
    DatasetPolicy,
    FieldPolicy,
    Level,
    MaskRule,
    Open,
    Share,
)


class FieldType(StrEnum):
    STRING = "string"
    INTEGER = "integer"
    FLOAT = "float"
    DECIMAL = "decimal"
    DATE = "date"
    DATETIME = "datetime"
    BOOLEAN = "boolean"


class Entity(StrEnum):
    """Entities shared across departments, and the key that identifies them."""

    LEGAL_ENTITY = "legal_entity"  # by 统一社会信用代码
    PERSON = "person"  # by 身份证号


ENTITY_KEY_NAMES = {Entity.LEGAL_ENTITY: "credit_code", Entity.PERSON: "id_number"}


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str  # snake_case column name; camelCase in GraphQL
    type: FieldType
    title: str  # 信息项名称
    description: str = ""
    level: Level = Level.L1
    pi: PI = PI.NONE
    share: Share | None = None
    open: Open | None = None
    open_personal: bool = False
    mask: MaskRule | None = None
    nullable: bool = True
    indexed: bool = False
    # This column holds the key of another entity (e.g. an employer's credit code);
    # the schema then offers `link_name: LegalEntity` next to it.
    references: Entity | None = None
    link_name: str | None = None
    # 数据水印: deliveries to an identified consumer may move this value by up to the
    # tolerance (policies.watermark); None: never marked.
    watermark_tolerance: Decimal | None = None
    # 数据水印 in text: the keyed choice among equivalent representations this string may carry
    # (policies.watermark_text; "digit_width"); None: never marked.
    watermark_text: str | None = None
    # A decision could depend on the exact value (a threshold, a fee): never marked.
    decision_relevant: bool = False
    # The values a loaded row may hold (an enumeration), and its longest (string fields); None:
    # any. Checked on loading (gateway.loading.validate), not on reading.
    allowed_values: tuple[str, ...] | None = None
    max_length: int | None = None

    def policy(self) -> FieldPolicy:
        return FieldPolicy(
            name=self.name,
            level=self.level,
            pi=self.pi,
            share=self.share,
            open=self.open,
            mask=self.mask,
            open_personal=self.open_personal,
        )

    @property
    def watermarked(self) -> bool:
        """The catalogue declares a mark for this field (a numeric tolerance or a text scheme)."""
        return self.watermark_tolerance is not None or self.watermark_text is not None

    @property
    def graphql_type_is_string(self) -> bool:
        return self.type is FieldType.STRING or self.mask in TYPE_CHANGING_MASKS


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    code: str  # snake_case; the root field is its camelCase
    resource_code: str  # 资源代码
    name: str  # 资源名称 (zh)
    name_en: str
    department: str  # provider department code
    category: Category
    share: Share
    open: Open
    fields: tuple[FieldSpec, ...]
    description: str = ""
    theme: str = ""
    update_cycle: str = "daily"  # 实时 realtime / daily / monthly / yearly …
    format: str = "table"
    share_conditions: str = ""
    open_conditions: str = ""
    entity: Entity | None = None  # the entity each row describes
    entity_field: str | None = None  # the column holding that entity's key
    published: bool = True
    licence: str = ""  # of the open data, e.g. CC-BY-4.0
    contact: str = ""  # who answers questions about the dataset
    tags: tuple[str, ...] = ()
    # Composite indexes on the pool table, each a tuple of columns (equality filters first,
    # then the range or ordering column), for pages that filter on one field and order by
    # another: `city = … ORDER BY date DESC` reads just the page, and its count is an
    # index-only scan. Single columns are FieldSpec.indexed.
    indexes: tuple[tuple[str, ...], ...] = ()
    version: int = field(default=1, compare=False)

    def policy(self) -> DatasetPolicy:
        return DatasetPolicy(
            code=self.code,
            resource_code=self.resource_code,
            provider=self.department,
            share=self.share,
            open=self.open,
            published=self.published,
        )

    def field(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)


@dataclass(frozen=True, slots=True)
class DepartmentSpec:
    code: str
    name: str
    name_en: str = ""
