"""`shuqiao enterprise keys|grants|usage|apply|applications --as <enterprise>`: what an enterprise's
user does on /enterprise, from an operator's shell, acting for that enterprise (the same checks
and audit events as the page and `POST /admin/graphql`: gateway.enterprise.service and the
workflow's applications, tier "open"). Every command takes --json and then prints one JSON
document; a key's secret is printed once, by the command that makes it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from gateway.cli_support import emit, run_with_engine, settings

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document for scripts.")]
AsOpt = Annotated[str, typer.Option("--as", help="The enterprise to act for (its code).")]
T = TypeVar("T")

keys_app = typer.Typer(help="An enterprise's own API keys (acting for it).", no_args_is_help=True)


def _run(make: Callable[[Any], Awaitable[T]]) -> T:
    from gateway.enterprise.service import EnterpriseError
    from gateway.grants.service import GrantError
    from gateway.identity.apikeys import ApiKeyError
    from gateway.identity.audit import AuditUnavailable
    from gateway.workflow.applications import WorkflowError

    try:
        return run_with_engine(make, expected=(EnterpriseError, ApiKeyError, WorkflowError, GrantError))
    except AuditUnavailable as err:
        typer.echo(f"error: the audit log is unavailable ({err}); nothing was issued", err=True)
        raise typer.Exit(3) from None


async def _acting(engine: Any, enterprise: str) -> tuple[Any, Any]:
    """The operator as the enterprise's user, and the audit sink."""
    from gateway.enterprise.service import enterprise_row
    from gateway.identity.audit import cli_audit, cli_operator
    from policies.workflow import Actor

    await enterprise_row(engine, enterprise)
    actor = Actor(f"{cli_operator()} for {enterprise}", kind="operator", enterprise=enterprise, apply=True)
    return actor, cli_audit(settings(), engine)


def _hasher() -> Any:
    from gateway.secrets import SecretHasher, load_master_key

    return SecretHasher(load_master_key(settings().master_key_file))


def _key_line(k: dict[str, Any]) -> str:
    scope = " ".join(k["datasets"]) or "all granted"
    expires = k["expires_at"] or "never"
    return f"{k['prefix']:10s} {k['state']:8s} {k['name'] or '-':16s} {scope:24s} expires {expires}"


@keys_app.command("list")
def keys_list(org: AsOpt, as_json: JsonOpt = False) -> None:
    """The enterprise's keys (never their secrets)."""
    from gateway.enterprise import service
    from gateway.identity.apikeys import describe

    async def make(engine: Any) -> list[dict[str, Any]]:
        await _acting(engine, org)
        return [describe(k) for k in await service.list_keys(engine, org)]

    rows = _run(make)
    emit(as_json, rows, "\n".join(_key_line(r) for r in rows) or "no keys")


