"""The sync scheduler inside `serve`: off unless SHUQIAO_SYNC=on.

Every `CHECK_SECONDS` it looks at the datasets that have a source (`shuqiao data source`) and
syncs each one whose update cycle has elapsed since its last sync (realtime: every check). One
sync at a time per process; with several workers, each sync takes the pool table's write lock, so
two syncs of one dataset run one after the other, and the second upserts what the first did
(an upsert on the key is idempotent). Failures are recorded on the dataset (`last_sync_outcome`)
and logged; the loop carries on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from catalogue.freshness import load_statuses
from catalogue.service import load_catalogue
from gateway.loading.readers import LoadError
from gateway.outages import OutageLog

log = logging.getLogger("shuqiao")
CHECK_SECONDS = 60.0
CYCLES = {
    "realtime": timedelta(0),
    "hourly": timedelta(hours=1),
    "daily": timedelta(days=1),
    "weekly": timedelta(weeks=1),
    "monthly": timedelta(days=30),
    "quarterly": timedelta(days=91),
    "yearly": timedelta(days=365),
    "annually": timedelta(days=365),
}


def due(update_cycle: str, last_sync: datetime | None, now: datetime) -> bool:
    """Whether a dataset with this update cycle, last synced then, should sync now. An
    unknown cycle (e.g. "irregular") is synced daily."""
    if last_sync is None:
        return True
    if last_sync.tzinfo is None:
        last_sync = last_sync.replace(tzinfo=UTC)  # SQLite hands back naive UTC
    return now - last_sync >= CYCLES.get(update_cycle, timedelta(days=1))


async def due_datasets(engine: AsyncEngine, now: datetime) -> list[str]:
    catalogue = await load_catalogue(engine)
    statuses = await load_statuses(engine)
    return [
        code
        for code, s in sorted(statuses.items())
        if s.source_url
        and code in catalogue.datasets
        and due(catalogue.datasets[code].update_cycle, s.last_sync_at, now)
    ]


class SyncScheduler:
    def __init__(
        self, engine: AsyncEngine, master_key: bytes, audit: Any, interval: float = CHECK_SECONDS
    ) -> None:
        self.engine = engine
        self.master_key = master_key
        self.audit = audit
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="shuqiao-sync")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def run_once(self) -> dict[str, str]:
        from gateway.loading.service import sync_dataset

        outcomes: dict[str, str] = {}
        for code in await due_datasets(self.engine, datetime.now(UTC)):
            try:
                result = await sync_dataset(self.engine, code, master_key=self.master_key, audit=self.audit)
                outcomes[code] = f"ok: {result.inserted} inserted, {result.updated} updated"
            except (LoadError, OSError) as err:
                outcomes[code] = f"failed: {err}"
                log.warning("sync of %s failed: %s", code, err)
        return outcomes

    async def _run(self) -> None:
        outages = OutageLog(log, "sync scheduler check")
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # a bug or a database outage: logged, and the next check tries again
                outages.failed(err)
            else:
                outages.succeeded()
            await asyncio.sleep(self.interval)
