"""`shuqiao audit …`: verify the chain and export a filtered range, for officers and scripts."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)


def _engine() -> Any:
    from gateway.db import create_engine
    from gateway.settings import Settings

    return create_engine(Settings.from_env().database_url)


@audit_app.command("verify")
def verify(as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False) -> None:
    """Recompute the SM3 chain; exit 1 and name the first broken position if it does not hold."""
    from gateway.audit.verify import verify_chain

    async def go() -> Any:
        engine = _engine()
        try:
            return await verify_chain(engine)
        finally:
            await engine.dispose()

    report = asyncio.run(go())
    if as_json:
        typer.echo(json.dumps(asdict(report), ensure_ascii=False))
    elif report.ok:
        typer.echo(f"audit chain verified: {report.events_checked} events")
    else:
        typer.echo(f"AUDIT CHAIN BROKEN at seq {report.first_bad_seq}: {report.reason} "
                   f"({report.events_checked} events verified before it)")
    raise typer.Exit(0 if report.ok else 1)


@audit_app.command("export")
def export(
    from_: Annotated[str | None, typer.Option("--from", help="ISO date/time; no offset = UTC+08:00.")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Exclusive; a bare date: through that day.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="csv (UTF-8 with BOM) or json.")] = "csv",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File (default: stdout).")] = None,
    principal: str | None = None,
    department: str | None = None,
    dataset: str | None = None,
    field: Annotated[str | None, typer.Option(help="idNumber, id_number or population.idNumber")] = None,
    decision: str | None = None,
    status: str | None = None,
) -> None:
    """Export the events in a range (and filters), oldest first. Query variables stay sealed."""
    from gateway.audit import query

    params = {"from": from_, "to": to, "principal": principal, "department": department,
              "dataset": dataset, "field": field, "decision": decision, "status": status}
    try:
        filters = query.Filters.from_params({k: v for k, v in params.items() if v is not None})
        if fmt not in ("csv", "json"):
            raise query.BadFilter("--format is csv or json")
    except query.BadFilter as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None

    async def go() -> None:
        engine = _engine()
        sink = output.open("wb") if output else sys.stdout.buffer
        try:
            async for chunk in query.export(engine, filters, fmt):
                sink.write(chunk)
        finally:
            if output:
                sink.close()
            else:
                sink.flush()
            await engine.dispose()

    asyncio.run(go())
