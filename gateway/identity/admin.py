"""Admin API for identity (`/admin/identity/...`): clients, users, API keys, issuers, roles.

Every call needs a bearer token for the admin audience with the `admin` scope. Secrets
(client secrets, API keys) appear once, in the response that creates them. Every changing
call, answered or refused, is one audit event (`admin.client.create`, `apikey.rotate`, ...:
gateway.identity.audit.record_admin_event); a creation whose event cannot be recorded is
taken back and answered 503."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.identity import apikeys, clients, users
from gateway.identity.audit import AuditUnavailable, key_change, record_admin_event
from gateway.identity.bearer import BearerRefused
from gateway.identity.passwords import WeakPassword
from gateway.identity.roles import ROLES, UnknownRole
from gateway.identity.tokens import ADMIN_AUDIENCE
from gateway.problems import Problem, problem_response

if TYPE_CHECKING:
    from gateway.identity.service import Identity

NO_STORE = {"Cache-Control": "no-store"}
log = logging.getLogger("shuqiao.identity")


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    429: "RATE_LIMITED",
    503: "AUDIT_UNAVAILABLE",
}


def _problem(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """The one problem shape (gateway.problems), never cached: answers may carry secrets."""
    return problem_response(Problem(status, message, _CODES[status], headers), headers=NO_STORE)


@dataclass
class Done:
    """What a changing call did, for its audit event: the answer, what it acted on, a
    `describe_*` of the row (never a secret), and how to take it back if the event cannot
    be recorded (nothing handed out goes unrecorded)."""

    body: Any
    target: str | None
    detail: dict[str, Any] = field(default_factory=dict)
    consumer: str | None = None
    undo: Callable[[], Awaitable[Any]] | None = None


Handler = Callable[[Request], Awaitable[Any]]
REFUSAL_CODES = {400: "bad_request", 401: "invalid_token", 403: "insufficient_scope", 404: "not_found"}


class AdminAPI:
    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.bearer = identity.protector(realm="shuqiao-admin", audience=ADMIN_AUDIENCE, scopes=["admin"])

    async def _authorise(self, request: Request) -> None:
        try:
            request.state.admin_claims = await self.bearer.validate_request(request)
        except BearerRefused as refused:
            request.state.admin_claims = refused.claims  # a valid token without the scope: who asked
            raise _Refused(_problem(refused.status, refused.message, refused.headers)) from None

    async def _body(self, request: Request) -> dict[str, Any]:
        try:
            data = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            raise _Refused(_problem(400, "The body is not valid JSON.")) from None
        if not isinstance(data, dict):
            raise _Refused(_problem(400, "The body must be a JSON object."))
        return data

    def _wrap(self, handlers: dict[str, tuple[Handler, str | None]]) -> Handler:
        """One endpoint: failure limit, bearer check, the handler for the method, and for
        every changing call (an operation named) one audit event with its outcome."""

        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            fn, operation = handlers.get(request.method) or handlers["GET"]  # HEAD comes with GET
            guard = self.identity.failures
            throttled = await guard.check(request)
            if throttled is not None:  # too many failed tokens from this address
                try:
                    await guard.record_refusal(request, throttled, "admin")
                except AuditUnavailable:
                    return _unavailable()
                return _problem(429, throttled.message, throttled.decision.headers)
            done: Done | None = None
            try:
                await self._authorise(request)
                result = await fn(request)
            except _Refused as refused:
                response = refused.response
                if response.status_code == 401:
                    await guard.failed(request)
            except (
                clients.IdentityError,
                apikeys.ApiKeyError,
                users.UserError,
                UnknownRole,
                WeakPassword,
            ) as err:
                response = _problem(400, str(err))
            except (KeyError, TypeError, ValueError) as err:
                response = _problem(400, f"bad request: {err}")
            else:
                done = result if isinstance(result, Done) else None
                body = done.body if done is not None else result
                status = 201 if request.method == "POST" else 200
                response = JSONResponse(body, status_code=status, headers=NO_STORE)
            if operation is None:
                return response
            try:
                await self._record(request, operation, response.status_code, done, started)
            except AuditUnavailable:
                log.exception("identity audit write failed; admin answer withheld")
                return _unavailable()
            return response

        return endpoint

    async def _record(
        self, request: Request, operation: str, status: int, done: Done | None, started: float
    ) -> None:
        claims = getattr(request.state, "admin_claims", None)
        await record_admin_event(
            self.identity.audit,
            operation,
            status=status,
            principal_kind="client" if claims is not None else "anonymous",
            principal_id=claims.client_id if claims is not None else None,
            subject=claims.subject if claims is not None and claims.subject != claims.client_id else None,
            target=done.target if done is not None else _path_target(request),
            consumer=done.consumer if done is not None else None,
            detail=done.detail if done is not None else None,
            error=None if status < 400 else REFUSAL_CODES.get(status, str(status)),
            request=request,
            started=started,
            undo=done.undo if done is not None else None,
        )

    # ------------------------------------------------------------------ clients
    async def clients_list(self, request: Request) -> Any:
        return [clients.describe_client(c) for c in await clients.list_clients(self.identity.engine)]

    async def client_create(self, request: Request) -> Done:
        engine = self.identity.engine
        b = await self._body(request)
        cid, secret = await clients.create_client(
            engine,
            self.identity.hasher,
            b["department"],
            name=b.get("name", ""),
            scopes=b.get("scopes"),
            client_id=b.get("client_id"),
            auth_methods=b.get("auth_methods"),
            grant_types=b.get("grant_types"),
            redirect_uris=b.get("redirect_uris"),
            jwks=b.get("jwks"),
        )
        row = await self.identity.store.client(cid)
        assert row is not None  # just created
        return Done(
            {"client_id": cid, "client_secret": secret},
            cid,
            clients.describe_client(row),
            row.department_code,
            undo=lambda: clients.set_client_disabled(engine, cid, True),
        )

    async def _client_disabled(self, request: Request, disabled: bool) -> Done:
        row = await clients.set_client_disabled(
            self.identity.engine, request.path_params["client_id"], disabled
        )
        # this worker at once; the others within a second (gateway.identity.store.RevocationList)
        await self.identity.revocations.refresh(force=True)
        described = clients.describe_client(row)
        return Done(described, row.client_id, described, row.department_code)

    async def client_rotate_secret(self, request: Request) -> Done:
        engine, cid = self.identity.engine, request.path_params["client_id"]
        secret, previous = await clients.rotate_client_secret(engine, self.identity.hasher, cid)
        row = await self.identity.store.client(cid)
        assert row is not None  # just changed
        return Done(
            {"client_id": cid, "client_secret": secret},
            cid,
            clients.describe_client(row),
            row.department_code,
            undo=lambda: clients.restore_client_secret(engine, cid, previous),  # the old one works again
        )

    async def client_disable(self, request: Request) -> Done:
        return await self._client_disabled(request, True)

    async def client_enable(self, request: Request) -> Done:
        return await self._client_disabled(request, False)

    # ------------------------------------------------------------------ people
    async def users_list(self, request: Request) -> Any:
        return [users.describe(u) for u in await self.identity.users.list()]

    async def user_create(self, request: Request) -> Done:
        svc = self.identity.users
        b = await self._body(request)
        u = await svc.create(
            b["username"],
            b["password"],
            roles=b.get("roles", []),
            department=b.get("department"),
            enterprise=b.get("enterprise"),
            display_name=b.get("display_name", ""),
        )
        described = users.describe(u)
        return Done(
            described,
            u.username,
            described,
            u.department_code or u.enterprise_code,
            undo=lambda: svc.update(u.username, disabled=True),
        )

    async def _user_change(self, request: Request, **change: Any) -> Done:
        u = await self.identity.users.update(request.path_params["username"], **change)
        if "disabled" in change:  # as for clients: this worker at once, the others within a second
            await self.identity.revocations.refresh(force=True)
        described = users.describe(u)
        return Done(described, u.username, described, u.department_code or u.enterprise_code)

    async def user_unlock(self, request: Request) -> Done:
        return await self._user_change(request, unlock=True)

    async def user_roles(self, request: Request) -> Done:
        roles = (await self._body(request))["roles"]
        if not isinstance(roles, list):
            raise TypeError("roles must be a list")
        return await self._user_change(request, roles=roles)

    async def user_disable(self, request: Request) -> Done:
        return await self._user_change(request, disabled=True)

    async def user_enable(self, request: Request) -> Done:
        return await self._user_change(request, disabled=False)

    # ------------------------------------------------------------------ API keys
    async def apikeys_list(self, request: Request) -> Any:
        ent = request.query_params.get("enterprise")
        return [apikeys.describe(k) for k in await apikeys.list_api_keys(self.identity.engine, ent)]

    def _key_done(self, body: Any, row: Any, previous: Any = None, *, issued: bool = True) -> Done:
        engine = self.identity.engine
        return Done(
            body,
            row.prefix,
            key_change(row, previous),
            row.enterprise_code,
            undo=(lambda: apikeys.revoke_api_key(engine, row.prefix)) if issued else None,
        )

    async def apikey_create(self, request: Request) -> Done:
        b = await self._body(request)
        days = b.get("expires_days")
        key, row = await apikeys.create_api_key(
            self.identity.engine,
            self.identity.hasher,
            b["enterprise"],
            b.get("name", ""),
            datetime.now(UTC) + timedelta(days=int(days)) if days else None,
            datasets=b.get("datasets"),
            rate_per_minute=b.get("rate_per_minute"),
            daily_quota=b.get("daily_quota"),
        )
        return self._key_done({"api_key": key, **apikeys.describe(row)}, row)

    async def apikey_rotate(self, request: Request) -> Done:
        b = await self._body(request) if await request.body() else {}
        key, new, old = await apikeys.rotate_api_key(
            self.identity.engine,
            self.identity.hasher,
            request.path_params["prefix"],
            timedelta(hours=float(b.get("overlap_hours", 24))),
        )
        body = {"api_key": key, **apikeys.describe(new), "previous": apikeys.describe(old)}
        return self._key_done(body, new, old)

    async def apikey_revoke(self, request: Request) -> Done:
        row = await apikeys.revoke_api_key(self.identity.engine, request.path_params["prefix"])
        return self._key_done(apikeys.describe(row), row, issued=False)

    # ------------------------------------------------------------------ trusted issuers
    async def issuers_list(self, request: Request) -> Any:
        return [clients.describe_issuer(i) for i in await clients.list_issuers(self.identity.engine)]

    async def issuer_add(self, request: Request) -> Done:
        engine = self.identity.engine
        b = await self._body(request)
        row = await clients.add_issuer(
            engine,
            b["issuer"],
            b["discovery_url"],
            b["audience"],
            department_claim=b.get("department_claim", "dept"),
            department_map=b.get("department_map"),
            roles_claim=b.get("roles_claim", "roles"),
            scopes=b.get("scopes"),
            algorithms=b.get("algorithms"),
        )
        self.identity.external.invalidate()

        async def undo() -> None:  # trust nothing whose record is missing
            await clients.remove_issuer(engine, row.issuer)
            self.identity.external.invalidate()

        described = clients.describe_issuer(row)
        return Done(described, row.issuer, described, undo=undo)

    async def issuer_remove(self, request: Request) -> Done:
        issuer = request.query_params.get("issuer") or ""
        if not issuer:
            raise KeyError("issuer")
        await clients.remove_issuer(self.identity.engine, issuer)
        self.identity.external.invalidate()
        return Done({"removed": issuer}, issuer)

    async def roles_(self, request: Request) -> Any:
        return [{"role": r, "title": t, "scopes": sorted(s)} for r, (t, s) in ROLES.items()]

    def routes(self) -> list[Route]:

        def route(path: str, **handlers: tuple[Handler, str | None]) -> Route:
            return Route(path, self._wrap(handlers), methods=list(handlers))

        return [
            route(
                "/clients", GET=(self.clients_list, None), POST=(self.client_create, "admin.client.create")
            ),
            route("/clients/{client_id}/disable", POST=(self.client_disable, "admin.client.disable")),
            route(
                "/clients/{client_id}/rotate-secret",
                POST=(self.client_rotate_secret, "admin.client.rotate_secret"),
            ),
            route("/clients/{client_id}/enable", POST=(self.client_enable, "admin.client.enable")),
            route("/users", GET=(self.users_list, None), POST=(self.user_create, "admin.user.create")),
            route("/users/{username}/unlock", POST=(self.user_unlock, "admin.user.unlock")),
            route("/users/{username}/roles", POST=(self.user_roles, "admin.user.roles")),
            route("/users/{username}/disable", POST=(self.user_disable, "admin.user.disable")),
            route("/users/{username}/enable", POST=(self.user_enable, "admin.user.enable")),
            route("/apikeys", GET=(self.apikeys_list, None), POST=(self.apikey_create, "apikey.create")),
            route("/apikeys/{prefix}/rotate", POST=(self.apikey_rotate, "apikey.rotate")),
            route("/apikeys/{prefix}/revoke", POST=(self.apikey_revoke, "apikey.revoke")),
            route(
                "/issuers",
                GET=(self.issuers_list, None),
                POST=(self.issuer_add, "admin.issuer.add"),
                DELETE=(self.issuer_remove, "admin.issuer.remove"),
            ),
            route("/roles", GET=(self.roles_, None)),
        ]


def _path_target(request: Request) -> str | None:
    """What a refused call was about, as far as its path says (a client id, username, prefix)."""
    params = request.path_params
    return str(next(iter(params.values()))) if params else request.query_params.get("issuer")


def _unavailable() -> Response:
    return _problem(503, "The audit log is unavailable; nothing was changed or issued.", {"Retry-After": "5"})
