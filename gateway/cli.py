"""`shuqiao`: set up, run and administer the gateway. Every command that a script may
need takes --json and then prints exactly one JSON document on stdout."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import typer

from catalogue.service import CatalogueError
from gateway.audit.cli import audit_app
from gateway.cli_support import emit, run_with_engine
from gateway.crypto.cli import decrypt_field_cmd, keys_app, sign_request_cmd, verify_response_cmd
from gateway.enterprise.cli import add_commands as add_enterprise_commands
from gateway.identity.cli import IDENTITY_APPS, enterprise_app
from gateway.loading.cli import data_app
from gateway.portal.cli import portal_app
from gateway.settings import Settings
from gateway.watermark_cli import watermark_app
from gateway.workbench.cli import workbench_app
from gateway.workflow.cli import application_app
from gateway.workflow.kpi_cli import demand_app, kpi_app, quality_app

app = typer.Typer(help="Shuqiao (数桥) government data gateway.", no_args_is_help=True)
demo_app = typer.Typer(help="The bundled demo data and principals.", no_args_is_help=True)
grant_app = typer.Typer(help="Grants (approved applications).", no_args_is_help=True)
catalog_app = typer.Typer(help="The data catalogue (政务信息资源目录).", no_args_is_help=True)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
federation_app = typer.Typer(help="Subgraphs of several nodes under one router.", no_args_is_help=True)
for sub, name in [
    (federation_app, "federation"),
    (demo_app, "demo"),
    *IDENTITY_APPS,  # client, enterprise, apikey, user, issuer, role (gateway.identity.cli)
    (grant_app, "grant"),
    (demand_app, "demand"),  # demands, quality reports, KPIs: gateway.workflow.kpi_cli
    (quality_app, "quality"),
    (kpi_app, "kpi"),
    (catalog_app, "catalog"),
    (db_app, "db"),
]:
    app.add_typer(sub, name=name)
# an enterprise's own keys, grants, usage and applications, acting for it (gateway/enterprise/cli.py)
add_enterprise_commands(enterprise_app)
app.add_typer(audit_app, name="audit")
app.add_typer(application_app, name="application")  # 申请: apply, approve (gateway/workflow/cli.py)
app.add_typer(keys_app, name="keys")
app.add_typer(data_app, name="data")
app.add_typer(portal_app, name="portal")  # public usage statistics (gateway/portal/cli.py)
app.add_typer(watermark_app, name="watermark")  # 数据水印 (gateway/watermark_cli.py)
app.add_typer(workbench_app, name="workbench")  # 查询工作台 (gateway/workbench/cli.py)
app.command("verify-response")(verify_response_cmd)
app.command("decrypt-field")(decrypt_field_cmd)
app.command("sign-request")(sign_request_cmd)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document for scripts.")]
T = TypeVar("T")


def _settings() -> Settings:
    return Settings.from_env()


def _run(make: Callable[[Any], Awaitable[T]]) -> T:
    from gateway.identity.clients import IdentityError

    return run_with_engine(make, expected=(CatalogueError, IdentityError))


def _emit(as_json: bool, data: Any, human: str) -> None:
    emit(as_json, data, human)


def _hasher():  # type: ignore[no-untyped-def]
    from gateway.secrets import SecretHasher, load_master_key

    return SecretHasher(load_master_key(_settings().master_key_file))


# ---------------------------------------------------------------- setup


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply database migrations (safe to run repeatedly)."""
    from gateway.db import upgrade

    upgrade(_settings().database_url)
    typer.echo("database is at the latest migration")


@app.command()
def init() -> None:
    """Create the master key and token-signing key if missing, and migrate the database."""
    from gateway.crypto.signing import open_signing_store
    from gateway.db import upgrade
    from gateway.identity.tokens import load_signing_key
    from gateway.secrets import load_master_key

    s = _settings()
    s.var_dir.mkdir(parents=True, exist_ok=True)
    load_master_key(s.master_key_file, create=True)
    load_signing_key(s.var_dir / "keys" / "token-es256.pem", create=True)
    open_signing_store(s.var_dir)  # SM2 response-signing key, <var_dir>/keys/sm2/
    upgrade(s.database_url)
    typer.echo(f"initialised {s.var_dir}/ and the database")


