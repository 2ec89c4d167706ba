"""Opaque keyset cursors: the ordering values of the last row plus its row id.

Only columns the caller may order by ever go into a cursor, so a cursor reveals
nothing the caller could not read anyway."""

from __future__ import annotations

import base64
import binascii
import datetime
import decimal
import math
from typing import Any

import orjson

from catalogue.spec import FieldType
from resolvers import errors
from resolvers.errors import FieldError


def encode(values: list[Any]) -> str:
    raw = orjson.dumps([_plain(v) for v in values])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _plain(v: Any) -> Any:
    if isinstance(v, decimal.Decimal):
        return str(v)
    return v  # orjson writes dates and datetimes as ISO 8601


def decode(cursor: str, types: list[FieldType]) -> list[Any]:
    """Values in ordering-key order, the row id last; raises BAD_USER_INPUT on anything odd."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = orjson.loads(raw)
        if not isinstance(values, list) or len(values) != len(types) + 1:
            raise ValueError("shape")
        row_id = values[-1]
        if not isinstance(row_id, int) or isinstance(row_id, bool):
            raise ValueError("row id")
        return [_typed(v, t) for v, t in zip(values[:-1], types, strict=True)] + [row_id]
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError, decimal.InvalidOperation):
        raise FieldError("`after` is not a cursor this query produced.", errors.BAD_USER_INPUT) from None


def _typed(v: Any, t: FieldType) -> Any:
    if v is None:
        return None
    if t is FieldType.STRING and isinstance(v, str):
        if "\x00" in v:  # no stored value has one; PostgreSQL refuses it in a parameter
            raise ValueError("NUL")
        return v
    if t is FieldType.INTEGER and isinstance(v, int) and not isinstance(v, bool):
        return v
    if t is FieldType.FLOAT and isinstance(v, int | float) and not isinstance(v, bool):
        if not math.isfinite(v):
            raise ValueError("not finite")
        return float(v)
    if t is FieldType.DECIMAL and isinstance(v, str):
        d = decimal.Decimal(v)
        if not d.is_finite():  # sNaN cannot even be compared; NaN and Infinity never came from a row
            raise ValueError("not finite")
        return d
    if t is FieldType.DATE and isinstance(v, str):
        return datetime.date.fromisoformat(v)
    if t is FieldType.DATETIME and isinstance(v, str):
        return datetime.datetime.fromisoformat(v)
    if t is FieldType.BOOLEAN and isinstance(v, bool):
        return v
    raise ValueError("type")
