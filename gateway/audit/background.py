"""`PeriodicTask`: the shape of every audit job that runs beside the request path (checkpoints,
alerts, retention): wait, run one step, log a failure (an outage once, not per retry) and try
again next time. A failure never reaches a request; stopping cancels the wait or the step."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway.outages import OutageLog

log = logging.getLogger("shuqiao.audit")


class PeriodicTask:
    name = "audit-task"

    def __init__(self, every: float, first_after: float | None = None) -> None:
        self.every = every
        self.first_after = every if first_after is None else first_after
        self._task: asyncio.Task[None] | None = None

    async def step(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        delay = self.first_after
        outages = OutageLog(log, self.name)
        while True:
            await asyncio.sleep(delay)
            delay = self.every
            try:
                await self.step()
            except Exception as err:
                outages.failed(err)
            else:
                outages.succeeded()
