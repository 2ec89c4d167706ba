"""`shuqiao audit …`: verify the chain and export a filtered range, for officers and scripts."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from gateway.cli_support import run_with_engine

audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)


@audit_app.command("verify")
def verify(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Worker processes on PostgreSQL, each a seq range in one snapshot (default: CPUs).",
        ),
    ] = None,
) -> None:
    """Recompute the SM3 chain; exit 1 and name the first broken position if it does not hold.
    After a prune, the whole history: each archived range (its signed archive, SM3 and prune
    anchor) and the live chain from the last anchor, named in order (gateway/audit/history.py)."""
    import os

    from gateway.audit.verify import verify_chain

    async def go(engine: Any) -> tuple[Any, Any]:
        report = await verify_chain(engine, workers=workers or os.cpu_count() or 1)
        if not report.pruned_through:
            return report, None
        from gateway.audit.history import verify_history
        from gateway.audit.retention import archive_dir
        from gateway.cli_support import settings

        return report, await verify_history(engine, _store(), archive_dir(settings().var_dir), report)

    report, history = run_with_engine(go)
    ok = report.ok and (history is None or history.ok)
    if as_json:
        from gateway.audit.history import with_history

        doc = report.to_json() if history is None else with_history(report.to_json(), history)
        typer.echo(json.dumps(doc, ensure_ascii=False))
        raise typer.Exit(0 if ok else 1)
    for seg in history.segments if history is not None else []:
        state = "ok" if seg.ok else f"BROKEN: {seg.reason}"
        if seg.kind == "archived":
            typer.echo(
                f"archived {seg.from_seq}..{seg.to_seq} ({seg.events} events) {seg.archive}, "
                f"anchor {seg.to_seq} → {str(seg.anchor_hash)[:16]}…: {state}"
            )
        else:
            typer.echo(f"live {seg.from_seq}..{seg.to_seq} ({seg.events} events): {state}")
    for name in history.unanchored_archives if history is not None else []:
        typer.echo(f"note: {name} is not named by any prune anchor (not verified)")
    if history is not None and report.ok and not history.ok:
        typer.echo(f"AUDIT HISTORY BROKEN at seq {history.first_bad_seq}: {history.reason}")
    elif report.ok and report.pruned_through:
        k, n = report.pruned_through, report.events_checked
        span = f"events {k + 1}..{k + n}" if n else "no events since the prune"
        typer.echo(f"audit chain verified: {span} (1..{k} pruned and archived)")
    elif report.ok:
        typer.echo(f"audit chain verified: {report.events_checked} events")
    else:
        typer.echo(
            f"AUDIT CHAIN BROKEN at seq {report.first_bad_seq}: {report.reason} "
            f"({report.events_checked} events verified before it)"
        )
    raise typer.Exit(0 if ok else 1)


@audit_app.command("search")
def search(
    archived: Annotated[bool, typer.Option("--archived", help="Search the archives retention left.")] = False,
    from_: Annotated[str | None, typer.Option("--from", help="ISO date/time; no offset = UTC+08:00.")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Exclusive; a bare date: through that day.")] = None,
    principal: str | None = None,
    department: str | None = None,
    dataset: str | None = None,
    field: Annotated[str | None, typer.Option(help="idNumber, id_number or population.idNumber")] = None,
    decision: str | None = None,
    status: str | None = None,
    tier: str | None = None,
    limit: int = 100,
    before: Annotated[int | None, typer.Option(help="Page on: events before this seq.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    exact: Annotated[
        bool, typer.Option("--exact", help="Count every match (past 10,000 the total is otherwise capped).")
    ] = False,
) -> None:
    """Events matching the filters, newest first: the live chain, or (--archived) the archives
    read in place, without re-importing them (slower: each archive is read line by line). The
    total is exact up to 10,000 matches, then "10000+" (`total_exact` false in --json) unless
    --exact counts them all."""
    from gateway.audit import query

    params = {
        "from": from_, "to": to, "principal": principal, "department": department, "dataset": dataset,
        "field": field, "decision": decision, "status": status, "tier": tier,
    }  # fmt: skip
    try:
        filters = query.Filters.from_params({k: v for k, v in params.items() if v is not None})
    except query.BadFilter as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None

    async def go(engine: Any) -> dict[str, Any]:
        if archived:
            from gateway.audit.history import search_archives
            from gateway.audit.retention import archive_dir
            from gateway.cli_support import settings

            return await search_archives(
                engine, archive_dir(settings().var_dir), filters, limit=limit, before=before
            )
        async with engine.connect() as conn:
            return await query.search(conn, filters, limit=limit, before=before, exact=exact)

    page = run_with_engine(go)
    if as_json:
        typer.echo(json.dumps(page, ensure_ascii=False, default=str))
        return
    for e in page["events"]:
        where = f" [{e['archive']}]" if "archive" in e else ""
        typer.echo(f"{e['seq']} {e['occurred_at']} {e['tier']} {e['principal_id']} {e['status']}{where}")
    typer.echo(
        f"{page['total']}{'' if page['total_exact'] else '+'} events match"
        + (f"; more before {page['next_before']}" if page["next_before"] else "")
    )


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
    """Export the events in a range (and filters), oldest first. Query variables stay sealed.
    With -o FILE, FILE.sig is written beside it: the export signed with the gateway's SM2 key as
    an RFC 9421 response (`shuqiao verify-response FILE.sig --body FILE --pubkey …`)."""
    from gateway.audit import query

    params = {
        "from": from_,
        "to": to,
        "principal": principal,
        "department": department,
        "dataset": dataset,
        "field": field,
        "decision": decision,
        "status": status,
    }
    try:
        filters = query.Filters.from_params({k: v for k, v in params.items() if v is not None})
        if fmt not in ("csv", "json"):
            raise query.BadFilter("--format is csv or json")
    except query.BadFilter as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None

    signer = None
    if output is not None:
        from gateway.crypto.signing import ResponseSigner

        signer = ResponseSigner(_store())
        try:
            signer.current()  # before any work: no signing key, no export
        except Exception as err:
            typer.echo(f"error: no gateway signing key to sign the export with: {err}", err=True)
            raise typer.Exit(1) from None

    async def go(engine: Any) -> None:
        sink = output.open("wb") if output else sys.stdout.buffer
        try:
            async for chunk in query.export(engine, filters, fmt):
                sink.write(chunk)
        finally:
            if output:
                sink.close()
            else:
                sink.flush()

    run_with_engine(go)
    if output is not None and signer is not None:
        _sign_export(signer, output, fmt)


def _sign_export(signer: Any, output: Path, fmt: str) -> None:
    import uuid

    from gateway.crypto.signing import detached_signature

    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/json"
    headers = {"content-type": media, "x-request-id": f"cli-export-{uuid.uuid4().hex}"}
    added = signer.sign(200, headers, output.read_bytes())
    sig = output.with_name(output.name + ".sig")
    sig.write_bytes(detached_signature(200, {**headers, **added}))
    typer.echo(f"signed: {sig} (key {signer.current()[0].kid})", err=True)


def _store() -> Any:
    from gateway.crypto.signing import open_signing_store
    from gateway.settings import Settings

    return open_signing_store(Settings.from_env().var_dir, create=False)


@audit_app.command("checkpoint")
def checkpoint(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Sign the chain head now with the gateway's SM2 key (after re-verifying since the last one)."""
    from gateway.audit.checkpoints import CheckpointError, write_checkpoint

    async def go(engine: Any) -> Any:
        return await write_checkpoint(engine, _store())

    try:
        cp = run_with_engine(go)
    except CheckpointError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(cp.to_json() if cp else None))
    elif cp is None:
        typer.echo("the audit chain is empty; nothing to sign")
    else:
        typer.echo(f"checkpoint at seq {cp.seq} signed by key {cp.kid}")


