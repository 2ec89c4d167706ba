"""The watermark keys: made once (two workers racing agree on one), stored wrapped, rotated with
the old ones kept for tracing; marks made under the old key still trace after a rotation."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.conftest import create_database


def test_first_key_race_rotation_and_wrapping(tmp_path: Path) -> None:
    from sqlalchemy import text

    from gateway.db import create_engine, upgrade
    from gateway.watermark_keys import load_watermark_keys, rotate_watermark_key

    url, drop = create_database("sqlite", tmp_path)
    upgrade(url)
    master = bytes(range(32))

    async def go() -> None:
        engine = create_engine(url)
        try:
            a, b = await asyncio.gather(
                load_watermark_keys(engine, master), load_watermark_keys(engine, master)
            )
            assert a.current is not None and b.current is not None and a.current.kid == b.current.kid
            first = a.current
            async with engine.connect() as conn:
                stored = (await conn.execute(text("SELECT wrapped_key FROM watermark_key"))).scalars().all()
            assert len(stored) == 1 and first.secret.hex() not in stored[0]
            kid = await rotate_watermark_key(engine, master)
            ring = await load_watermark_keys(engine, master)
            assert ring.current is not None and ring.current.kid == kid != first.kid
            assert [k.kid for k in ring.all] == [kid, first.kid]  # the old one kept, for tracing
            assert first.secret in [k.secret for k in ring.all]
            assert "secret" not in repr(ring.current) and ring.current.secret.hex() not in repr(ring.all)
        finally:
            await engine.dispose()

    try:
        asyncio.run(go())
    finally:
        drop()


def test_no_key_created_when_told_not_to(tmp_path: Path) -> None:
    from gateway.db import create_engine, upgrade
    from gateway.watermark_keys import load_watermark_keys

    url, drop = create_database("sqlite", tmp_path)
    upgrade(url)

    async def go() -> Any:
        engine = create_engine(url)
        try:
            return await load_watermark_keys(engine, bytes(32), create=False)
        finally:
            await engine.dispose()

    ring = asyncio.run(go())
    assert ring.current is None and ring.all == []
    drop()
