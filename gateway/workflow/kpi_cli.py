"""`shuqiao demand …`, `shuqiao quality …` and `shuqiao kpi`: the CLI twins of the admin API's
demand, quality-report and KPI operations. The operator acts as an administrator (any
department, named with --requester / --reporter); every change is an audit event
(gateway.workflow.recorded), and if that event cannot be written the change is taken back and
the command exits 3."""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Annotated, Any, TypeVar

import typer

from catalogue.service import CatalogueError
from gateway.cli_support import emit, run_with_engine, settings
from gateway.workflow.common import Actor, WorkflowError, operator_actor

T = TypeVar("T")
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document for scripts.")]
RoleOpt = Annotated[
    str, typer.Option(help="mine (filed by the department), addressed (to it as provider) or all")
]

demand_app = typer.Typer(
    help="Demands (需求清单): data asked of a provider, not yet catalogued.", no_args_is_help=True
)
quality_app = typer.Typer(
    help="Data-quality reports (问题数据), due in 3 working days.", no_args_is_help=True
)
kpi_app = typer.Typer(help="The plan's KPIs, live, and their daily snapshots.")


def _operator() -> Actor:
    from gateway.identity.audit import cli_operator

    return operator_actor(cli_operator())


def _run(make: Callable[[Any], Awaitable[T]], *, done: str = "nothing was changed") -> T:
    from gateway.identity.audit import AuditUnavailable

    try:
        return run_with_engine(make, expected=(WorkflowError, CatalogueError))
    except AuditUnavailable as err:
        typer.echo(f"error: the audit log is unavailable ({err}); {done}", err=True)
        raise typer.Exit(3) from None


def _audit(engine: Any) -> Any:
    from gateway.identity.audit import AuditUnavailable, cli_audit

    try:
        return cli_audit(settings(), engine)
    except Exception as err:  # e.g. the master key that seals the log cannot be read
        raise AuditUnavailable(f"{type(err).__name__}: {err}") from err


def _day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        typer.echo(f"error: {option} {value!r} is not a date (YYYY-MM-DD)", err=True)
        raise typer.Exit(2) from None


# ---------------------------------------------------------------- demands


def _demand_line(d: dict[str, Any]) -> str:
    extra = {
        "will_provide": f"by {d['promised_date']}",
        "cannot_provide": f"cannot: {d['reason']}",
        "fulfilled": f"→ {d['dataset']}",
    }.get(d["state"], "")
    return (
        f"{d['id']:>5} {d['requester']:>8} → {d['provider']:8s} {d['state']:15s} {d['description']}  {extra}"
    )


