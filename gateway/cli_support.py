"""What every `shuqiao` sub-command shares: one async job on a fresh engine, known
failures turned into a one-line message and an exit status, and --json output."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer

from gateway.settings import Settings

T = TypeVar("T")


def settings() -> Settings:
    return Settings.from_env()


def run_with_engine(
    job: Callable[[Any], Awaitable[T]], *, expected: tuple[type[BaseException], ...] = (), status: int = 2
) -> T:
    """Run `job(engine)` on a fresh engine (disposed afterwards). An `expected` error is the
    user's to fix: print it and exit with `status`; anything else is a bug and propagates."""
    from gateway.db import create_engine

    async def go() -> T:
        engine = create_engine(settings().database_url)
        try:
            return await job(engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(go())
    except expected as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(status) from None


def emit(as_json: bool, data: Any, human: str) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, default=str) if as_json else human)
