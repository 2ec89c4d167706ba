"""`shuqiao application …`: the workflow from an administrator's shell.

The shell acts for an organisation, named with `--as` (a department, or an enterprise on the
open tier): as that organisation's applicant and as its steward. The transition rules still
apply (acting for hrss you can apply for police's data but not approve it; acting for police
you can approve it). Without `--as` the shell acts as an administrator, who may take every
step. Every step is an audit event (`application.<step>`) naming the operator (`cli:<login>`)
and the organisation acted for; listing and showing are too (`application.list|show`)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from gateway.cli_support import emit, run_with_engine, settings

application_app = typer.Typer(help="Applications (申请) for data, and their approval.", no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document for scripts.")]
AsOpt = Annotated[
    str | None,
    typer.Option(
        "--as",
        help="Act for this department (or enterprise): its applicant and steward. Default: administrator.",
    ),
]
T = TypeVar("T")


def _run(make: Callable[[Any], Awaitable[T]]) -> T:
    from catalogue.service import CatalogueError
    from gateway.grants.service import GrantError
    from gateway.identity.audit import AuditUnavailable
    from gateway.workflow.applications import WorkflowError

    try:
        return run_with_engine(make, expected=(WorkflowError, GrantError, CatalogueError))
    except AuditUnavailable as err:
        typer.echo(f"error: the audit log is unavailable ({err}); the step was taken back", err=True)
        raise typer.Exit(3) from None


async def _actor(engine: Any, org: str | None) -> Any:
    from sqlmodel.ext.asyncio.session import AsyncSession

    from catalogue.models import Department
    from gateway.identity.audit import cli_operator
    from gateway.identity.models import Enterprise
    from gateway.workflow.applications import Actor, WorkflowError

    operator = cli_operator()
    if org is None:
        return Actor(principal=operator, kind="operator", admin=True)
    async with AsyncSession(engine) as session:
        if await session.get(Department, org) is not None:
            return Actor(f"{operator} for {org}", kind="operator", department=org, apply=True, approve=True)
        if await session.get(Enterprise, org) is not None:
            return Actor(f"{operator} for {org}", kind="operator", enterprise=org, apply=True)
    raise WorkflowError(f"--as {org!r}: no such department or enterprise")


def _audit(engine: Any) -> Any:
    from gateway.identity.audit import AuditUnavailable, cli_audit

    try:
        return cli_audit(settings(), engine)
    except Exception as err:  # e.g. the master key that seals the log cannot be read
        raise AuditUnavailable(f"{type(err).__name__}: {err}") from err


def _line(d: dict[str, Any]) -> str:
    fields = " ".join(f"{k}({v})" for k, v in d["fields"].items())
    return f"{d['id']:>5} {d['state']:9s} {d['consumer']:10s} → {d['dataset']:20s} {fields}"


def _show(d: dict[str, Any]) -> str:
    out = [
        _line(d),
        f"      purpose: {d['purpose']}   legal basis: {d['legal_basis']}",
        f"      period: {(d['period_start'] or 'approval')[:10]} – {(d['period_end'] or '')[:10]}"
        + (f"   row scope: {json.dumps(d['row_scope'], ensure_ascii=False)}" if d["row_scope"] else ""),
    ]
    if d["decision_reason"]:
        out.append(f"      {d['state']} by {d['decided_by'] or '?'}: {d['decision_reason']}")
    if d["grant_id"]:
        approved = " ".join(f"{k}({v})" for k, v in (d["approved_fields"] or {}).items())
        out.append(f"      grant {d['grant_id']} until {(d['approved_end'] or '')[:10]}: {approved}")
    for h in d.get("history", []):
        why = f": {h['reason']}" if h["reason"] else ""
        out.append(f"      {h['at'][:19]} {h['actor']} {h['step']} → {h['to_state']}{why}")
    return "\n".join(out)


def _step(org: str | None, as_json: bool, act: Callable[[Any, Any, Any], Awaitable[Any]]) -> None:
    from gateway.workflow import applications as apps

    async def make(engine: Any) -> dict[str, Any]:
        actor = await _actor(engine, org)
        row = await act(engine, _audit(engine), actor)
        row, events = await apps.get(engine, actor, row.id)
        return apps.describe(row, events)

    doc = _run(make)
    emit(as_json, doc, _show(doc))


@application_app.command("create")
def create(
    dataset: Annotated[str, typer.Option()],
    field: Annotated[list[str], typer.Option(help="name or name:clear|masked|encrypted; repeat.")],
    purpose: Annotated[str, typer.Option(help="用途")],
    legal_basis: Annotated[str, typer.Option(help="The regulation or agreement it rests on.")],
    until: Annotated[str, typer.Option(help="Period end: YYYY-MM-DD (through that day, UTC+8) or ISO time.")],
    start: Annotated[str | None, typer.Option("--from", help="Period start (default: on approval).")] = None,
    scope: Annotated[
        str | None, typer.Option(help='Row scope, JSON: {"district": {"in": ["雁塔区"]}}')
    ] = None,
    tier: Annotated[str, typer.Option(help="share or open")] = "share",
    consumer: Annotated[str | None, typer.Option(help="Administrators: the applicant organisation.")] = None,
    submit: Annotated[bool, typer.Option("--submit", help="Submit at once (default: a draft).")] = False,
    org: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Apply for a dataset's fields."""
    from gateway.workflow import applications as apps
    from policies.model import Tier

    try:
        row_scope = json.loads(scope) if scope else None
        tier_value = Tier(tier)
    except (json.JSONDecodeError, ValueError) as err:
        typer.echo(f"error: --scope is JSON and --tier share or open ({err})", err=True)
        raise typer.Exit(2) from None

    async def act(engine: Any, audit: Any, actor: Any) -> Any:
        return await apps.create(
            engine,
            audit,
            actor,
            tier=tier_value,
            consumer=consumer,
            dataset=dataset,
            fields=field,
            purpose=purpose,
            legal_basis=legal_basis,
            period_end=apps.parse_time(until, "--until"),
            period_start=apps.parse_start(start) if start else None,
            row_scope=row_scope,
            submit_now=submit,
        )

    _step(org, as_json, act)