@demand_app.command("create")
def demand_create(
    provider: Annotated[str, typer.Option(help="The department asked for the data.")],
    description: Annotated[str, typer.Option(help="The data wanted.")],
    purpose: Annotated[str, typer.Option(help="What it is for (用途).")],
    requester: Annotated[str, typer.Option(help="The department asking.")],
    fields: Annotated[str, typer.Option(help="The 信息项 wanted, free text.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """File a demand for data the catalogue does not have yet."""
    from gateway.workflow import recorded
    from gateway.workflow.demands import describe

    async def make(e: Any) -> Any:
        return await recorded.create_demand(
            e,
            _audit(e),
            _operator(),
            requester=requester,
            provider=provider,
            description=description,
            fields_wanted=fields,
            purpose=purpose,
        )

    row = _run(make, done="the demand was withdrawn again")
    emit(as_json, describe(row), f"demand {row.id} filed: {row.requester} asks {row.provider}")


@demand_app.command("answer")
def demand_answer(
    demand_id: Annotated[int, typer.Argument(metavar="ID")],
    by: Annotated[str | None, typer.Option("--by", help="Will provide by this date (YYYY-MM-DD).")] = None,
    cannot: Annotated[str | None, typer.Option("--cannot", help="Cannot provide: the reason.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The provider's answer: --by DATE (will provide) or --cannot REASON."""
    from gateway.workflow import recorded
    from gateway.workflow.demands import describe

    if (by is None) == (cannot is None):
        typer.echo("error: answer with exactly one of --by DATE or --cannot REASON", err=True)
        raise typer.Exit(2)
    promised = _day(by, "--by")

    async def make(e: Any) -> Any:
        return await recorded.answer_demand(
            e,
            _audit(e),
            _operator(),
            demand_id,
            answer="will_provide" if by else "cannot_provide",
            promised_date=promised,
            reason=cannot,
        )

    row = _run(make, done="the answer was taken back")
    emit(as_json, describe(row), _demand_line(describe(row)))


@demand_app.command("fulfil")
def demand_fulfil(
    demand_id: Annotated[int, typer.Argument(metavar="ID")],
    dataset: Annotated[str, typer.Option(help="The provider's published dataset that meets it.")],
    as_json: JsonOpt = False,
) -> None:
    """The data is catalogued: link the demand to the dataset (the requester can now apply)."""
    from gateway.workflow import recorded
    from gateway.workflow.demands import describe

    async def make(e: Any) -> Any:
        return await recorded.fulfil_demand(e, _audit(e), _operator(), demand_id, dataset=dataset)

    row = _run(make, done="the demand was left as it was")
    emit(as_json, describe(row), _demand_line(describe(row)))


@demand_app.command("list")
def demand_list(
    department: Annotated[str | None, typer.Option(help="Only this department's.")] = None,
    role: RoleOpt = "all",
    state: Annotated[str | None, typer.Option(help="open, will_provide, cannot_provide or fulfilled")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Demands, filed by or addressed to a department (every department's by default)."""
    from gateway.workflow.demands import describe, list_demands

    rows = [
        describe(r)
        for r in _run(lambda e: list_demands(e, _operator(), role=role, state=state, department=department))
    ]
    emit(as_json, rows, "\n".join(_demand_line(d) for d in rows) or "no demands")


# ---------------------------------------------------------------- quality reports


def _report_line(r: dict[str, Any]) -> str:
    field = f".{r['field']}" if r["field"] else ""
    return (
        f"{r['id']:>5} {r['reporter']:>8} → {r['provider']:8s} {r['dataset']}{field} "
        f"[{r['key_field']}={r['record_ref'][:24]}] {r['timeliness']:16s} due {r['deadline'][:16]}"
        f"{' (provisional)' if r['deadline_provisional'] else ''}  {r['description']}"
    )


@quality_app.command("report")
def quality_report(
    dataset: Annotated[str, typer.Option()],
    record: Annotated[
        str, typer.Option(help="The record's key value (a protected one is kept as a blind index).")
    ],
    description: Annotated[str, typer.Option(help="What is wrong.")],
    reporter: Annotated[str, typer.Option(help="The consumer department reporting it.")],
    field: Annotated[str | None, typer.Option(help="The field that is wrong (snake_case).")] = None,
    key_field: Annotated[
        str | None, typer.Option(help="The field --record is a value of (default: the entity key).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Flag a record or field as wrong; the provider has 3 working days (Chinese calendar)."""
    from catalogue.protection import load_keyring
    from catalogue.service import load_catalogue
    from gateway.secrets import load_master_key
    from gateway.workflow import recorded
    from gateway.workflow.quality import describe

    master_key = load_master_key(settings().master_key_file)

    async def make(e: Any) -> Any:
        keyring = await load_keyring(e, master_key, (await load_catalogue(e)).published())
        return await recorded.report_quality(
            e,
            _audit(e),
            _operator(),
            keyring=keyring,
            reporter=reporter,
            dataset=dataset,
            record=record,
            description=description,
            field=field,
            key_field=key_field,
        )

    row = _run(make, done="the report was withdrawn again")
    doc = describe(row)
    emit(as_json, doc, f"report {row.id} filed; {row.provider} has until {doc['deadline']} (3 working days)")


@quality_app.command("resolve")
def quality_resolve(
    report_id: Annotated[int, typer.Argument(metavar="ID")],
    fixed: Annotated[str | None, typer.Option("--fixed", help="Fixed: what was corrected.")] = None,
    disputed: Annotated[
        str | None, typer.Option("--disputed", help="Disputed: why the data is right.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The provider's answer: --fixed NOTE or --disputed REASON."""
    from gateway.workflow import recorded
    from gateway.workflow.quality import describe

    if (fixed is None) == (disputed is None):
        typer.echo("error: resolve with exactly one of --fixed NOTE or --disputed REASON", err=True)
        raise typer.Exit(2)

    async def make(e: Any) -> Any:
        return await recorded.resolve_quality(
            e,
            _audit(e),
            _operator(),
            report_id,
            resolution="fixed" if fixed is not None else "disputed",
            reason=fixed if fixed is not None else disputed or "",
        )

    row = _run(make, done="the report was reopened")
    emit(as_json, describe(row), _report_line(describe(row)))


@quality_app.command("list")
def quality_list(
    department: Annotated[str | None, typer.Option(help="Only this department's.")] = None,
    role: RoleOpt = "all",
    state: Annotated[str | None, typer.Option(help="open, overdue, fixed or disputed")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Quality reports, filed by or addressed to a department, with their deadlines."""
    from gateway.workflow.quality import describe, list_reports

    rows = [
        describe(r)
        for r in _run(lambda e: list_reports(e, _operator(), role=role, state=state, department=department))
    ]
    emit(as_json, rows, "\n".join(_report_line(r) for r in rows) or "no quality reports")


# ---------------------------------------------------------------- KPIs


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _pad(text: str, width: int) -> str:
    """Left-justify by display width: a CJK character takes two columns in a terminal."""
    import unicodedata

    used = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
    return text + " " * max(0, width - used)


def kpi_text(doc: dict[str, Any]) -> str:
    lines = [f"KPIs as of {doc['as_of'][:19]} ({'overall' if doc['scope'] == '*' else doc['scope']})"]
    for k in doc["kpis"]:
        verdict = {True: "met", False: "below target", None: "no data"}[k["met"]]
        lines.append(
            f"  {_pad(k['name'], 18)} {_pct(k['value']):>7s}  {k['numerator']}/{k['denominator']}  "
            f"target {_pct(k['target'])}  {verdict}"
        )
        for code, fig in k.get("departments", {}).items():
            lines.append(
                f"      {code:14s} {_pct(fig['value']):>7s}  {fig['numerator']}/{fig['denominator']}"
            )
    return "\n".join(lines)


def kpi_csv(rows: list[dict[str, Any]]) -> str:
    from gateway.workflow.kpi import CSV_COLUMNS

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


@kpi_app.callback(invoke_without_command=True)
def kpi_show(
    ctx: typer.Context,
    department: Annotated[str | None, typer.Option(help="One department's figures and trend.")] = None,
    since: Annotated[str | None, typer.Option(help="Trend from (YYYY-MM-DD; default 90 days back).")] = None,
    until: Annotated[str | None, typer.Option(help="Trend to (YYYY-MM-DD; default today).")] = None,
    as_json: JsonOpt = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV: live figures, then the snapshots.")] = False,
) -> None:
    """The KPIs now (overall and per department), with their targets and trend."""
    if ctx.invoked_subcommand is not None:
        return
    from gateway.workflow.kpi import kpi_report

    first, last = _day(since, "--since"), _day(until, "--until")
    report = _run(lambda e: kpi_report(e, since=first, until=last, department=department))
    if as_csv:
        typer.echo(kpi_csv(report.rows(per_department=True, department=department)), nl=False)
        return
    doc = report.document(per_department=True, department=department)
    emit(as_json, doc, kpi_text(doc))


@kpi_app.command("snapshot")
def kpi_snapshot(as_json: JsonOpt = False) -> None:
    """Record today's figures (China Standard Time day; replaces today's): the trend's points."""
    import json

    from gateway.identity.audit import record_admin_event
    from gateway.workflow.kpi import take_snapshot

    async def make(e: Any) -> Any:
        row = await take_snapshot(e)
        actor = _operator()
        await record_admin_event(
            _audit(e),
            "kpi.snapshot",
            status=200,
            principal_kind=actor.kind,
            principal_id=actor.id,
            target=f"kpi_snapshot:{row.day.isoformat()}",
        )
        return row

    row = _run(make, done="the snapshot IS recorded, but the event is missing from the audit log")
    doc = {
        "day": row.day.isoformat(),
        "taken_at": row.taken_at.isoformat(),
        "figures": json.loads(row.figures),
    }
    emit(as_json, doc, f"kpi snapshot for {doc['day']} recorded")
