"""`shuqiao watermark`: trace a suspected leak to the consumer it was delivered to, and rotate
the watermark key (docs/watermark.md).

`trace FILE` reads CSV, JSON (rows, or a GraphQL response), JSON Lines or XLSX; matches its
columns against every dataset with watermarked fields (policies.watermark_trace); scores every
department and enterprise under every watermark key; and lists the matching deliveries from
the audit log (gateway/watermark_service.py, shared with the officers' page). With -o, the
report is written to FILE and signed with the gateway's SM2 key (FILE.sig, verified
like an audit export: `shuqiao verify-response FILE.sig --body FILE`)."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from gateway.cli_support import run_with_engine, settings
from gateway.identity.audit import AuditUnavailable
from gateway.watermark_service import read_rows, read_rows_text, report_body, sign_report, trace_file
from keys.sm3 import sm3

watermark_app = typer.Typer(
    help="数据水印: trace a leak to its recipient; rotate the watermark key.", no_args_is_help=True
)


def _sign(output: Path) -> str:
    from gateway.crypto.signing import ResponseSigner, open_signing_store

    signer = ResponseSigner(open_signing_store(settings().var_dir, create=False))
    signature, kid = sign_report(signer, output.read_bytes(), f"cli-watermark-{uuid.uuid4().hex}")
    sig = output.with_name(output.name + ".sig")
    sig.write_bytes(signature)
    return f"signed: {sig} (key {kid})"


def _human(report: dict[str, Any]) -> str:
    lines = [
        f"read {report['rows_read']} rows; "
        f"{report['candidates_tested']} recipient×key×scheme candidates tested"
    ]
    for m in report["matched"]:
        cols = ", ".join(f"{f}←{c!r} ({m['matched_by'][f]})" for f, c in m["columns"].items())
        lines.append(f"  {m['dataset']}: key column {m['key_column']!r}; {cols or m['problem']}")
    for r in report["recipients"][:5]:
        lines.append(
            f"  {r['recipient']:<16} key {r['kid']} ({r.get('scheme', '?')}): "
            f"{r['matching_bits']}/{r['marked_cells']} bits, "
            f"false-match probability {r['false_match_probability']:.3g} "
            f"(×{report['candidates_tested']} candidates: {r['false_match_probability_adjusted']:.3g})"
        )
    ident = report["identified"]
    if ident is None:
        lines.append("no recipient identified (no adjusted false-match probability ≤ 1e-6)")
    else:
        n = len(ident["deliveries"])
        lines.append(f"identified: {ident['recipient']} ({n} marked deliveries in the audit log)")
        for d in ident["deliveries"][:10]:
            lines.append(
                f"  audit #{d['seq']} {d['occurred_at']} {d['dataset']} rows={d['rows']} {d['watermark_id']}"
            )
    return "\n".join(lines)


@watermark_app.command("trace")
def trace_cmd(
    file: Annotated[
        Path,
        typer.Argument(help="The suspected leak: CSV, JSON, JSON Lines or XLSX; - for stdin (CSV/JSON)."),
    ],
    dataset: Annotated[
        str | None, typer.Option(help="Only this dataset (default: every watermarked one).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the report here, signed (FILE.sig).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Name the consumer a leaked extract was delivered to, with its false-match probability
    and the audit events of those deliveries."""
    from gateway.secrets import load_master_key

    if str(file) != "-" and not file.exists():
        typer.echo(f"error: {file} does not exist", err=True)
        raise typer.Exit(2)
    try:  # "-": pasted rows
        rows = read_rows_text(sys.stdin.read()) if str(file) == "-" else read_rows(file)
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    if not rows:
        typer.echo("error: no rows could be read from the file", err=True)
        raise typer.Exit(2)
    master_key = load_master_key(settings().master_key_file)

    async def traced(engine: Any) -> dict[str, Any]:
        # like the officers' page (gateway/watermark_http.py): the trace is an audit event that
        # names who was identified and the report's digest, never the leak's rows; none → no report
        from gateway.identity.audit import cli_audit, cli_operator, record_admin_event

        found = await trace_file(engine, master_key, rows, dataset)
        who = found["identified"]
        await record_admin_event(
            cli_audit(settings(), engine),
            "watermark.trace",
            status=200,
            principal_kind="operator",
            principal_id=cli_operator(),
            target=dataset,
            detail={
                "rows": len(rows),
                "identified": who["recipient"] if who else None,
                "deliveries": len(who["deliveries"]) if who else 0,
                "report_sm3": sm3(report_body(found)).hex(),
            },
        )
        return found

    report = run_with_engine(traced, expected=(ValueError, AuditUnavailable))
    body = report_body(report)
    if output is not None:
        output.write_bytes(body)
        typer.echo(_sign(output), err=True)
    typer.echo(body.decode() if as_json else _human(report))
    raise typer.Exit(0 if report["identified"] else 1)


@watermark_app.command("rotate")
def rotate_cmd() -> None:
    """Make a new watermark key current; older keys stay for tracing older leaks."""
    from gateway.secrets import load_master_key
    from gateway.watermark_keys import rotate_watermark_key

    master_key = load_master_key(settings().master_key_file)
    kid = run_with_engine(lambda engine: rotate_watermark_key(engine, master_key))
    typer.echo(f"new watermark key {kid}")


@watermark_app.command("keys")
def keys_cmd() -> None:
    """The watermark key ids, newest first (never the keys)."""
    from gateway.secrets import load_master_key
    from gateway.watermark_keys import load_watermark_keys

    master_key = load_master_key(settings().master_key_file)
    ring = run_with_engine(lambda engine: load_watermark_keys(engine, master_key, create=False))
    current = ring.current
    for kid in ring.kids():
        typer.echo(f"{kid}{'  (current)' if current is not None and kid == current.kid else ''}")