class Size(StrEnum):
    small = "small"
    large = "large"


@demo_app.command("load")
def demo_load(
    size: Annotated[Size, typer.Option(help="small (thousands of rows) or large (≥1M).")] = Size.small,
    seed: int | None = None,
    as_json: JsonOpt = False,
) -> None:
    """Load the demo catalogue and its synthetic data (idempotent)."""
    from gateway.demo.load import load_demo
    from gateway.secrets import load_master_key

    kwargs: dict[str, Any] = {
        "size": size.value,
        "progress": not as_json,
        "master_key": load_master_key(_settings().master_key_file),
    }
    if seed is not None:
        kwargs["seed"] = seed
    counts = _run(lambda engine: load_demo(engine, **kwargs))
    _emit(as_json, counts, "\n".join(f"{k:28s} {v:>10,d} rows" for k, v in counts.items()))


@demo_app.command("init")
def demo_init(size: Annotated[Size, typer.Option()] = Size.small) -> None:
    """Everything `make run` needs: keys, migrations, demo data, demo principals."""
    from gateway.crypto.demo import setup_demo_keys
    from gateway.demo.load import load_demo
    from gateway.demo.principals import setup_principals
    from gateway.secrets import load_master_key

    init()
    s = _settings()
    master_key = load_master_key(s.master_key_file)
    _run(lambda engine: load_demo(engine, size=size.value, progress=True, master_key=master_key))
    creds = _run(
        lambda engine: setup_principals(engine, _hasher(), s.var_dir / "demo-credentials.json", s.issuer)
    )
    dept_keys = _run(lambda engine: setup_demo_keys(engine, s.var_dir))
    _print_demo(s, creds)
    typer.echo(f"  hrss SM2 private key (decrypts idNumber): {dept_keys['hrss']['private_key_file']}")


def _print_demo(s: Settings, creds: dict[str, Any]) -> None:
    base = s.issuer
    typer.echo(f"""
Shuqiao demo is ready.
  explorer      {base}/explore           (the public open-data page)
  workbench     {base}/graphiql          (GraphiQL on the open tier; /graphiql/share: sign in, share tier)
  open tier     {base}/open/graphql      (anonymous; X-API-Key for conditionally open data)
  share tier    {base}/share/graphql     (Bearer token from {base}/oauth/token)
  audit         {base}/audit             (security officers sign in: see "users" in the credentials file)
  console       {base}/console           (departments' people: applications, approvals, grants)
  enterprises   {base}/enterprise        (an enterprise's keys, grants, usage, applications)
  health        {base}/healthz  {base}/readyz
Demo credentials (also in {s.var_dir}/demo-credentials.json, mode 0600):""")
    for dept, c in creds["clients"].items():
        typer.echo(f"  {dept:7s} client_id={c['client_id']}  client_secret={c['client_secret']}")
    for ent, key in creds["api_keys"].items():
        typer.echo(f"  {ent} X-API-Key: {key}")
    for username, u in creds.get("users", {}).items():
        who = " ".join([*u["roles"], u.get("department") or u.get("enterprise") or ""]).strip()
        typer.echo(f"  person {username} ({who}) password: {u['password']}")
    example = (
        '{"query":"{ enterpriseRegistration(first: 3) { edges { node { name legalRepresentative } } } }"}'
    )
    typer.echo(f"Try:\n  curl -s {base}/open/graphql -H 'Content-Type: application/json' -d '{example}'\n")


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Run the gateway (uvicorn). The issuer is http://HOST:PORT unless SHUQIAO_ISSUER is set."""
    import os

    import uvicorn

    from gateway.metrics import prepare_multiprocess_dir
    from gateway.settings import serve_environment

    # The workers read their settings from the environment (gateway.app:create_app).
    os.environ.update(serve_environment(host, port, os.environ))
    prepare_multiprocess_dir()  # PROMETHEUS_MULTIPROC_DIR: last run's samples are not this run's
    # The factory string (not the repo-root asgi.py) so this works from any directory.
    uvicorn.run(
        "gateway.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        access_log=False,  # the gateway's own line per request is on `shuqiao.http`
        log_config=log_config(),
        # X-Forwarded-For is ours to judge (gateway.client_address, SHUQIAO_TRUSTED_PROXIES)
        proxy_headers=False,
    )


