"""`shuqiao client|enterprise|apikey|user|issuer|role …`: identity administration.
Every command takes --json and then prints exactly one JSON document; secrets (client
secrets, API keys) are printed once, by the command that creates them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from gateway.cli_support import emit, run_with_engine
from gateway.settings import Settings

client_app = typer.Typer(help="OAuth clients (department systems, web apps).", no_args_is_help=True)
enterprise_app = typer.Typer(help="Enterprises.", no_args_is_help=True)
apikey_app = typer.Typer(help="Enterprise API keys.", no_args_is_help=True)
user_app = typer.Typer(help="People: accounts, roles, lock-out.", no_args_is_help=True)
issuer_app = typer.Typer(help="Trusted external OpenID providers.", no_args_is_help=True)
role_app = typer.Typer(help="Roles and the scopes they allow.", no_args_is_help=True)
IDENTITY_APPS = [
    (client_app, "client"),
    (enterprise_app, "enterprise"),
    (apikey_app, "apikey"),
    (user_app, "user"),
    (issuer_app, "issuer"),
    (role_app, "role"),
]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document for scripts.")]
T = TypeVar("T")


def _run(make: Callable[[Any], Awaitable[T]]) -> T:
    from gateway.identity.apikeys import ApiKeyError
    from gateway.identity.audit import AuditUnavailable
    from gateway.identity.clients import IdentityError
    from gateway.identity.passwords import WeakPassword
    from gateway.identity.roles import UnknownRole
    from gateway.identity.users import UserError

    try:
        return run_with_engine(
            make, expected=(IdentityError, ApiKeyError, UserError, UnknownRole, WeakPassword)
        )
    except AuditUnavailable as err:
        typer.echo(f"error: the audit log is unavailable, nothing was issued: {err}", err=True)
        raise typer.Exit(3) from None


def _audited(
    action: Callable[[Any], Awaitable[T]],
    operation: str,
    what: Callable[[T], tuple[str | None, dict[str, Any], str | None]],
    undo: Callable[[Any, T], Awaitable[Any]] | None = None,
) -> T:
    """One administrative change and its audit event (gateway.identity.audit.record_admin_event,
    the path the admin API takes too): operator `cli:<login>`, the operation, its target and a
    description without secrets. `what(result)` gives (target, detail, consumer). If the event
    cannot be recorded, `undo` takes back what was handed out and the command exits 3 without
    printing it."""
    from gateway.identity.audit import cli_audit, cli_operator, record_admin_event

    async def make(engine: Any) -> T:
        audit = cli_audit(Settings.from_env(), engine)  # opened first: no sink, no change
        result = await action(engine)
        target, detail, consumer = what(result)
        await record_admin_event(
            audit,
            operation,
            status=200,
            principal_kind="operator",
            principal_id=cli_operator(),
            target=target,
            consumer=consumer,
            detail=detail,
            undo=(lambda: undo(engine, result)) if undo is not None else None,
        )
        return result

    return _run(make)


def _emit(as_json: bool, data: Any, human: str) -> None:
    emit(as_json, data, human)


def _hasher():  # type: ignore[no-untyped-def]
    from gateway.secrets import SecretHasher, load_master_key

    return SecretHasher(load_master_key(Settings.from_env().master_key_file))


# ---------------------------------------------------------------- clients


@client_app.command("create")
def client_create(
    department: Annotated[str, typer.Option(help="Department code, e.g. samr.")],
    scope: Annotated[list[str] | None, typer.Option(help="Repeat for several.")] = None,
    name: str = "",
    client_id: str | None = None,
    auth_method: Annotated[
        list[str] | None, typer.Option(help="client_secret_basic, client_secret_post, private_key_jwt, none")
    ] = None,
    grant_type: Annotated[
        list[str] | None,
        typer.Option(
            help="client_credentials, authorization_code, refresh_token, "
            "urn:ietf:params:oauth:grant-type:token-exchange (federation routers)"
        ),
    ] = None,
    redirect_uri: Annotated[list[str] | None, typer.Option(help="Exact redirect URI; repeat.")] = None,
    jwks: Annotated[Path | None, typer.Option(help="File with the client's public JWK set.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a client; prints its secret once (none for private_key_jwt or public clients)."""
    from gateway.identity.clients import create_client, describe_client, list_clients, set_client_disabled

    hasher = _hasher()
    keys = jwks.read_text() if jwks else None

    async def create(e: Any) -> tuple[str, str | None, dict[str, Any]]:
        cid, secret = await create_client(
            e,
            hasher,
            department,
            name=name,
            scopes=scope,
            client_id=client_id,
            auth_methods=auth_method,
            grant_types=grant_type,
            redirect_uris=redirect_uri,
            jwks=keys,
        )
        row = next(c for c in await list_clients(e) if c.client_id == cid)
        return cid, secret, describe_client(row)  # the description never holds the secret

    cid, secret, _ = _audited(
        create,
        "admin.client.create",
        lambda made: (made[0], made[2], department),
        undo=lambda e, made: set_client_disabled(e, made[0], True),
    )
    _emit(
        as_json,
        {"client_id": cid, "client_secret": secret, "department": department},
        f"client_id={cid}\n" + (f"client_secret={secret}\n(the secret is shown only now)" if secret else ""),
    )


