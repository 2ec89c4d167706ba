"""Each row checked against the dataset's 信息项 before anything is written: types (integer,
float, decimal, date, datetime, boolean), required fields, the two national identifiers
(统一社会信用代码 GB 32100, 身份证号 GB 11643) by their check characters, and a string field's
enumeration (`values`) and maximum length (`max_length`) where the catalogue declares them.

A rejected row is `Reject(row, column, reason)`. The reason quotes the offending value only for
L1/L2 fields that are not personal information: a rejects file is handed around, and an L3/L4
or personal value must not travel in it."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from catalogue.spec import ENTITY_KEY_NAMES, DatasetSpec, Entity, FieldSpec, FieldType
from gateway.identifiers import is_valid_credit_code, is_valid_id_number
from gateway.loading.readers import LoadError
from policies.model import PI, Level
from schema.naming import camel

# A datetime without an offset is Beijing time (the clock of the people who wrote it).
CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
DECIMAL_INTEGER_DIGITS = 18  # NUMERIC(20, 2)
_TRUE = {"true", "t", "1", "yes", "y", "是", "真"}
_FALSE = {"false", "f", "0", "no", "n", "否", "假"}
_DATE = re.compile(
    r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})|(\d{4})(\d{2})(\d{2})|(\d{4})年(\d{1,2})月(\d{1,2})日"
)


@dataclass(frozen=True, slots=True)
class Reject:
    row: int
    column: str
    reason: str


class Invalid(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Domain:
    """What the catalogue allows a string 信息项 to hold: an enumeration, a maximum length."""

    allowed: frozenset[str] | None
    max_length: int | None

    def check(self, text: str) -> str:
        """The value as stored (an enumerated one without surrounding spaces), or Invalid."""
        if self.allowed is not None:
            text = text.strip()
            if text not in self.allowed:
                shown = sorted(self.allowed)
                listed = ", ".join(shown[:12]) + (f" … ({len(shown)} in all)" if len(shown) > 12 else "")
                raise Invalid(f"not one of the values allowed ({listed})")
        if self.max_length is not None and len(text) > self.max_length:
            raise Invalid(f"longer than the {self.max_length} characters allowed ({len(text)})")
        return text


def _domain(f: FieldSpec) -> Domain | None:
    if f.type is not FieldType.STRING or (f.allowed_values is None and f.max_length is None):
        return None
    allowed = frozenset(f.allowed_values) if f.allowed_values is not None else None
    return Domain(allowed, f.max_length)


def identifier_kind(spec: DatasetSpec, f: FieldSpec) -> Entity | None:
    """Which national identifier a field holds, if any: an entity key, a reference to an
    entity, or a column named like one (credit_code, id_number)."""
    if f.references is not None:
        return f.references
    if spec.entity is not None and f.name == spec.entity_field:
        return spec.entity
    for entity, name in ENTITY_KEY_NAMES.items():
        if f.name == name:
            return entity
    return None


def may_quote(f: FieldSpec) -> bool:
    return f.level <= Level.L2 and f.pi is PI.NONE


def _short(value: Any) -> str:
    text = str(value)
    return repr(text if len(text) <= 40 else text[:40] + "…")


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a spreadsheet's 610113.0
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise Invalid("not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise Invalid("not an integer")
    text = str(value).strip().replace(",", "")
    if not re.fullmatch(r"[+-]?\d{1,19}", text):
        raise Invalid("not an integer")
    n = int(text)
    if not -(2**63) <= n < 2**63:
        raise Invalid("out of range for a 64-bit integer")
    return n


def _float(value: Any) -> float:
    if isinstance(value, bool):
        raise Invalid("not a number")
    try:
        x = float(value) if isinstance(value, int | float) else float(str(value).strip().replace(",", ""))
    except ValueError:
        raise Invalid("not a number") from None
    if not math.isfinite(x):
        raise Invalid("not a finite number")
    return x


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise Invalid("not a decimal number")
    try:
        d = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip().replace(",", ""))
    except InvalidOperation:
        raise Invalid("not a decimal number") from None
    if not d.is_finite():
        raise Invalid("not a finite number")
    exponent = d.as_tuple().exponent
    assert isinstance(exponent, int)
    if exponent < -2 and d != d.quantize(Decimal("0.01")):
        raise Invalid("more than 2 decimal places (the column is NUMERIC(20, 2))")
    if abs(d) >= Decimal(10) ** DECIMAL_INTEGER_DIGITS:
        raise Invalid(f"more than {DECIMAL_INTEGER_DIGITS} digits before the decimal point")
    return d.quantize(Decimal("0.01"))


def _date(value: Any) -> date:
    if isinstance(value, datetime):
        if value.time() != time(0):
            raise Invalid("a date and time where a date is expected")
        return value.date()
    if isinstance(value, date):
        return value
    m = _DATE.fullmatch(str(value).strip())
    if m is None:
        raise Invalid("not a date (YYYY-MM-DD)")
    y, mo, d = (int(g) for g in [g for g in m.groups() if g is not None])
    try:
        return date(y, mo, d)
    except ValueError:
        raise Invalid("not a real date") from None


def _datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    else:
        text = str(value).strip()
        try:
            dt = datetime.fromisoformat(text.replace(" ", "T", 1) if "T" not in text else text)
        except ValueError:
            raise Invalid("not a date and time (ISO 8601, e.g. 2024-05-01T08:30:00+08:00)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=CHINA)
    return dt.astimezone(UTC)


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise Invalid("not a boolean (true/false, 1/0, 是/否)")


_CONVERT = {
    FieldType.INTEGER: _integer,
    FieldType.FLOAT: _float,
    FieldType.DECIMAL: _decimal,
    FieldType.DATE: _date,
    FieldType.DATETIME: _datetime,
    FieldType.BOOLEAN: _boolean,
}


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


class Validator:
    """Maps a file's header to the dataset's fields, then converts and checks each row.

    A header names a field by its column (`credit_code`), its GraphQL name (`creditCode`) or
    its 信息项名称 (`统一社会信用代码`). A header that names no field, a field named twice, or a
    required field (or key column) missing from the header stops the load before any row."""

    def __init__(self, spec: DatasetSpec, header: Sequence[str], key: Sequence[str] = ()) -> None:
        self.spec = spec
        names: dict[str, FieldSpec] = {}
        for f in spec.fields:
            for alias in (f.name, camel(f.name), f.title):
                names.setdefault(alias, f)
                names.setdefault(alias.lower(), f)
        mapped: dict[str, int] = {}
        unknown: list[str] = []
        for i, h in enumerate(header):
            named = names.get(h) or names.get(h.lower())
            if named is None:
                unknown.append(h)
            elif named.name in mapped:
                raise LoadError(
                    f"column {named.name} appears twice in the header ({header[mapped[named.name]]!r}, {h!r})"
                )
            else:
                mapped[named.name] = i
        valid = ", ".join(f"{f.name} ({f.title})" for f in spec.fields)
        if unknown:
            shown = ", ".join(repr(u[:40]) for u in unknown[:5]) + (
                f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            )
            raise LoadError(
                f"unknown column{'s' if len(unknown) > 1 else ''} {shown} in the header; "
                f"{spec.code} has: {valid}"
            )
        missing = [f.name for f in spec.fields if f.name not in mapped and (not f.nullable or f.name in key)]
        if missing:
            raise LoadError(
                f"required column{'s' if len(missing) > 1 else ''} missing from the header: "
                f"{', '.join(missing)}"
            )
        self.key = tuple(key)
        self.fields: tuple[FieldSpec, ...] = tuple(f for f in spec.fields if f.name in mapped)
        self._plan = [
            (
                mapped[f.name],
                f,
                _CONVERT.get(f.type),
                identifier_kind(spec, f) if f.type is FieldType.STRING else None,
                not f.nullable or f.name in self.key,
                _domain(f),
            )
            for f in self.fields
        ]
        self.width = len(header)

    def convert(self, row: int, values: Sequence[Any]) -> tuple[Any, ...] | list[Reject]:
        """The row's values in `self.fields` order, or why it is rejected (every bad column).

        The hot loop of a load (tens of microseconds a row): the common cases inline."""
        if len(values) != self.width:
            return [Reject(row, "", f"{len(values)} values where the header has {self.width} columns")]
        out: list[Any] = []
        append = out.append
        rejects: list[Reject] | None = None
        for i, f, convert, identifier, required, domain in self._plan:
            raw = values[i]
            if raw is None or raw == "" or (raw.__class__ is str and raw.isspace()):
                if required:
                    rejects = rejects or []
                    rejects.append(Reject(row, f.name, "required, but empty"))
                append(None)
                continue
            if convert is None and identifier is None and domain is None:
                append(raw if raw.__class__ is str else _text(raw))
                continue
            try:
                if convert is not None:
                    append(convert(raw))
                    continue
                if identifier is None:  # a string with a declared enumeration or maximum length
                    assert domain is not None
                    append(domain.check(raw if raw.__class__ is str else _text(raw)))
                    continue
                text = _text(raw).strip().upper()
                if identifier is Entity.LEGAL_ENTITY and not is_valid_credit_code(text):
                    raise Invalid(
                        "not a valid 统一社会信用代码 (GB 32100: 18 characters and a check character)"
                    )
                if identifier is Entity.PERSON and not is_valid_id_number(text):
                    raise Invalid(
                        "not a valid 身份证号 (GB 11643: 18 characters, a real birth date and a check digit)"
                    )
                append(domain.check(text) if domain is not None else text)
            except Invalid as err:
                reason = f"{err}: {_short(raw)}" if may_quote(f) else str(err)
                rejects = rejects or []
                rejects.append(Reject(row, f.name, reason))
                append(None)
        return rejects or tuple(out)