def log_config() -> dict[str, Any]:
    """uvicorn's logging, plus the gateway's loggers at INFO: `shuqiao.http` (one JSON line per
    request) on stdout as it is, the rest of `shuqiao` on stderr beside uvicorn's messages."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["json_line"] = {"format": "%(message)s"}
    config["handlers"]["shuqiao_http"] = {
        "formatter": "json_line",
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stdout",
    }
    config["loggers"]["shuqiao"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    config["loggers"]["shuqiao.http"] = {"handlers": ["shuqiao_http"], "level": "INFO", "propagate": False}
    return config


pool_app = typer.Typer(help="The data pool: encryption at rest.", no_args_is_help=True)
app.add_typer(pool_app, name="pool")


@pool_app.command("encrypt")
def pool_encrypt(batch: int = 1000, as_json: JsonOpt = False) -> None:
    """Encrypt clear L4 / sensitive values already in the pool (resumable; safe to re-run)."""
    from catalogue.encrypt_existing import encrypt_existing
    from gateway.secrets import load_master_key

    master_key = load_master_key(_settings().master_key_file)
    seen: dict[str, int] = {}

    def progress(column: str, n: int) -> None:
        seen[column] = seen.get(column, 0) + n
        if not as_json:
            typer.echo(f"  {column}: {seen[column]:,} encrypted", err=True)

    done = _run(lambda e: encrypt_existing(e, master_key, batch=batch, progress=progress))
    _emit(as_json, done, "\n".join(f"{k:40s} {v:>10,d}" for k, v in done.items()) or "nothing to encrypt")


# ---------------------------------------------------------------- grants


def _grant_run(make: Callable[[Any], Awaitable[T]], *, done: str = "nothing was changed") -> T:
    from gateway.grants.service import GrantError
    from gateway.identity.audit import AuditUnavailable
    from gateway.identity.clients import IdentityError

    try:
        return run_with_engine(make, expected=(GrantError, CatalogueError, IdentityError))
    except AuditUnavailable as err:
        typer.echo(f"error: the audit log is unavailable ({err}); {done}", err=True)
        raise typer.Exit(3) from None


async def _grant_event(engine: Any, operation: str, **kw: Any) -> None:
    from gateway.grants.audit import record_grant_event
    from gateway.identity.audit import AuditUnavailable, cli_audit, cli_operator

    try:
        audit = cli_audit(_settings(), engine)
    except Exception as err:  # e.g. the master key that seals the log cannot be read
        raise AuditUnavailable(f"{type(err).__name__}: {err}") from err
    await record_grant_event(audit, operation, principal_kind="operator", principal_id=cli_operator(), **kw)


def _until(value: str) -> datetime:
    """A date means "through that day" (China Standard Time); a full ISO time is taken as given."""
    try:
        if len(value) == 10:
            day = datetime.fromisoformat(value).replace(tzinfo=timezone(timedelta(hours=8)))
            return (day + timedelta(days=1)).astimezone(UTC)
        at = datetime.fromisoformat(value)
    except ValueError:
        typer.echo(f"error: --until {value!r} is not a date (YYYY-MM-DD) or an ISO 8601 time", err=True)
        raise typer.Exit(2) from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _tier(value: str | None) -> Any:
    from policies.model import Tier

    if value is None:
        return None
    try:
        return Tier(value)
    except ValueError:
        typer.echo("error: --tier is share or open", err=True)
        raise typer.Exit(2) from None


@grant_app.command("create")
def grant_create(
    dataset: Annotated[str, typer.Option()],
    consumer: Annotated[str, typer.Option(help="Department (share tier) or enterprise (open tier).")],
    purpose: Annotated[str, typer.Option()],
    tier: Annotated[str, typer.Option(help="share or open")] = "share",
    field: Annotated[
        list[str] | None, typer.Option(help="Granted field (snake_case or camelCase); repeat.")
    ] = None,
    clear: Annotated[list[str] | None, typer.Option(help="Granted field delivered unmasked; repeat.")] = None,
    expires_days: int = 365,
    as_json: JsonOpt = False,
) -> None:
    """Record an approved grant. It ADDS to the consumer's grants on the dataset (they combine:
    union of fields, the strictest treatment where two list the same field); it replaces none."""
    from gateway.grants.service import create_grant, describe, list_grants, revoke_grant, to_policy
    from policies.model import GrantSet, Treatment

    tier_value = _tier(tier)
    expires = datetime.now(UTC) + timedelta(days=expires_days)

    async def make(e: Any) -> Any:
        from gateway.identity.audit import cli_operator

        row = await create_grant(
            e,
            tier=tier_value,
            dataset=dataset,
            consumer=consumer,
            fields=field or [],
            clear_fields=clear or [],
            purpose=purpose,
            expires_at=expires,
            created_by=cli_operator(),
        )
        try:
            await _grant_event(e, "grant.create", row=row)
        except Exception:  # never leave an unrecorded grant in force
            assert row.id is not None  # the insert gave it one
            await revoke_grant(e, row.id, reason="audit log unavailable when created", by=cli_operator())
            raise
        held = await list_grants(e, consumer=consumer, dataset=dataset, tier=tier_value, state="active")
        return row, held

    row, held = _grant_run(make, done="the grant was revoked again")
    combined = GrantSet.of(*(to_policy(r) for r in held))
    others = [g for g in combined.ids if g != row.id]
    notes = []
    for name in row.clear_fields.split():
        if combined.treatment(name) is not Treatment.CLEAR:
            masking = [g.id for g in combined.grants if g.treatment(name) is Treatment.MASKED]
            ids = ", ".join(map(str, masking))
            notes.append(
                f"{name} stays masked while grant {ids} lists it masked (the strictest applies); "
                f"revoke {ids} to give it in clear"
            )
    doc = {
        **describe(row),
        "adds_to": others,
        "combined": {
            "grant_ids": list(combined.ids),
            "fields": sorted(combined.fields),
            "clear_fields": sorted(n for n in combined.fields if combined.treatment(n) is Treatment.CLEAR),
        },
        "notes": notes,
    }
    human = [
        f"grant {row.id} approved until {expires:%Y-%m-%d}: added to {consumer}'s grants on {dataset} "
        f"({'with ' + ', '.join(map(str, others)) if others else 'its first'}; it replaces none)",
        f"{consumer} now reads {dataset} under grant(s) {', '.join(map(str, combined.ids))}: "
        f"{', '.join(sorted(combined.fields)) or 'the whole open view'}",
        *(f"note: {n}" for n in notes),
    ]
    _emit(as_json, doc, "\n".join(human))


@grant_app.command("list")
def grant_list(
    consumer: Annotated[str | None, typer.Option()] = None,
    dataset: Annotated[str | None, typer.Option()] = None,
    tier: Annotated[str | None, typer.Option(help="share or open")] = None,
    state: Annotated[
        str, typer.Option(help="active (includes expiring), expiring, expired, revoked, pending or all")
    ] = "active",
    as_json: JsonOpt = False,
) -> None:
    """Grants, by consumer, dataset, tier and state. "expiring": ends within
    SHUQIAO_GRANT_EXPIRY_WARNING_DAYS (default 30)."""
    from gateway.grants.service import describe, list_grants

    warning = _settings().grant_expiry_warning_days
    filters = {"consumer": consumer, "dataset": dataset, "tier": tier, "state": state}

    async def make(e: Any) -> Any:
        rows = await list_grants(
            e, consumer=consumer, dataset=dataset, tier=_tier(tier), state=state, warning_days=warning
        )
        await _grant_event(
            e, "grant.list", consumer=consumer, detail={"filters": filters, "count": len(rows)}
        )
        return rows

    rows = [describe(r, warning_days=warning) for r in _grant_run(make)]

    def line(r: dict[str, Any]) -> str:
        clear = set(r["clear_fields"])
        fields = " ".join(f + ("(clear)" if f in clear else "") for f in r["fields"]) or "(whole open view)"
        until = (r["expires_at"] or "never")[:10]
        head = f"{r['id']:>5} {r['tier']:5s} {r['dataset']:24s} {r['consumer']:12s}"
        return f"{head} {r['state']:8s} {until}  {fields}"

    _emit(as_json, rows, "\n".join(line(r) for r in rows) or f"no {state} grants")


@grant_app.command("revoke")
def grant_revoke(
    grant_id: Annotated[int, typer.Argument(metavar="ID")],
    reason: Annotated[str, typer.Option(help="Why (kept with the grant and on the audit log).")],
    as_json: JsonOpt = False,
) -> None:
    """Stop honouring a grant: running gateways refuse it within a second."""
    from gateway.grants.service import describe, revoke_grant

    async def make(e: Any) -> Any:
        from gateway.identity.audit import cli_operator

        row = await revoke_grant(e, grant_id, reason=reason, by=cli_operator())
        await _grant_event(e, "grant.revoke", row=row)
        return row

    row = _grant_run(make, done="the grant IS revoked, but the event is missing from the audit log")
    _emit(
        as_json,
        describe(row),
        f"grant {row.id} revoked ({row.consumer} on {row.dataset_code}): {row.revoke_reason}",
    )


@grant_app.command("renew")
def grant_renew(
    grant_id: Annotated[int, typer.Argument(metavar="ID")],
    until: Annotated[str, typer.Option(help="New expiry: YYYY-MM-DD (through that day, UTC+8) or ISO time.")],
    as_json: JsonOpt = False,
) -> None:
    """Extend a grant's expiry (an expired grant comes back into force)."""
    from gateway.grants.service import describe, renew_grant

    at = _until(until)

    async def make(e: Any) -> Any:
        from gateway.identity.audit import cli_operator

        row = await renew_grant(e, grant_id, until=at, by=cli_operator())
        await _grant_event(e, "grant.renew", row=row)
        return row

    row = _grant_run(make, done="the grant IS renewed, but the event is missing from the audit log")
    _emit(as_json, describe(row), f"grant {row.id} renewed until {row.expires_at:%Y-%m-%d %H:%M} UTC")


