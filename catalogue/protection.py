"""Encryption at rest for the pool (GB/T 39786: confidentiality of important data in storage).

L4 and sensitive-personal string columns hold `sm4gcm:<base64(nonce‖ciphertext‖tag)>`
under a per-dataset SM4 data key, with the dataset code and field name as GCM associated
data (a value cannot be moved to another column). Next to each such column a blind index
`<field>__bidx` holds HMAC-SM3 of the normalised clear value under a per-dataset key, so
equality lookups (`eq`, `in`, entity keys such as 身份证号) still run in the database.
The data keys are stored wrapped under the master key-encryption key, which never enters
the database (gateway.secrets)."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from catalogue.models import utcnow
from catalogue.spec import DatasetSpec, FieldSpec, FieldType
from keys import sm4
from keys.errors import DecryptionError
from keys.sm3 import hmac_sm3
from policies.model import PI, Level

CIPHER_PREFIX = "sm4gcm:"
BLIND_SUFFIX = "__bidx"


def is_protected(f: FieldSpec) -> bool:
    """Stored encrypted: L4, or sensitive personal information (PIPL art. 28)."""
    return f.level >= Level.L4 or f.pi is PI.SENSITIVE


def blind_column(field_name: str) -> str:
    return field_name + BLIND_SUFFIX


def protected_fields(spec: DatasetSpec) -> list[FieldSpec]:
    return [f for f in spec.fields if is_protected(f)]


def check_protectable(spec: DatasetSpec) -> str | None:
    """Why this dataset cannot be stored as the policy requires, or None."""
    for f in protected_fields(spec):
        if f.type is not FieldType.STRING:
            return (
                f"{spec.code}.{f.name} is {f.type.value}; "
                "L4/sensitive fields must be strings (they are stored encrypted)"
            )
    return None


def check_indexes(spec: DatasetSpec) -> str | None:
    """Why the dataset's composite indexes (DatasetSpec.indexes) cannot be built, or None: each
    names 2-4 distinct columns of the dataset, none stored encrypted (a sealed value has no
    order; equality on one goes through its blind index, which `indexed` covers), and no
    two are the same."""
    columns = {f.name: f for f in spec.fields}
    seen: set[tuple[str, ...]] = set()
    for ix in spec.indexes:
        label = f"{spec.code} index ({', '.join(ix)})"
        if not 2 <= len(ix) <= MAX_INDEX_COLUMNS:
            return f"{label}: an index lists 2 to {MAX_INDEX_COLUMNS} columns (one column: `indexed: true`)"
        if len(set(ix)) != len(ix):
            return f"{label}: a column is listed twice"
        for name in ix:
            if name not in columns:
                return f"{label}: {name} is not a column of {spec.code}"
            if is_protected(columns[name]):
                return f"{label}: {name} is stored encrypted and cannot be part of an index"
        if ix in seen:
            return f"{label}: declared twice"
        seen.add(ix)
    return None


MAX_INDEX_COLUMNS = 4


def check_watermarkable(spec: DatasetSpec) -> list[tuple[str, str]]:
    """Why fields of this dataset may not carry a watermark (policies.watermark,
    policies.watermark_text), as (field name, message) pairs; empty if every declared mark is
    allowed. A mark changes the value a consumer sees, so it is only for numbers whose exact
    value nobody decides on and strings whose marked forms read the same, and it needs a row
    key to be traced."""
    from policies.watermark_text import TEXT_SCHEMES

    out: list[tuple[str, str]] = []
    for f in spec.fields:
        t, text = f.watermark_tolerance, f.watermark_text
        if t is None and text is None:
            continue
        where, msgs = f"{spec.code}.{f.name}", []
        if t is not None and text is not None:
            msgs.append(f"{where}: a watermark has either a tolerance or a text scheme, not both")
        if t is not None:
            if f.type not in (FieldType.INTEGER, FieldType.FLOAT, FieldType.DECIMAL):
                msgs.append(f"{where}: only integer, float and decimal fields may carry a tolerance")
            if not t.is_finite() or t <= 0:
                msgs.append(f"{where}: the watermark tolerance must be a positive number")
            elif f.type is FieldType.INTEGER and t != t.to_integral_value():
                msgs.append(f"{where}: an integer field's watermark tolerance must be a whole number")
        if text is not None:
            if text not in TEXT_SCHEMES:
                msgs.append(f"{where}: unknown text watermark {text!r} (known: {', '.join(TEXT_SCHEMES)})")
            if f.type is not FieldType.STRING:
                msgs.append(f"{where}: only string fields may carry a text watermark")
        if f.name == spec.entity_field or f.references is not None or f.indexed:
            msgs.append(f"{where}: identifiers, keys and indexed (looked-up) fields never carry a watermark")
        if f.level >= Level.L4 or is_protected(f):
            msgs.append(f"{where}: L4 and sensitive values never carry a watermark")
        if f.decision_relevant:
            msgs.append(f"{where}: a decision-relevant value never carries a watermark")
        if not spec.entity_field:
            msgs.append(f"{where}: a watermark needs rows identified by an entity key (entity_key)")
        out.extend((f.name, m) for m in msgs)
    return out


class DataKey(SQLModel, table=True):
    """A dataset's SM4 data key and blind-index key, each wrapped (SM4-GCM) under the KEK."""

    __tablename__ = "data_key"

    dataset_code: str = Field(primary_key=True, max_length=64)
    wrapped_key: str  # base64
    wrapped_index_key: str  # base64
    created_at: datetime = Field(default_factory=utcnow)


