"""Admin API for identity (`/admin/identity/...`): clients, users, API keys, issuers, roles.

Every call needs a bearer token for the admin audience with the `admin` scope. Secrets
(client secrets, API keys) appear once, in the response that creates them."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.identity import apikeys, clients, users
from gateway.identity.audit import AuditUnavailable, record_api_key_event
from gateway.identity.bearer import BearerRefused
from gateway.identity.passwords import WeakPassword
from gateway.identity.roles import ROLES, UnknownRole
from gateway.identity.tokens import ADMIN_AUDIENCE

if TYPE_CHECKING:
    from gateway.identity.service import Identity

NO_STORE = {"Cache-Control": "no-store"}
log = logging.getLogger("shuqiao.identity")


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def _problem(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers={**NO_STORE, **(headers or {})})


class AdminAPI:
    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.bearer = identity.protector(realm="shuqiao-admin", audience=ADMIN_AUDIENCE, scopes=["admin"])

    async def _authorise(self, request: Request) -> None:
        try:
            request.state.admin_claims = await self.bearer.validate_request(request)
        except BearerRefused as refused:
            raise _Refused(_problem(refused.status, refused.message, refused.headers)) from None

    async def _body(self, request: Request) -> dict[str, Any]:
        try:
            data = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            raise _Refused(_problem(400, "The body is not valid JSON.")) from None
        if not isinstance(data, dict):
            raise _Refused(_problem(400, "The body must be a JSON object."))
        return data

    def _wrap(self, fn: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                await self._authorise(request)
                result = await fn(request)
            except _Refused as refused:
                return refused.response
            except AuditUnavailable:
                log.exception("identity audit write failed; admin answer withheld")
                return _problem(
                    503, "The audit log is unavailable; nothing was issued.", {"Retry-After": "5"}
                )
            except (
                clients.IdentityError,
                apikeys.ApiKeyError,
                users.UserError,
                UnknownRole,
                WeakPassword,
            ) as err:
                return _problem(400, str(err))
            except (KeyError, TypeError, ValueError) as err:
                return _problem(400, f"bad request: {err}")
            status = 201 if request.method == "POST" else 200
            return JSONResponse(result, status_code=status, headers=NO_STORE)

        return endpoint

    # ------------------------------------------------------------------ handlers
    async def clients_(self, request: Request) -> Any:
        engine = self.identity.engine
        if request.method == "GET":
            return [clients.describe_client(c) for c in await clients.list_clients(engine)]
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
        return {"client_id": cid, "client_secret": secret}

    async def users_(self, request: Request) -> Any:
        svc = self.identity.users
        if request.method == "GET":
            return [users.describe(u) for u in await svc.list()]
        b = await self._body(request)
        u = await svc.create(
            b["username"],
            b["password"],
            roles=b.get("roles", []),
            department=b.get("department"),
            enterprise=b.get("enterprise"),
            display_name=b.get("display_name", ""),
        )
        return users.describe(u)

    async def client_disabled(self, request: Request) -> Any:
        """POST .../clients/{client_id}/disable or /enable: a disabled client's tokens stop working
        on every worker within a second (gateway.identity.store.RevocationList)."""
        disable = request.url.path.endswith("/disable")
        row = await clients.set_client_disabled(
            self.identity.engine, request.path_params["client_id"], disable
        )
        await self.identity.revocations.refresh(force=True)  # this worker: at once
        return clients.describe_client(row)

    async def user_disabled(self, request: Request) -> Any:
        """POST .../users/{username}/disable or /enable: as for clients, for a person's tokens."""
        disable = request.url.path.endswith("/disable")
        row = await self.identity.users.update(request.path_params["username"], disabled=disable)
        await self.identity.revocations.refresh(force=True)
        return users.describe(row)

    async def user_unlock(self, request: Request) -> Any:
        return users.describe(await self.identity.users.update(request.path_params["username"], unlock=True))

    async def apikeys_(self, request: Request) -> Any:
        engine = self.identity.engine
        if request.method == "GET":
            ent = request.query_params.get("enterprise")
            return [apikeys.describe(k) for k in await apikeys.list_api_keys(engine, ent)]
        b = await self._body(request)
        days = b.get("expires_days")
        key, row = await apikeys.create_api_key(
            engine,
            self.identity.hasher,
            b["enterprise"],
            b.get("name", ""),
            datetime.now(UTC) + timedelta(days=int(days)) if days else None,
            datasets=b.get("datasets"),
            rate_per_minute=b.get("rate_per_minute"),
            daily_quota=b.get("daily_quota"),
        )
        await self._audit_key(request, "apikey.create", row)
        return {"api_key": key, **apikeys.describe(row)}

    async def apikey_rotate(self, request: Request) -> Any:
        b = await self._body(request) if await request.body() else {}
        key, new, old = await apikeys.rotate_api_key(
            self.identity.engine,
            self.identity.hasher,
            request.path_params["prefix"],
            timedelta(hours=float(b.get("overlap_hours", 24))),
        )
        await self._audit_key(request, "apikey.rotate", new, previous=old)
        return {"api_key": key, **apikeys.describe(new), "previous": apikeys.describe(old)}

    async def apikey_revoke(self, request: Request) -> Any:
        row = await apikeys.revoke_api_key(self.identity.engine, request.path_params["prefix"])
        await self._audit_key(request, "apikey.revoke", row, issued=False)
        return apikeys.describe(row)

    async def _audit_key(
        self, request: Request, operation: str, row: Any, *, previous: Any = None, issued: bool = True
    ) -> None:
        """Record an API-key event; if that fails, a key just issued is revoked again (fail closed)."""
        claims = request.state.admin_claims
        try:
            await record_api_key_event(
                self.identity.audit,
                operation,
                row,
                principal_kind="client",
                principal_id=claims.client_id,
                subject=claims.subject if claims.subject != claims.client_id else None,
                request=request,
                previous=previous,
                status=201,
            )
        except AuditUnavailable:
            if issued:
                await apikeys.revoke_api_key(self.identity.engine, row.prefix)
            raise

    async def issuers_(self, request: Request) -> Any:
        engine = self.identity.engine
        if request.method == "GET":
            return [clients.describe_issuer(i) for i in await clients.list_issuers(engine)]
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
        return clients.describe_issuer(row)

    async def roles_(self, request: Request) -> Any:
        return [{"role": r, "title": t, "scopes": sorted(s)} for r, (t, s) in ROLES.items()]

    def routes(self) -> list[Route]:
        p = "/admin/identity"
        return [
            Route(f"{p}/clients", self._wrap(self.clients_), methods=["GET", "POST"]),
            Route(f"{p}/users", self._wrap(self.users_), methods=["GET", "POST"]),
            Route(f"{p}/users/{{username}}/unlock", self._wrap(self.user_unlock), methods=["POST"]),
            Route(f"{p}/users/{{username}}/disable", self._wrap(self.user_disabled), methods=["POST"]),
            Route(f"{p}/users/{{username}}/enable", self._wrap(self.user_disabled), methods=["POST"]),
            Route(f"{p}/clients/{{client_id}}/disable", self._wrap(self.client_disabled), methods=["POST"]),
            Route(f"{p}/clients/{{client_id}}/enable", self._wrap(self.client_disabled), methods=["POST"]),
            Route(f"{p}/apikeys", self._wrap(self.apikeys_), methods=["GET", "POST"]),
            Route(f"{p}/apikeys/{{prefix}}/rotate", self._wrap(self.apikey_rotate), methods=["POST"]),
            Route(f"{p}/apikeys/{{prefix}}/revoke", self._wrap(self.apikey_revoke), methods=["POST"]),
            Route(f"{p}/issuers", self._wrap(self.issuers_), methods=["GET", "POST"]),
            Route(f"{p}/roles", self._wrap(self.roles_), methods=["GET"]),
        ]