# ---------------------------------------------------------------- catalogue


async def _catalogue_with_status(engine: Any) -> tuple[Any, dict[str, Any]]:
    from catalogue.freshness import load_statuses
    from catalogue.service import load_catalogue

    return await load_catalogue(engine), await load_statuses(engine)


@catalog_app.command("list")
def catalog_list(
    department: Annotated[
        str | None,
        typer.Option(help="Only this department's datasets (as GET /admin/data/datasets shows a steward)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every dataset, with its size and freshness (row count, last load, last change, last sync)."""
    from catalogue.freshness import listing

    cat, statuses = _run(_catalogue_with_status)
    rows = [
        listing(d, statuses.get(d.code))
        for d in cat.datasets.values()
        if department is None or d.department == department
    ]
    _emit(
        as_json,
        rows,
        "\n".join(
            f"{r['resource_code']:20s} {r['code']:26s} {r['share']:13s} {r['open']:13s} "
            f"{'published' if r['published'] else 'draft'}  "
            f"{'' if r['row_count'] is None else format(r['row_count'], ',') + ' rows  '}{r['name']}"
            for r in rows
        ),
    )


@catalog_app.command("show")
def catalog_show(
    code: Annotated[str, typer.Argument(metavar="CODE", help="The dataset code or its 资源代码.")],
    as_json: JsonOpt = False,
) -> None:
    """One dataset: its catalogue entry, 信息项, size, freshness and sync source."""
    from catalogue.freshness import describe

    cat, statuses = _run(_catalogue_with_status)
    spec = cat.datasets.get(code) or next((d for d in cat.datasets.values() if d.resource_code == code), None)
    if spec is None:
        typer.echo(f"error: no dataset with code or resource code {code!r}", err=True)
        raise typer.Exit(2)
    status = statuses.get(spec.code)
    out = {
        "code": spec.code,
        "resource_code": spec.resource_code,
        "name": spec.name,
        "name_en": spec.name_en,
        "department": spec.department,
        "category": spec.category.value,
        "update_cycle": spec.update_cycle,
        "share": spec.share.value,
        "open": spec.open.value,
        "published": spec.published,
        "entity_field": spec.entity_field,
        **describe(status),
        "source": None
        if status is None or not status.source_url
        else {
            "url": status.source_url,
            "table": status.source_table,
            "sql": status.source_sql,
            "updated_column": status.source_updated_column,
            "key": status.source_key,
            "snapshot": status.source_snapshot,
            "watermark": status.sync_watermark,
        },
        "fields": [
            {"name": f.name, "title": f.title, "type": f.type.value, "level": int(f.level), "pi": f.pi.value}
            for f in spec.fields
        ],
    }
    human = [f"{spec.resource_code}  {spec.code}  {spec.name}"]
    for k in (
        "row_count",
        "last_load_at",
        "last_change_at",
        "last_load_digest",
        "last_sync_at",
        "last_sync_outcome",
    ):
        human.append(f"  {k:18s} {'-' if out[k] is None else out[k]}")
    human += [f"  {f['name']:28s} {f['type']:9s} L{f['level']}  {f['title']}" for f in out["fields"]]
    _emit(as_json, out, "\n".join(human))


CodeArg = Annotated[
    str, typer.Argument(metavar="CODE", help="The dataset code (population) or its 资源代码.")
]


async def _set_published(engine: Any, code: str, published: bool) -> str:
    """Publish or unpublish by dataset code or resource code (`catalog list` shows both)."""
    from catalogue.service import load_catalogue, set_published

    datasets = (await load_catalogue(engine)).datasets
    if code not in datasets:
        by_resource = [d.code for d in datasets.values() if d.resource_code == code]
        if not by_resource:
            raise CatalogueError(f"no dataset with code or resource code {code!r}")
        code = by_resource[0]
    await set_published(engine, code, published)
    return code


@catalog_app.command("publish")
def catalog_publish(code: CodeArg) -> None:
    """Publish a dataset: it appears in the schemas of running gateways within a second."""
    dataset = _run(lambda e: _set_published(e, code, True))
    typer.echo(f"{dataset} published")


@catalog_app.command("unpublish")
def catalog_unpublish(code: CodeArg) -> None:
    """Withdraw a dataset from the schemas of running gateways (within a second)."""
    dataset = _run(lambda e: _set_published(e, code, False))
    typer.echo(f"{dataset} unpublished")


@catalog_app.command("set-field")
def catalog_set_field(
    dataset: str,
    field: str,
    level: Annotated[int | None, typer.Option(min=1, max=4)] = None,
    pi: Annotated[str | None, typer.Option(help="none, personal or sensitive")] = None,
    mask: Annotated[str | None, typer.Option(help="a masking rule, or 'none'")] = None,
) -> None:
    """Reclassify one field (信息项)."""
    from catalogue.service import update_field
    from policies.model import PI, Level, MaskRule

    changes: dict[str, Any] = {}
    try:
        if level is not None:
            changes["level"] = Level(level)
        if pi is not None:
            changes["pi"] = PI(pi)
        if mask is not None:
            changes["mask"] = None if mask == "none" else MaskRule(mask)
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    _run(lambda e: update_field(e, dataset, field, **changes))
    typer.echo(f"{dataset}.{field} updated")


@catalog_app.command("apply")
def catalog_apply(
    file: Annotated[
        str, typer.Argument(metavar="FILE", help="A catalogue file (YAML or JSON); - for stdin.")
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and show the diff; change nothing.")
    ] = False,
    allow_destructive: Annotated[
        bool, typer.Option("--allow-destructive", help="Allow removing datasets or fields and type changes.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Validate a catalogue file (every error, with its line), show the diff, apply it in one
    transaction. The file is authoritative for the departments it declares."""
    from catalogue.apply import DestructiveRefused, apply_document
    from catalogue.document import DocumentInvalid, parse
    from gateway.catalogue_admin import apply_detail, digest
    from gateway.identity.audit import AuditUnavailable, cli_audit, cli_operator, record_admin_event

    name = "<stdin>" if file == "-" else file
    try:
        text = sys.stdin.read() if file == "-" else open(file, encoding="utf-8-sig").read()  # noqa: SIM115
    except (OSError, UnicodeDecodeError) as err:
        typer.echo(f"error: cannot read {name}: {err}", err=True)
        raise typer.Exit(2) from None
    try:
        doc = parse(text, name)
    except DocumentInvalid as invalid:
        if as_json:
            errors = [{"file": name, **e.as_dict()} for e in invalid.errors]
            typer.echo(json.dumps({"valid": False, "errors": errors}, ensure_ascii=False))
        else:
            for e in invalid.errors:
                typer.echo(e.render(name), err=True)
            typer.echo(f"{name}: {len(invalid.errors)} error(s); nothing applied", err=True)
        raise typer.Exit(2) from None

    async def go(engine: Any) -> Any:
        audit = None if dry_run else cli_audit(_settings(), engine)  # opened first: no sink, no change
        try:
            result = await apply_document(engine, doc, dry_run=dry_run, allow_destructive=allow_destructive)
        except DestructiveRefused as refused:
            return refused
        if result.applied and any(c.note and "pool encrypt" in c.note for c in result.plan.changes):
            # fields newly L4 / sensitive: their stored values are encrypted now, not left clear
            from catalogue.encrypt_existing import encrypt_existing
            from gateway.secrets import load_master_key

            await encrypt_existing(engine, load_master_key(_settings().master_key_file))
        if audit is not None and result.applied:
            await record_admin_event(
                audit,
                "catalogue.apply",
                status=200,
                principal_kind="operator",
                principal_id=cli_operator(),
                target=",".join(d.code for d in doc.departments) or None,
                detail=apply_detail(result, digest(text), file=name),
            )
        return result

    try:
        outcome = _run(go)
    except AuditUnavailable as err:
        typer.echo(
            f"error: the catalogue was applied but its audit event could not be recorded: {err}", err=True
        )
        raise typer.Exit(3) from None
    if isinstance(outcome, DestructiveRefused):
        if as_json:
            typer.echo(
                json.dumps(
                    {"valid": True, "applied": False, "error": str(outcome), **outcome.plan.as_dict()},
                    ensure_ascii=False,
                )
            )
        else:
            typer.echo(outcome.plan.render())
            typer.echo(f"error: {outcome}", err=True)
        raise typer.Exit(2)
    if as_json:
        typer.echo(json.dumps({"valid": True, **outcome.as_dict()}, ensure_ascii=False, default=str))
        return
    typer.echo(outcome.plan.render())
    if dry_run:
        typer.echo(f"dry run: {len(outcome.plan.changes)} change(s), nothing applied")
    elif outcome.applied:
        typer.echo(f"applied {len(outcome.plan.changes)} change(s); catalogue version {outcome.version}")


@catalog_app.command("export")
def catalog_export(
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Write to this file (default: stdout).")
    ] = None,
    department: Annotated[list[str] | None, typer.Option(help="Only this department; repeat.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of YAML.")] = False,
) -> None:
    """Write the live catalogue as a catalogue file (`catalog apply` of it changes nothing)."""
    from catalogue.apply import export_document
    from catalogue.document import dump

    doc = _run(lambda e: export_document(e, department or None))
    text = dump(doc, as_json=as_json)
    if output is None:
        typer.echo(text, nl=False)
    else:
        with open(output, "w", encoding="utf-8") as out:
            out.write(text)
        typer.echo(f"{len(doc.datasets)} datasets written to {output}", err=True)


@catalog_app.command("schema")
def catalog_schema() -> None:
    """Print the JSON Schema of catalogue files (for editors: yaml-language-server)."""
    from catalogue.document import json_schema_text

    typer.echo(json_schema_text(), nl=False)


@federation_app.command("demo")
def federation_demo(
    var: Annotated[str, typer.Option(help="Where both nodes keep their stores.")] = "var/federation",
    province_port: int = 8100,
    city_port: int = 8101,
    router_port: int = 4000,
) -> None:
    """Two nodes (the province's demo, 西安市) with their own stores and keys, their subgraphs
    composed, and a stock router (Node 20, `make federation`) in front; runs until Ctrl-C."""
    from pathlib import Path

    from gateway.federation import demo

    demo(Path(var), province_port, city_port, router_port, typer.echo)


def main() -> None:  # pragma: no cover - console entry
    app(prog_name="shuqiao")


if __name__ == "__main__":  # pragma: no cover
    main()