@client_app.command("list")
def client_list(as_json: JsonOpt = False) -> None:
    from gateway.identity.clients import describe_client, list_clients

    rows = [describe_client(c) for c in _run(list_clients)]
    _emit(
        as_json,
        rows,
        "\n".join(
            f"{r['client_id']:28s} {r['department']:8s} {' '.join(r['scopes'])}"
            f"{'  (disabled)' if r['disabled'] else ''}"
            for r in rows
        ),
    )


@client_app.command("rotate-secret")
def client_rotate_secret(client_id: str, as_json: JsonOpt = False) -> None:
    """A new secret (printed once); the old one stops working at once."""
    from gateway.identity.clients import restore_client_secret, rotate_client_secret

    hasher = _hasher()
    secret, _ = _audited(
        lambda e: rotate_client_secret(e, hasher, client_id),
        "admin.client.rotate_secret",
        lambda _: (client_id, {}, None),  # never the secret or either hash
        undo=lambda e, made: restore_client_secret(e, client_id, made[1]),
    )
    _emit(
        as_json,
        {"client_id": client_id, "client_secret": secret},
        f"client_id={client_id}\nclient_secret={secret}\n(the secret is shown only now)",
    )


@client_app.command("disable")
def client_disable(client_id: str, enable: bool = False, as_json: JsonOpt = False) -> None:
    from gateway.identity.clients import describe_client, set_client_disabled

    row = _audited(
        lambda e: set_client_disabled(e, client_id, not enable),
        "admin.client.enable" if enable else "admin.client.disable",
        lambda r: (r.client_id, describe_client(r), r.department_code),
    )
    _emit(as_json, describe_client(row), f"{client_id} {'enabled' if enable else 'disabled'}")


# ---------------------------------------------------------------- enterprises and API keys


@enterprise_app.command("create")
def enterprise_create(
    code: str, name: Annotated[str, typer.Option()], credit_code: str | None = None, as_json: JsonOpt = False
) -> None:
    from gateway.identity.clients import ensure_enterprise

    _audited(
        lambda e: ensure_enterprise(e, code, name, credit_code),
        "admin.enterprise.create",
        lambda _: (code, {"name": name, "credit_code": credit_code}, code),
    )
    _emit(as_json, {"code": code, "name": name}, f"enterprise {code} ready")