def _kek(master_key: bytes) -> bytes:
    return hmac_sm3(master_key, b"shuqiao/pool-kek/v1")[:16]


def _normalise(value: str) -> str:
    return value.strip().upper()  # 身份证号 check digit x/X, stray spaces


@dataclass(frozen=True)
class DatasetCipher:
    dataset: str
    key: bytes
    index_key: bytes

    def _aad(self, field: str) -> bytes:
        return f"pool/{self.dataset}/{field}".encode()

    def seal(self, field: str, value: str) -> str:
        blob = sm4.encrypt(self.key, value.encode(), self._aad(field))
        return CIPHER_PREFIX + base64.b64encode(blob).decode()

    def open(self, field: str, token: str) -> str:
        if not token.startswith(CIPHER_PREFIX):
            raise DecryptionError("value is not encrypted at rest")
        return sm4.decrypt(self.key, base64.b64decode(token[len(CIPHER_PREFIX) :]), self._aad(field)).decode()

    def blind(self, field: str, value: str) -> str:
        return hmac_sm3(self.index_key, f"{field}\x00{_normalise(value)}".encode()).hex()

    def opener(self, field: str) -> Callable[[str], str]:
        return lambda token: self.open(field, token)

    def blinder(self, field: str) -> Callable[[str], str]:
        return lambda value: self.blind(field, value)


class PoolKeyring:
    """Unwrapped data keys per dataset, loaded once per catalogue version."""

    def __init__(self, master_key: bytes) -> None:
        self._kek = _kek(master_key)
        self._ciphers: dict[str, DatasetCipher] = {}

    def cipher(self, dataset: str) -> DatasetCipher:
        try:
            return self._ciphers[dataset]
        except KeyError:
            raise LookupError(f"no data key for dataset {dataset!r}; run `shuqiao pool encrypt`") from None

    async def load(self, engine: AsyncEngine, datasets: list[DatasetSpec] | None = None) -> PoolKeyring:
        """Load every stored key; create keys for `datasets` that need one and have none."""
        async with AsyncSession(engine, expire_on_commit=False) as session:
            rows = {r.dataset_code: r for r in (await session.exec(select(DataKey))).all()}
            for spec in datasets or []:
                if spec.code not in rows and protected_fields(spec):
                    row = DataKey(
                        dataset_code=spec.code,
                        wrapped_key=self._wrap(secrets.token_bytes(16), spec.code, "data"),
                        wrapped_index_key=self._wrap(secrets.token_bytes(32), spec.code, "index"),
                    )
                    session.add(row)
                    rows[spec.code] = row
            await session.commit()
        for code, row in rows.items():
            self._ciphers[code] = DatasetCipher(
                code,
                self._unwrap(row.wrapped_key, code, "data"),
                self._unwrap(row.wrapped_index_key, code, "index"),
            )
        return self

    def _wrap(self, key: bytes, dataset: str, use: str) -> str:
        return base64.b64encode(sm4.encrypt(self._kek, key, f"kek/{dataset}/{use}".encode())).decode()

    def _unwrap(self, wrapped: str, dataset: str, use: str) -> bytes:
        return sm4.decrypt(self._kek, base64.b64decode(wrapped), f"kek/{dataset}/{use}".encode())


async def load_keyring(engine: AsyncEngine, master_key: bytes, datasets: list[DatasetSpec]) -> PoolKeyring:
    """The keyring, creating missing data keys; a worker that loses the race to create one
    simply reads the winner's."""
    from sqlalchemy.exc import IntegrityError

    try:
        return await PoolKeyring(master_key).load(engine, datasets)
    except IntegrityError:
        return await PoolKeyring(master_key).load(engine)


class RowEncoder:
    """Clear rows (in field order) → stored rows: protected values sealed, blind indexes appended."""

    def __init__(self, spec: DatasetSpec, cipher: DatasetCipher | None) -> None:
        self.spec = spec
        self.cipher = cipher
        names = [f.name for f in spec.fields]
        self.protected = [(names.index(f.name), f.name) for f in protected_fields(spec)]
        self.columns = names + [blind_column(name) for _, name in self.protected]

    def encode(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        if not self.protected:
            return row
        assert self.cipher is not None
        values = list(row)
        blinds: list[str | None] = []
        for i, name in self.protected:
            clear = values[i]
            if clear is None:
                blinds.append(None)
                continue
            values[i] = self.cipher.seal(name, str(clear))
            blinds.append(self.cipher.blind(name, str(clear)))
        return (*values, *blinds)

    def encode_all(self, rows: Iterator[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
        return (self.encode(r) for r in rows)
