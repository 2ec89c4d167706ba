"""DepartmentKeyDirectory.refresh: the active keys and the departments that must sign their
requests, read in one statement, the same view as before."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.crypto.requests import set_signed_requests_required
from gateway.crypto.service import DepartmentKeyDirectory
from tests.conftest import DemoEnv
from tests.crypto.conftest import on_db


def test_refresh_reads_keys_and_signing_flags_in_one_statement(
    demo_env: DemoEnv, hrss_key: dict[str, str]
) -> None:
    async def go(engine: AsyncEngine) -> None:
        # hrss has a key and must sign; samr must sign with no key; tax was marked and unmarked
        for dept, required in (("hrss", True), ("samr", True), ("tax", True), ("tax", False)):
            await set_signed_requests_required(engine, dept, required)
        statements: list[str] = []

        def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)

        event.listen(engine.sync_engine, "before_cursor_execute", seen)
        try:
            directory = DepartmentKeyDirectory(engine, poll_seconds=60.0)
            await directory.refresh()
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", seen)
            for dept in ("hrss", "samr", "tax"):
                await set_signed_requests_required(engine, dept, False)
        assert len(statements) == 1
        key = directory.active("hrss")
        assert key is not None and key.kid == hrss_key["kid"] and key.department == "hrss"
        assert directory.by_kid(hrss_key["kid"]) is key
        assert key.not_before.tzinfo is not None and key.not_before < key.not_after
        assert directory.requires_signed_requests("hrss")
        assert directory.requires_signed_requests("samr")
        assert directory.active("samr") is None  # a signing flag is not a key
        assert not directory.requires_signed_requests("tax")
        assert directory.by_kid("") is None  # nothing was keyed under the flag rows' NULL kid

    on_db(demo_env, go)