@apikey_app.command("create")
def apikey_create(
    enterprise: Annotated[str, typer.Option()],
    expires_days: int | None = None,
    name: str = "",
    dataset: Annotated[list[str] | None, typer.Option(help="Scope the key to a dataset; repeat.")] = None,
    rate_per_minute: int | None = None,
    daily_quota: int | None = None,
    as_json: JsonOpt = False,
) -> None:
    """Issue an API key to an enterprise; prints it once."""
    from gateway.identity.apikeys import create_api_key, describe, revoke_api_key
    from gateway.identity.audit import key_change

    expires = datetime.now(UTC) + timedelta(days=expires_days) if expires_days else None
    hasher = _hasher()
    key, row = _audited(
        lambda e: create_api_key(
            e,
            hasher,
            enterprise,
            name=name,
            expires_at=expires,
            datasets=dataset,
            rate_per_minute=rate_per_minute,
            daily_quota=daily_quota,
        ),
        "apikey.create",
        lambda made: (made[1].prefix, key_change(made[1]), made[1].enterprise_code),
        undo=lambda e, made: revoke_api_key(e, made[1].prefix),
    )
    _emit(
        as_json, {"api_key": key, **describe(row)}, f"X-API-Key: {key}\n(prefix {row.prefix}; shown only now)"
    )


@apikey_app.command("list")
def apikey_list(enterprise: str | None = None, as_json: JsonOpt = False) -> None:
    from gateway.identity.apikeys import describe, list_api_keys

    rows = [describe(k) for k in _run(lambda e: list_api_keys(e, enterprise))]
    _emit(
        as_json,
        rows,
        "\n".join(
            f"{r['prefix']:10s} {r['enterprise']:16s} {r['state']:8s} expires {r['expires_at'] or 'never'}"
            for r in rows
        ),
    )


@apikey_app.command("rotate")
def apikey_rotate(prefix: str, overlap_hours: float = 24.0, as_json: JsonOpt = False) -> None:
    """A new key with the same scopes and limits; the old one keeps working for the overlap."""
    from gateway.identity.apikeys import describe, revoke_api_key, rotate_api_key
    from gateway.identity.audit import key_change

    hasher = _hasher()
    key, new, old = _audited(
        lambda e: rotate_api_key(e, hasher, prefix, timedelta(hours=overlap_hours)),
        "apikey.rotate",
        lambda made: (made[1].prefix, key_change(made[1], made[2]), made[1].enterprise_code),
        undo=lambda e, made: revoke_api_key(e, made[1].prefix),
    )
    _emit(
        as_json,
        {"api_key": key, **describe(new), "previous": describe(old)},
        f"X-API-Key: {key}\n(prefix {new.prefix}; shown only now; {prefix} expires {old.expires_at})",
    )


@apikey_app.command("revoke")
def apikey_revoke(prefix: str, as_json: JsonOpt = False) -> None:
    from gateway.identity.apikeys import describe, revoke_api_key
    from gateway.identity.audit import key_change

    row = _audited(
        lambda e: revoke_api_key(e, prefix),
        "apikey.revoke",
        lambda r: (r.prefix, key_change(r), r.enterprise_code),
    )
    _emit(as_json, describe(row), f"{prefix} revoked")


# ---------------------------------------------------------------- people and roles


@user_app.command("create")
def user_create(
    username: str,
    role: Annotated[
        list[str], typer.Option(help="developer, steward, security_officer, enterprise_user, admin")
    ],
    department: str | None = None,
    enterprise: str | None = None,
    display_name: str = "",
    password: Annotated[str | None, typer.Option(help="Omit to be prompted (never echoed).")] = None,
    as_json: JsonOpt = False,
) -> None:
    from gateway.identity.users import UserService, describe

    pw = password or typer.prompt("password", hide_input=True, confirmation_prompt=True)
    user = _audited(
        lambda e: UserService(e).create(
            username, pw, roles=role, department=department, enterprise=enterprise, display_name=display_name
        ),
        "admin.user.create",
        _user_event,
        undo=lambda e, u: UserService(e).update(u.username, disabled=True),
    )
    _emit(as_json, describe(user), f"user {username} ({user.id}) created")


@user_app.command("list")
def user_list(as_json: JsonOpt = False) -> None:
    from gateway.identity.users import UserService, describe

    rows = [describe(u) for u in _run(lambda e: UserService(e).list())]
    _emit(
        as_json,
        rows,
        "\n".join(
            f"{r['username']:20s} {' '.join(r['roles']):30s} {r['department'] or ''}"
            f"{'  locked' if r['locked_until'] else ''}"
            for r in rows
        ),
    )


