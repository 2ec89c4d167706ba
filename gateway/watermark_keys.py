"""The gateway's watermark secrets (数据水印, policies.watermark): random 256-bit keys stored
wrapped (SM4-GCM) under the master key-encryption key, like the pool's data keys, so the
database alone cannot re-derive or forge a mark.

One key is current (marks new deliveries); `rotate` makes a new one current and keeps the
old ones, because a leak found next year was marked with last year's key: tracing tries
every key. Only key ids are ever logged, recorded in the audit log or shown."""

from __future__ import annotations

import base64
import secrets
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Field, SQLModel, col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from catalogue.models import CatalogueState, utcnow
from keys import sm4
from keys.sm3 import hmac_sm3, sm3
from policies.watermark import MarkKey


class WatermarkKey(SQLModel, table=True):
    __tablename__ = "watermark_key"

    kid: str = Field(primary_key=True, max_length=32)
    # 1, 2, … unique: two workers creating the first key (or two rotations at once) collide on
    # it, and the loser reads the winner's, so every worker marks with the same key
    generation: int = Field(unique=True)
    wrapped_key: str  # base64 of SM4-GCM(nonce‖ciphertext‖tag) under the KEK
    created_at: datetime = Field(default_factory=utcnow)
    retired_at: datetime | None = Field(default=None)


def _kek(master_key: bytes) -> bytes:
    return hmac_sm3(master_key, b"shuqiao/watermark-kek/v1")[:16]


def _kid(secret: bytes) -> str:
    # a one-way id: SM3 of a derived value, never of the secret itself
    return "wm-" + sm3(hmac_sm3(secret, b"shuqiao/watermark-kid/v1"))[:6].hex()


class WatermarkKeyring:
    """The unwrapped keys, newest current key first."""

    def __init__(self, keys: list[tuple[MarkKey, bool]]) -> None:
        self._keys = keys  # (key, active)

    @property
    def current(self) -> MarkKey | None:
        return next((k for k, active in self._keys if active), None)

    @property
    def all(self) -> list[MarkKey]:
        return [k for k, _ in self._keys]

    def kids(self) -> list[str]:
        return [k.kid for k, _ in self._keys]


async def load_watermark_keys(
    engine: AsyncEngine, master_key: bytes, *, create: bool = True
) -> WatermarkKeyring:
    """Every stored key; with `create`, a first key when there is none (a worker that loses
    the race to create it reads the winner's)."""
    from sqlalchemy.exc import IntegrityError

    kek = _kek(master_key)
    async with AsyncSession(engine, expire_on_commit=False) as session:
        rows = list((await session.exec(select(WatermarkKey))).all())
        if not rows and create:
            session.add(_new_row(kek, 1))
            try:
                await session.commit()
            except IntegrityError:
                await session.rollback()
            rows = list((await session.exec(select(WatermarkKey))).all())
    rows.sort(key=lambda r: r.generation, reverse=True)
    return WatermarkKeyring([(MarkKey(r.kid, _unwrap(kek, r)), r.retired_at is None) for r in rows])


async def rotate_watermark_key(engine: AsyncEngine, master_key: bytes) -> str:
    """A new current key; the others retire (kept for tracing). Bumps the catalogue version so
    every worker reloads its keys. Returns the new key id."""
    async with AsyncSession(engine) as session:
        now = utcnow()
        last = (await session.exec(select(func.max(WatermarkKey.generation)))).one()
        row = _new_row(_kek(master_key), (last or 0) + 1)
        await session.exec(
            update(WatermarkKey).where(col(WatermarkKey.retired_at).is_(None)).values(retired_at=now)
        )
        session.add(row)
        state = await session.get(CatalogueState, 1)
        if state is not None:
            state.version += 1
            state.changed_at = now
            session.add(state)
        kid = row.kid
        await session.commit()
    return kid


def _new_row(kek: bytes, generation: int) -> WatermarkKey:
    secret = secrets.token_bytes(32)
    kid = _kid(secret)
    blob = sm4.encrypt(kek, secret, f"kek/watermark/{kid}".encode())
    return WatermarkKey(kid=kid, generation=generation, wrapped_key=base64.b64encode(blob).decode())


def _unwrap(kek: bytes, row: WatermarkKey) -> bytes:
    return sm4.decrypt(kek, base64.b64decode(row.wrapped_key), f"kek/watermark/{row.kid}".encode())
