"""answer_once_recorded with a queueing sink: the event is queued first, the work on the answer
(`meanwhile`, e.g. signing) runs while it commits, and the answer is returned only once the
commit is settled; a failed commit withholds it. Which sinks queue is the `QueueingAccessLog`
protocol (mypy checks the chained store against it, below), not an attribute looked up by name."""

from __future__ import annotations

import asyncio

from starlette.responses import Response

from gateway.access_log import (
    AccessEvent,
    AccessLog,
    LoggingAccessLog,
    QueueingAccessLog,
    answer_once_recorded,
    queues,
)
from gateway.audit.store import ChainedAuditLog
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


def _the_chained_store_queues(store: ChainedAuditLog) -> QueueingAccessLog:
    return store  # not called: mypy checks that ChainedAuditLog satisfies the protocol


class RecordingSink:
    """Records only, and has a `submit` attribute that is not the protocol's (a plain value):
    it is used through record(), as before."""

    submit = None

    def __init__(self) -> None:
        self.steps: list[str] = []

    async def record(self, event: AccessEvent) -> None:
        self.steps.append("recorded")


def test_which_sinks_queue() -> None:
    assert queues(QueueingSink()) and queues(QueueingSink())  # the second from the per-type cache
    assert not queues(LoggingAccessLog())
    assert issubclass(ChainedAuditLog, QueueingAccessLog)
    assert not issubclass(LoggingAccessLog, QueueingAccessLog)


def test_a_recording_sink_records_before_the_answer_leaves() -> None:
    async def go() -> tuple[list[str], Response]:
        sink = RecordingSink()
        typed: AccessLog = sink
        response = Response(b"{}", media_type="application/json")
        answer = await answer_once_recorded(
            typed, _event(), response, meanwhile=lambda r: sink.steps.append("signed")
        )
        return sink.steps, answer

    steps, answer = asyncio.run(go())
    assert steps == ["signed", "recorded"] and answer.status_code == 200