@user_app.command("unlock")
def user_unlock(username: str, as_json: JsonOpt = False) -> None:
    from gateway.identity.users import UserService, describe

    _emit(
        as_json,
        describe(
            _audited(lambda e: UserService(e).update(username, unlock=True), "admin.user.unlock", _user_event)
        ),
        f"{username} unlocked",
    )


@user_app.command("set-roles")
def user_set_roles(
    username: str, role: Annotated[list[str], typer.Option()], as_json: JsonOpt = False
) -> None:
    from gateway.identity.users import UserService, describe

    u = _audited(lambda e: UserService(e).update(username, roles=role), "admin.user.roles", _user_event)
    _emit(as_json, describe(u), f"{username}: {u.roles}")


@user_app.command("disable")
def user_disable(username: str, enable: bool = False, as_json: JsonOpt = False) -> None:
    from gateway.identity.users import UserService, describe

    u = _audited(
        lambda e: UserService(e).update(username, disabled=not enable),
        "admin.user.enable" if enable else "admin.user.disable",
        _user_event,
    )
    _emit(as_json, describe(u), f"{username} {'enabled' if enable else 'disabled'}")


def _user_event(u: Any) -> tuple[str | None, dict[str, Any], str | None]:
    from gateway.identity.users import describe

    return u.username, describe(u), u.department_code or u.enterprise_code


@role_app.command("list")
def role_list(as_json: JsonOpt = False) -> None:
    from gateway.identity.roles import ROLES

    rows = [{"role": r, "title": t, "scopes": sorted(s)} for r, (t, s) in ROLES.items()]
    _emit(as_json, rows, "\n".join(f"{r['role']:18s} {' '.join(r['scopes']):50s} {r['title']}" for r in rows))


# ---------------------------------------------------------------- trusted issuers


@issuer_app.command("add")
def issuer_add(
    issuer: str,
    discovery_url: Annotated[str, typer.Option()],
    audience: Annotated[str, typer.Option()],
    map_department: Annotated[list[str] | None, typer.Option(help="CLAIM_VALUE=DEPT; repeat.")] = None,
    department_claim: str = "dept",
    roles_claim: str = "roles",
    scope: Annotated[list[str] | None, typer.Option()] = None,
    algorithm: Annotated[list[str] | None, typer.Option()] = None,
    as_json: JsonOpt = False,
) -> None:
    """Trust an OpenID provider's access tokens on the share tier, for mapped departments."""
    from gateway.identity.clients import add_issuer, describe_issuer, remove_issuer

    mapping = dict(m.split("=", 1) for m in map_department or [])
    row = _audited(
        lambda e: add_issuer(
            e,
            issuer,
            discovery_url,
            audience,
            department_claim=department_claim,
            department_map=mapping,
            roles_claim=roles_claim,
            scopes=scope,
            algorithms=algorithm,
        ),
        "admin.issuer.add",
        lambda r: (r.issuer, describe_issuer(r), None),
        undo=lambda e, r: remove_issuer(e, r.issuer),
    )
    _emit(as_json, describe_issuer(row), f"trusting {issuer}")


@issuer_app.command("list")
def issuer_list(as_json: JsonOpt = False) -> None:
    from gateway.identity.clients import describe_issuer, list_issuers

    rows = [describe_issuer(i) for i in _run(list_issuers)]
    _emit(
        as_json, rows, "\n".join(f"{r['issuer']}  aud={r['audience']}  {r['department_map']}" for r in rows)
    )


@issuer_app.command("remove")
def issuer_remove(issuer: str, as_json: JsonOpt = False) -> None:
    from gateway.identity.clients import remove_issuer

    _audited(lambda e: remove_issuer(e, issuer), "admin.issuer.remove", lambda _: (issuer, {}, None))
    _emit(as_json, {"removed": issuer}, f"no longer trusting {issuer}")
