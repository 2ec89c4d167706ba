"""Background jobs report a dependency outage once when it starts and once when it ends, not a
traceback per retry; a bug keeps its traceback every time."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.exc import OperationalError

from gateway.outages import OutageLog


def test_an_outage_is_two_lines_and_a_bug_a_traceback_each_time(caplog: pytest.LogCaptureFixture) -> None:
    outages = OutageLog(logging.getLogger("shuqiao.test"), "checkpoint")
    down = OperationalError("SELECT 1", {}, Exception("server closed the connection password=s3cr3t"))
    with caplog.at_level(logging.INFO, logger="shuqiao.test"):
        for _ in range(50):
            outages.failed(down)
        outages.succeeded()
        outages.succeeded()
    lines = [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert lines == [
        ("WARNING", "checkpoint: DATABASE_UNAVAILABLE (OperationalError); retrying", False),
        ("WARNING", "checkpoint: recovered after DATABASE_UNAVAILABLE", False),
    ]
    assert "s3cr3t" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="shuqiao.test"):
        for _ in range(3):
            outages.failed(RuntimeError("a bug"))
    assert [(r.getMessage(), r.exc_info is not None) for r in caplog.records] == [
        ("checkpoint failed", True)
    ] * 3
