"""GraphQL types every tier schema shares: filters, ordering, page info."""

from __future__ import annotations

import datetime
import decimal
from enum import Enum

import strawberry

from catalogue.spec import FieldType

_UNSET = strawberry.UNSET


@strawberry.enum(description="Sort direction.")
class SortDirection(Enum):
    ASC = "asc"
    DESC = "desc"


@strawberry.type(description="Relay-style pagination state.")
class PageInfo:
    has_next_page: bool = strawberry.field(name="hasNextPage")
    end_cursor: str | None = strawberry.field(name="endCursor")


def _filter(name: str, py: type, *, prefix: bool) -> type:
    """A filter input for one scalar type; unset operators do not constrain."""
    anns: dict[str, object] = {
        "eq": py | None,
        "neq": py | None,
        "in_": list[py] | None,  # type: ignore[valid-type]
        "gt": py | None,
        "gte": py | None,
        "lt": py | None,
        "lte": py | None,
    }
    if prefix:
        anns["prefix"] = str | None
    anns["is_null"] = bool | None
    ns: dict[str, object] = {"__annotations__": anns}
    for attr in anns:
        gql = {"in_": "in", "is_null": "isNull"}.get(attr, attr)
        ns[attr] = strawberry.field(name=gql, default=_UNSET)
    cls = type(name, (), ns)
    desc = f"Conditions on a {py.__name__} field; all must hold."
    return strawberry.input(cls, name=name, description=desc)


FILTERS: dict[FieldType, type] = {
    FieldType.STRING: _filter("StringFilter", str, prefix=True),
    FieldType.INTEGER: _filter("IntFilter", int, prefix=False),
    FieldType.FLOAT: _filter("FloatFilter", float, prefix=False),
    FieldType.DECIMAL: _filter("DecimalFilter", decimal.Decimal, prefix=False),
    FieldType.DATE: _filter("DateFilter", datetime.date, prefix=False),
    FieldType.DATETIME: _filter("DateTimeFilter", datetime.datetime, prefix=False),
    FieldType.BOOLEAN: _filter("BooleanFilter", bool, prefix=False),
}

OUTPUT_TYPES: dict[FieldType, type] = {
    FieldType.STRING: str,
    FieldType.INTEGER: int,
    FieldType.FLOAT: float,
    FieldType.DECIMAL: decimal.Decimal,
    FieldType.DATE: datetime.date,
    FieldType.DATETIME: datetime.datetime,
    FieldType.BOOLEAN: bool,
}