@audit_app.command("partitions")
def partitions(
    ahead: Annotated[int, typer.Option(help="Months to make ahead of the current one.")] = 3,
    since: Annotated[
        str | None, typer.Option(help="Also every month from this date's (YYYY-MM-DD), e.g. before a load.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """PostgreSQL: make audit_event's monthly partitions (this month and AHEAD more) and move any
    event the default partition caught into its month. The gateway does the same at start-up
    and every six hours."""
    from gateway.audit.partitions import maintain

    try:
        start = datetime.fromisoformat(since).replace(tzinfo=UTC) if since else None
    except ValueError:
        typer.echo(f"error: --since {since!r} is not a date (YYYY-MM-DD)", err=True)
        raise typer.Exit(2) from None

    async def go(engine: Any) -> Any:
        return await maintain(engine, ahead=ahead, since=start)

    report = run_with_engine(go)
    if as_json:
        typer.echo(json.dumps(report.to_json(), ensure_ascii=False))
        return
    if not report.partitioned:
        typer.echo("audit_event is not partitioned (SQLite, or PostgreSQL before migration 0027)")
        return
    for name, rows in report.moved.items():
        typer.echo(f"moved {rows} events from the default partition into {name}")
    for name in report.created:
        typer.echo(f"created {name}")
    typer.echo(f"{len(report.partitions)} partitions: {', '.join(report.partitions)}")


@audit_app.command("verify-checkpoints")
def verify_checkpoints(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The chain check plus every signed checkpoint (catches a chain rewritten through its head)."""
    from gateway.audit.checkpoints import verify_with_checkpoints

    async def go(engine: Any) -> Any:
        return await verify_with_checkpoints(engine, _store())

    report = run_with_engine(go)
    if as_json:
        typer.echo(json.dumps(asdict(report), ensure_ascii=False))
    elif report.ok:
        pruned = f" (1..{report.pruned_through} pruned and archived)" if report.pruned_through else ""
        typer.echo(
            f"audit chain verified: {report.events_checked} events{pruned}, "
            f"{report.checkpoints_checked} signed checkpoints"
        )
    else:
        typer.echo(f"AUDIT CHAIN BROKEN at seq {report.first_bad_seq}: {report.reason}")
    raise typer.Exit(0 if report.ok else 1)


@audit_app.command("export-archive")
def export_archive(
    output: Annotated[Path, typer.Option("--output", "-o", help="The archive file (JSON lines).")],
    from_seq: Annotated[int, typer.Option("--from-seq")] = 1,
    to_seq: Annotated[int | None, typer.Option("--to-seq", help="Default: the chain head.")] = None,
) -> None:
    """A seq range as a signed archive, verifiable offline with `verify-archive` and the public key."""
    from gateway.audit.checkpoints import CheckpointError
    from gateway.audit.checkpoints import export_archive as export

    async def go(engine: Any) -> None:
        with output.open("wb") as sink:
            async for chunk in export(engine, _store(), from_seq, to_seq):
                sink.write(chunk)

    try:
        run_with_engine(go)
    except CheckpointError as err:
        output.unlink(missing_ok=True)
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {output}")


@audit_app.command("verify-archive")
def verify_archive_cmd(
    archive: Annotated[Path, typer.Argument(help="An archive from export-archive.")],
    pubkey: Annotated[Path, typer.Option("--pubkey", help="The gateway's SM2 public key (PEM).")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Verify an archive, or an investigation's bundle, offline: no database, only the public key."""
    from gateway.audit.checkpoints import verify_archive
    from keys import sm2

    data = archive.read_bytes()
    public = sm2.load_pem_public_key(pubkey.read_bytes())
    from gateway.audit.bundle import is_bundle, verify_bundle

    if is_bundle(data):  # an investigation's signed bundle (`shuqiao audit bundle`)
        checked = verify_bundle(data, public)
        if as_json:
            typer.echo(json.dumps(checked.to_json(), ensure_ascii=False))
        elif checked.ok:
            view = checked.investigation.get("view")
            span = f"seq {checked.seqs[0]}..{checked.seqs[-1]}" if checked.seqs else "no events"
            typer.echo(
                f"bundle verified: {checked.events} events ({span}), {view} view, signed by key {checked.kid}"
            )
        else:
            typer.echo(f"BUNDLE DOES NOT VERIFY: {checked.reason}")
        raise typer.Exit(0 if checked.ok else 1)
    report = verify_archive(data, public)
    if as_json:
        typer.echo(json.dumps(asdict(report), ensure_ascii=False))
    elif report.ok:
        typer.echo(
            f"archive verified: seq {report.from_seq}..{report.to_seq}, {report.events} events, "
            f"signed by key {report.kid}"
        )
    else:
        typer.echo(f"ARCHIVE DOES NOT VERIFY: {report.reason}")
    raise typer.Exit(0 if report.ok else 1)


@audit_app.command("prune")
def prune(
    older_than_days: Annotated[
        int | None,
        typer.Option(
            "--older-than-days", min=0, help="Only up to the newest checkpoint whose event is older."
        ),
    ] = None,
) -> None:
    """Archive everything up to the latest checkpoint (or the newest one older than N days) to
    <var_dir>/audit-archive/ (signed, verified) and delete those rows; a prune anchor records where,
    and the checkpoint stays: verification starts after it."""
    from gateway.audit.forward import delivered_by_all, sinks_from_settings
    from gateway.audit.retention import RetentionError, archive_and_prune, archive_dir, prune_limit
    from gateway.portal.usage import counted_through
    from gateway.settings import Settings

    cutoff = None if older_than_days is None else datetime.now(UTC) - timedelta(days=older_than_days)

    async def go(engine: Any) -> Any:
        settings = Settings.from_env()
        # no further than the usage rollup has counted and every SOC sink has delivered
        sinks = sinks_from_settings(settings)
        held = await prune_limit(engine, [counted_through, lambda e: delivered_by_all(e, sinks)])
        return await archive_and_prune(
            engine, _store(), archive_dir(settings.var_dir), through_seq=held, older_than=cutoff
        )

    path = run_with_engine(go, expected=(RetentionError,), status=1)
    typer.echo(f"archived and pruned: {path}" if path else "nothing sealed by a checkpoint to prune")


@audit_app.command("verify-retained")
def verify_retained_cmd(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Verify the archives in <var_dir>/audit-archive/, the remaining chain from their anchor,
    and every checkpoint: the whole history, pruned range included."""
    from gateway.audit.retention import archive_dir, verify_retained
    from gateway.settings import Settings

    async def go(engine: Any) -> Any:
        return await verify_retained(engine, _store(), archive_dir(Settings.from_env().var_dir))

    report = run_with_engine(go)
    if as_json:
        typer.echo(json.dumps(asdict(report), ensure_ascii=False))
    elif report.ok:
        typer.echo(
            f"audit history verified: {report.events_checked} events (archives and chain), "
            f"{report.checkpoints_checked} signed checkpoints"
        )
    else:
        typer.echo(f"AUDIT HISTORY BROKEN at seq {report.first_bad_seq}: {report.reason}")
    raise typer.Exit(0 if report.ok else 1)


@audit_app.command("forward")
def forward(
    once: Annotated[bool, typer.Option("--once", help="Deliver the backlog once and exit.")] = False,
    status: Annotated[bool, typer.Option("--status", help="Only show each sink's cursor and lag.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Send the events and alerts not yet delivered to the sinks SHUQIAO_AUDIT_SYSLOG_TARGET and
    SHUQIAO_AUDIT_FORWARD_JSONL configure (the gateway does this by itself every second); without
    --once, keep going until interrupted. Exit 1 if a sink could not take its messages."""
    import asyncio

    from gateway.audit.forward import Forwarder, ForwardTask, forward_status, sinks_from_settings
    from gateway.cli_support import settings

    try:
        sinks = sinks_from_settings(settings())
    except (ValueError, OSError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    if not sinks and not status:
        typer.echo(
            "error: no sink: set SHUQIAO_AUDIT_SYSLOG_TARGET and/or SHUQIAO_AUDIT_FORWARD_JSONL", err=True
        )
        raise typer.Exit(2)

    async def go(engine: Any) -> dict[str, Any]:
        reports = []
        if not status:
            forwarders = [Forwarder(engine, sink) for sink in sinks]
            try:
                if once:
                    reports = [(await f.run_backlog(until_caught_up=True)).to_json() for f in forwarders]
                else:  # as the gateway's task does: every second, with backoff after a failure
                    task = ForwardTask(forwarders)
                    while True:
                        await task.step()
                        await asyncio.sleep(1.0)
            finally:
                for f in forwarders:
                    await f.release()
        async with engine.connect() as conn:
            return {"delivered": reports, "sinks": await forward_status(conn)}

    try:
        doc = run_with_engine(go)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    ok = all(r["ok"] for r in doc["delivered"])
    if as_json:
        typer.echo(json.dumps(doc, ensure_ascii=False))
    else:
        for r in doc["delivered"]:
            state = "ok" if r["ok"] else f"FAILED: {r['error']}"
            typer.echo(
                f"{r['sink']} {r['target']}: {r['events']} events, {r['alerts']} alerts sent ({state})"
            )
        for s in doc["sinks"]:
            typer.echo(
                f"{s['sink']}: through event {s['event_seq']} (lag {s['lag_events']}), "
                f"alert {s['alert_id']} (lag {s['lag_alerts']})"
            )
    raise typer.Exit(0 if ok else 1)


alerts_app = typer.Typer(
    help="Alerts: list, show, acknowledge, assign, comment, close.", no_args_is_help=True
)
audit_app.add_typer(alerts_app, name="alerts")

AsName = Annotated[
    str | None,
    typer.Option("--as", help="Who is acting (recorded as the event's subject); default: your login."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


@alerts_app.command("list")
def alerts_list(
    state: Annotated[
        str, typer.Option(help="open, acknowledged, assigned, closed, active, handled, all")
    ] = "active",
    rule: str | None = None,
    assignee: str | None = None,
    limit: int = 100,
    as_json: JsonFlag = False,
) -> None:
    """Alerts, newest first."""
    from gateway.audit.alerts import list_alerts

    async def go(engine: Any) -> dict[str, Any]:
        async with engine.connect() as conn:
            return await list_alerts(conn, state=state, rule=rule, limit=limit, assignee=assignee)

    page = run_with_engine(go, expected=(ValueError,))
    if as_json:
        typer.echo(json.dumps(page, ensure_ascii=False))
        return
    for a in page["alerts"]:
        who = f" → {a['assignee']}" if a["assignee"] else ""
        typer.echo(
            f"#{a['id']} {a['state']}{who} {a['rule']} {a['principal_id']} {a['occurred_at']} {a['summary']}"
        )


@alerts_app.command("show")
def alerts_show(alert_id: int, as_json: JsonFlag = False) -> None:
    """One alert with its history of actions."""
    from gateway.audit.alert_handling import alert_with_history

    async def go(engine: Any) -> dict[str, Any] | None:
        async with engine.connect() as conn:
            return await alert_with_history(conn, alert_id)

    doc = run_with_engine(go)
    if doc is None:
        typer.echo("error: no alert with that id", err=True)
        raise typer.Exit(2)
    if as_json:
        typer.echo(json.dumps(doc, ensure_ascii=False))
        return
    typer.echo(f"#{doc['id']} {doc['state']} {doc['rule']} {doc['principal_id']}: {doc['summary']}")
    for h in doc["history"]:
        extra = " ".join(str(x) for x in (h["assignee"], h["reason"], h["comment"]) if x)
        typer.echo(f"  {h['at']} {h['by']} {h['action']} {h['from_state']}→{h['to_state']} {extra}")


class _Unrecorded(Exception):
    """The action's audit event could not be written."""


def _cli_operator() -> str:
    """`cli:<login>`, as every administrative command names its operator (gateway.identity.audit)."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no login name (containers): still say it came from the CLI
        return "cli"


def _cli_sink(engine: Any) -> Any:
    """The gateway's own audit log, as the CLI's other writers use it."""
    from gateway.access_log import LoggingAccessLog
    from gateway.audit import ChainedAuditLog, VariableCipher
    from gateway.cli_support import settings
    from gateway.secrets import load_master_key

    s = settings()
    if s.audit_store == "log":
        return LoggingAccessLog()
    return ChainedAuditLog(engine, VariableCipher.from_master_key(load_master_key(s.master_key_file)))


def _alert_action(
    action: str, alert_id: int, as_name: str | None, as_json: bool, **fields: str | None
) -> None:
    """Apply one action and record it as an audit event (tier audit, the operator as principal,
    --as as subject, the body sealed), refused or not; exit 2 when refused, 3 when not recorded."""
    import time
    import uuid

    from gateway.access_log import AccessEvent
    from gateway.audit.alert_handling import HandlingError, act
    from policies.alert_handling import AlertAction

    operator = _cli_operator()
    subject = as_name or operator.partition(":")[2] or None
    by = f"{operator}/{subject}" if subject else operator
    step = AlertAction(
        action,
        comment=fields.get("comment") or "",
        assignee=fields.get("assignee"),
        reason=fields.get("reason"),
    )

    async def go(engine: Any) -> tuple[dict[str, Any] | None, HandlingError | None]:
        sink = _cli_sink(engine)
        started = time.perf_counter()
        doc, error = None, None
        try:
            doc = await act(engine, alert_id, by, step)
        except HandlingError as err:
            error = err
        op = "ack-alert" if action == "acknowledge" else f"{action}-alert"
        event = AccessEvent(
            request_id=f"cli-{uuid.uuid4().hex}",
            tier="audit",
            principal_kind="operator",
            principal_id=operator,
            consumer=None,
            client_address=None,
            operation_name=op,
            operation_type="mutation",
            query_digest=None,
            status=error.status if error else 200,
            error_codes=[error.code] if error else [],
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            reads=[{"dataset": "audit_alert", "rows": 0 if error else 1}],
            subject=subject,
            variables={"id": alert_id, **{k: v for k, v in fields.items() if v}},
        )
        try:
            await sink.record(event)
        except Exception as err:
            raise _Unrecorded(str(err)) from err
        finally:
            close = getattr(sink, "aclose", None)
            if close is not None:
                await close()
        return doc, error

    try:
        doc, error = run_with_engine(go)
    except _Unrecorded as err:
        typer.echo(f"error: the audit log is unavailable ({err}); the action may have been applied", err=True)
        raise typer.Exit(3) from None
    if error is not None:
        typer.echo(f"error: {error} ({error.code})", err=True)
        raise typer.Exit(2)
    assert doc is not None
    if as_json:
        typer.echo(json.dumps(doc, ensure_ascii=False))
    else:
        typer.echo(f"#{doc['id']} {doc['state']}" + (f" → {doc['assignee']}" if doc["assignee"] else ""))


@alerts_app.command("ack")
def alerts_ack(
    alert_id: int,
    comment: Annotated[str, typer.Option(help="Required.")],
    as_name: AsName = None,
    as_json: JsonFlag = False,
) -> None:
    """Acknowledge an open alert."""
    _alert_action("acknowledge", alert_id, as_name, as_json, comment=comment)


@alerts_app.command("assign")
def alerts_assign(
    alert_id: int,
    to: Annotated[str, typer.Option("--to", help="The officer's username.")],
    comment: str = "",
    as_name: AsName = None,
    as_json: JsonFlag = False,
) -> None:
    """Assign an alert to an officer (security_officer or admin)."""
    _alert_action("assign", alert_id, as_name, as_json, assignee=to, comment=comment)


@alerts_app.command("comment")
def alerts_comment(
    alert_id: int,
    comment: Annotated[str, typer.Option(help="Required.")],
    as_name: AsName = None,
    as_json: JsonFlag = False,
) -> None:
    """Add a comment (any state)."""
    _alert_action("comment", alert_id, as_name, as_json, comment=comment)


@alerts_app.command("close")
def alerts_close(
    alert_id: int,
    reason: Annotated[str, typer.Option(help="resolved, false_positive, authorised, duplicate, other")],
    comment: str = "",
    as_name: AsName = None,
    as_json: JsonFlag = False,
) -> None:
    """Close an alert with a reason (`other` needs a comment)."""
    _alert_action("close", alert_id, as_name, as_json, reason=reason, comment=comment)


@audit_app.command("bundle")
def bundle(
    output: Annotated[Path, typer.Option("--output", "-o", help="The bundle file to write.")],
    consumer: Annotated[
        str | None, typer.Option(help="The consumer view: a department/enterprise code.")
    ] = None,
    person: Annotated[
        str | None, typer.Option(help="The person view: a 身份证号 (not written to the file).")
    ] = None,
    from_: Annotated[str | None, typer.Option("--from", help="ISO date/time; no offset = UTC+08:00.")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Exclusive; a bare date: through that day.")] = None,
    principal: str | None = None,
    department: str | None = None,
    dataset: str | None = None,
    field: Annotated[str | None, typer.Option(help="idNumber, id_number or population.idNumber")] = None,
    decision: str | None = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Export an investigation — the consumer view, the person view, or a search — as one signed
    file (events + verification material, gateway/audit/bundle.py) that
    `shuqiao audit verify-archive FILE --pubkey gateway.pub.pem` verifies offline."""
    from gateway.audit import query
    from gateway.audit.bundle import BundleError, build_bundle, investigation_seqs
    from gateway.cli_support import settings

    if consumer and person:
        typer.echo("error: --consumer or --person, not both", err=True)
        raise typer.Exit(2)
    view = "consumer" if consumer else "person" if person else "search"
    params = {
        "view": view, "code": consumer, "id_number": person, "from": from_, "to": to, "principal": principal,
        "department": department, "dataset": dataset, "field": field, "decision": decision,
    }  # fmt: skip
    try:
        store = _store()
        store.current()
    except Exception as err:
        typer.echo(f"error: no gateway signing key to sign the bundle with: {err}", err=True)
        raise typer.Exit(1) from None

    async def go(engine: Any) -> tuple[bytes, int]:
        from gateway.secrets import load_master_key

        key = load_master_key(settings().master_key_file) if view == "person" else None
        seqs, described = await investigation_seqs(engine, {k: v for k, v in params.items() if v}, key)
        return await build_bundle(engine, store, seqs, described), len(set(seqs))

    data, count = run_with_engine(go, expected=(BundleError, query.BadFilter))
    output.write_bytes(data)
    kid = store.current()[0].kid
    if as_json:
        typer.echo(json.dumps({"output": str(output), "events": count, "kid": kid, "view": view}))
    else:
        typer.echo(f"bundle written: {output} ({count} events, {view} view, signed by key {kid})")