@keys_app.command("create")
def keys_create(
    org: AsOpt,
    name: str = "",
    expires_days: Annotated[int | None, typer.Option(help="1 to 730; none: no expiry.")] = None,
    dataset: Annotated[
        list[str] | None, typer.Option(help="Only for this granted dataset; repeat. None: every granted one.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """A new key, printed once (the gateway's default limits)."""
    from gateway.enterprise import service
    from gateway.identity.apikeys import describe

    async def make(engine: Any) -> dict[str, Any]:
        actor, audit = await _acting(engine, org)
        key, row = await service.create_key(
            engine, _hasher(), audit, actor, name=name, expires_days=expires_days, datasets=dataset
        )
        return {"api_key": key, **describe(row)}

    doc = _run(make)
    emit(as_json, doc, f"X-API-Key: {doc['api_key']}\n(prefix {doc['prefix']}; shown only now)")


@keys_app.command("rotate")
def keys_rotate(
    prefix: str,
    org: AsOpt,
    overlap_hours: Annotated[
        float, typer.Option(help="How long the old key keeps working (0 to 168).")
    ] = 24.0,
    as_json: JsonOpt = False,
) -> None:
    """A new key (printed once) with the old one's scope and limits."""
    from gateway.enterprise import service
    from gateway.identity.apikeys import describe

    async def make(engine: Any) -> dict[str, Any]:
        actor, audit = await _acting(engine, org)
        key, new, old = await service.rotate_key(
            engine, _hasher(), audit, actor, prefix, overlap_hours=overlap_hours
        )
        return {"api_key": key, **describe(new), "previous": describe(old)}

    doc = _run(make)
    emit(
        as_json,
        doc,
        f"X-API-Key: {doc['api_key']}\n(prefix {doc['prefix']}; shown only now; "
        f"{prefix} expires {doc['previous']['expires_at']})",
    )


@keys_app.command("revoke")
def keys_revoke(prefix: str, org: AsOpt, as_json: JsonOpt = False) -> None:
    """Revoke a key: refused everywhere within two seconds."""
    from gateway.enterprise import service
    from gateway.identity.apikeys import describe

    async def make(engine: Any) -> dict[str, Any]:
        actor, audit = await _acting(engine, org)
        return describe(await service.revoke_key(engine, audit, actor, prefix))

    doc = _run(make)
    emit(as_json, doc, f"{prefix} revoked")


def grants_cmd(
    org: AsOpt,
    state: Annotated[str, typer.Option(help="active, expiring, expired, revoked or all")] = "all",
    as_json: JsonOpt = False,
) -> None:
    """The enterprise's grants on the open tier (which 有条件开放 datasets, until when)."""
    from gateway.enterprise import service
    from gateway.grants.service import describe

    async def make(engine: Any) -> list[dict[str, Any]]:
        await _acting(engine, org)
        return [describe(g) for g in await service.list_grants(engine, org, state)]

    rows = _run(make)
    emit(
        as_json,
        rows,
        "\n".join(
            f"{g['id']:>5} {g['state']:9s} {g['dataset']:24s} until {g['expires_at'] or '-'}" for g in rows
        )
        or "no grants",
    )


def usage_cmd(
    org: AsOpt,
    days: Annotated[int, typer.Option(help="1 to 90")] = 14,
    as_json: JsonOpt = False,
) -> None:
    """Calls per key per day (China Standard Time) from the audit log, with each key's limits."""
    from gateway.enterprise import service

    s = settings()
    defaults = service.KeyDefaults(s.api_key_rate_per_minute, s.api_key_daily_quota)

    async def make(engine: Any) -> dict[str, Any]:
        await _acting(engine, org)
        return await service.usage(engine, org, days=days, defaults=defaults)

    doc = _run(make)
    lines = [f"{doc['enterprise']}: {doc['from']} – {doc['to']} (Asia/Shanghai)"]
    for k in doc["keys"]:
        lines.append(
            f"  {k['prefix']:10s} {k['state']:8s} {k['rate_per_minute']}/min {k['daily_quota']}/day  "
            f"today {k['calls_today']} (left {k['remaining_today']})"
        )
        lines += [
            f"    {d['date']} {d['calls']:>7} calls {d['refused']:>5} refused"
            for d in k["days"]
            if d["calls"]
        ]
    emit(as_json, doc, "\n".join(lines))


def apply_cmd(
    org: AsOpt,
    dataset: Annotated[str, typer.Option(help="A 有条件开放 dataset's code")],
    purpose: Annotated[str, typer.Option(help="用途")],
    legal_basis: Annotated[str, typer.Option(help="The agreement or authorisation it rests on.")],
    until: Annotated[str, typer.Option(help="Period end: YYYY-MM-DD (through that day, UTC+8) or ISO time.")],
    field: Annotated[
        list[str] | None,
        typer.Option(help="A field (stored or GraphQL name); repeat. None: every open field."),
    ] = None,
    start: Annotated[str | None, typer.Option("--from", help="Period start (default: on approval).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Apply (submitted at once) for a 有条件开放 dataset; the provider's steward decides. The same
    as `shuqiao application create --tier open --as <enterprise> --submit`."""
    from gateway.grants import service as grants
    from gateway.workflow import applications as apps
    from policies.model import Tier

    async def make(engine: Any) -> dict[str, Any]:
        actor, audit = await _acting(engine, org)
        fields = field
        if not fields:
            try:
                fields = list((await grants._target(engine, Tier.OPEN, dataset)).fields)
            except grants.GrantError as err:
                raise apps.WorkflowError(str(err)) from None
        row = await apps.create(
            engine,
            audit,
            actor,
            tier=Tier.OPEN,
            dataset=dataset,
            fields=fields,
            purpose=purpose,
            legal_basis=legal_basis,
            period_end=apps.parse_time(until, "--until"),
            period_start=apps.parse_start(start) if start else None,
            submit_now=True,
        )
        row, events = await apps.get(engine, actor, row.id or 0)
        return apps.describe(row, events)

    doc = _run(make)
    emit(
        as_json, doc, f"application {doc['id']} {doc['state']}: {doc['dataset']} (provider {doc['provider']})"
    )


def applications_cmd(org: AsOpt, as_json: JsonOpt = False) -> None:
    """The enterprise's applications, newest first."""
    from gateway.workflow import applications as apps

    async def make(engine: Any) -> list[dict[str, Any]]:
        actor, audit = await _acting(engine, org)
        rows = await apps.list_applications(engine, actor, view="mine")
        await audit.record(
            "application.list",
            status=200,
            principal_kind="operator",
            principal_id=actor.principal,
            consumer=org,
            detail={"filters": {"view": "mine"}, "count": len(rows)},
        )
        return [apps.describe(r) for r in rows]

    docs = _run(make)
    emit(
        as_json,
        docs,
        "\n".join(
            f"{d['id']:>5} {d['state']:9s} {d['dataset']:24s} {d['decision_reason'] or ''}" for d in docs
        )
        or "no applications",
    )


def add_commands(enterprise_app: typer.Typer) -> None:
    """Under `shuqiao enterprise` (beside the administrator's `enterprise create`)."""
    enterprise_app.add_typer(keys_app, name="keys")
    enterprise_app.command("grants")(grants_cmd)
    enterprise_app.command("usage")(usage_cmd)
    enterprise_app.command("apply")(apply_cmd)
    enterprise_app.command("applications")(applications_cmd)