@application_app.command("submit")
def submit(
    app_id: Annotated[int, typer.Argument(metavar="ID")],
    note: Annotated[str | None, typer.Option(help="Your answer, when resubmitting a returned one.")] = None,
    org: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Submit a draft (or resubmit a returned application) to the provider's stewards."""
    from gateway.workflow import applications as apps

    _step(org, as_json, lambda e, a, actor: apps.submit(e, a, actor, app_id, note=note))


@application_app.command("approve")
def approve(
    app_id: Annotated[int, typer.Argument(metavar="ID")],
    field: Annotated[
        list[str] | None, typer.Option(help="Narrow: only these (name or name:treatment); repeat.")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Narrow: an earlier end.")] = None,
    reason: Annotated[str | None, typer.Option()] = None,
    org: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve as asked, or narrowed (never wider). Creates the grant."""
    from gateway.workflow import applications as apps

    _step(
        org,
        as_json,
        lambda e, a, actor: apps.approve(
            e,
            a,
            actor,
            app_id,
            fields=field or None,
            period_end=apps.parse_time(until, "--until") if until else None,
            reason=reason,
        ),
    )


@application_app.command("reject")
def reject(
    app_id: Annotated[int, typer.Argument(metavar="ID")],
    reason: Annotated[str, typer.Option(help="Shown to the applicant.")],
    org: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Reject, with a reason."""
    from gateway.workflow import applications as apps

    _step(org, as_json, lambda e, a, actor: apps.reject(e, a, actor, app_id, reason=reason))


@application_app.command("return")
def return_(
    app_id: Annotated[int, typer.Argument(metavar="ID")],
    reason: Annotated[str, typer.Option(help="What the applicant should add.")],
    org: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Return to the applicant for more information."""
    from gateway.workflow import applications as apps

    _step(org, as_json, lambda e, a, actor: apps.return_(e, a, actor, app_id, reason=reason))


@application_app.command("withdraw")
def withdraw(
    app_id: Annotated[int, typer.Argument(metavar="ID")],
    reason: Annotated[str | None, typer.Option()] = None,
    org: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Withdraw an application (draft, submitted or returned)."""
    from gateway.workflow import applications as apps

    _step(org, as_json, lambda e, a, actor: apps.withdraw(e, a, actor, app_id, reason=reason))


async def _read_event(engine: Any, actor: Any, operation: str, detail: dict[str, Any]) -> None:
    await _audit(engine).record(
        operation,
        status=200,
        principal_kind="operator",
        principal_id=actor.principal,
        consumer=actor.organisation,
        detail=detail,
    )


@application_app.command("list")
def list_(
    view: Annotated[str, typer.Option(help="mine, pending (waiting for your decision) or all")] = "all",
    state: Annotated[str | None, typer.Option()] = None,
    dataset: Annotated[str | None, typer.Option()] = None,
    org: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Applications you may see, newest first."""
    from gateway.workflow import applications as apps

    async def make(engine: Any) -> list[dict[str, Any]]:
        actor = await _actor(engine, org)
        rows = await apps.list_applications(engine, actor, view=view, state=state, dataset=dataset)
        filters = {"view": view, "state": state, "dataset": dataset}
        await _read_event(engine, actor, "application.list", {"filters": filters, "count": len(rows)})
        return [apps.describe(r) for r in rows]

    docs = _run(make)
    emit(as_json, docs, "\n".join(_line(d) for d in docs) or "no applications")


@application_app.command("show")
def show(
    app_id: Annotated[int, typer.Argument(metavar="ID")],
    org: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One application with its history."""
    from gateway.workflow import applications as apps

    async def make(engine: Any) -> dict[str, Any]:
        actor = await _actor(engine, org)
        row, events = await apps.get(engine, actor, app_id)
        await _read_event(engine, actor, "application.show", {"application_id": app_id})
        return apps.describe(row, events)

    doc = _run(make)
    emit(as_json, doc, _show(doc))
