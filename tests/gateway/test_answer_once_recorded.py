"""answer_once_recorded with a queueing sink: the event is queued first, the work on the answer
(`meanwhile`, e.g. signing) runs while it commits, and the answer is returned only once the
commit is settled; a failed commit withholds it."""

from __future__ import annotations

import asyncio

from starlette.responses import Response

from gateway.access_log import AccessEvent, answer_once_recorded
from gateway.problems import AUDIT_UNAVAILABLE


def _event() -> AccessEvent:
    return AccessEvent("req-00000001", "open", "anonymous", "", None, None, None, "query", None, 200, [], 1.0)


class QueueingSink:
    def __init__(self) -> None:
        self.steps: list[str] = []
        self.commit: asyncio.Future[None] | None = None

    async def record(self, event: AccessEvent) -> None:  # not used when `submit` exists
        raise AssertionError("record() called")

    def submit(self, event: AccessEvent) -> asyncio.Future[None]:
        self.steps.append("queued")
        self.commit = asyncio.get_running_loop().create_future()
        return self.commit


async def _answer(fail: bool) -> tuple[list[str], Response]:
    sink = QueueingSink()
    response = Response(b"{}", media_type="application/json")

    def meanwhile(r: Response) -> None:
        assert r is response and sink.commit is not None and not sink.commit.done()
        sink.steps.append("signed")

    task = asyncio.create_task(answer_once_recorded(sink, _event(), response, meanwhile=meanwhile))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert sink.steps == ["queued", "signed"] and not task.done()  # waits for the commit
    assert sink.commit is not None
    if fail:
        sink.commit.set_exception(OSError("disk gone"))
    else:
        sink.commit.set_result(None)
    return sink.steps, await task


def test_work_on_the_answer_overlaps_the_commit_and_the_answer_waits_for_it() -> None:
    steps, answer = asyncio.run(_answer(fail=False))
    assert steps == ["queued", "signed"]
    assert answer.status_code == 200 and answer.body == b"{}"


def test_a_failed_commit_withholds_the_answer() -> None:
    _, answer = asyncio.run(_answer(fail=True))
    assert answer.status_code == AUDIT_UNAVAILABLE.status
