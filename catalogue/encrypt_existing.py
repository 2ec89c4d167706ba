"""Encrypting the clear values already in the pool, in place, batch by batch.

For stores that predate encryption at rest (or a field reclassified to L4 / sensitive).
Each batch commits on its own and only clear values are picked up, so an interrupted run
loses nothing and the next run resumes where it stopped."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import bindparam, not_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from catalogue import service
from catalogue.pool import ROW_ID, pool_table
from catalogue.protection import CIPHER_PREFIX, blind_column, load_keyring, protected_fields

Progress = Callable[[str, int], None]


async def encrypt_existing(
    engine: AsyncEngine,
    master_key: bytes,
    *,
    batch: int = 1000,
    max_batches: int | None = None,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Returns the number of values encrypted per `dataset.field`."""
    catalogue = await service.load_catalogue(engine)
    specs = [s for s in catalogue.datasets.values() if protected_fields(s)]
    for spec in specs:
        await service.sync_pool_table(engine, spec)  # blind-index columns and their indexes
    keyring = await load_keyring(engine, master_key, specs)
    done: dict[str, int] = {}
    batches = 0
    for spec in specs:
        table = pool_table(spec)
        cipher = keyring.cipher(spec.code)
        for f in protected_fields(spec):
            col, blind = table.c[f.name], table.c[blind_column(f.name)]
            write = (
                update(table)
                .where(table.c[ROW_ID] == bindparam("rid"))
                .values({f.name: bindparam("v"), blind.name: bindparam("b")})
            )
            count = 0
            while max_batches is None or batches < max_batches:
                async with engine.begin() as conn:
                    rows = (
                        await conn.execute(
                            select(table.c[ROW_ID], col)
                            .where(col.is_not(None), not_(col.startswith(CIPHER_PREFIX)))
                            .order_by(table.c[ROW_ID])
                            .limit(batch)
                        )
                    ).all()
                    if not rows:
                        break
                    await conn.execute(
                        write,
                        [
                            {"rid": rid, "v": cipher.seal(f.name, str(v)), "b": cipher.blind(f.name, str(v))}
                            for rid, v in rows
                        ],
                    )
                batches += 1
                count += len(rows)
                if progress:
                    progress(f"{spec.code}.{f.name}", len(rows))
            done[f"{spec.code}.{f.name}"] = count
    return done
