"""The pages people see: sign-in and consent for the authorization-code flow
(`/oauth/authorize`, `/oauth/login`, `/oauth/logout`), and OIDC userinfo.

The sign-in session is a cookie `sq_session` = user id, sign-in time, expiry and an HMAC
under a key derived from the master key (HttpOnly, SameSite=Lax). Forms carry CSRF
tokens: a double-submit cookie on the sign-in form, an HMAC of the session on consent."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio.to_thread
from authlib.oauth2.rfc6749 import OAuth2Error
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from gateway.client_address import client_address
from gateway.identity.audit import AuditUnavailable
from gateway.identity.bearer import BearerRefused
from gateway.identity.models import User
from gateway.identity.oauth import StarletteOAuth2Request, _granted, _Server, userinfo
from gateway.identity.ratelimit import Decision

if TYPE_CHECKING:
    from gateway.identity.service import Identity

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parents[1] / "templates" / "identity"))
SESSION_COOKIE = "sq_session"
CSRF_COOKIE = "sq_login_csrf"
SESSION_SECONDS = 8 * 3600
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; form-action 'self' http: https:; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
SCOPE_TEXT = {
    "openid": "确认您的身份 confirm who you are",
    "profile": "读取姓名与用户名 read your name and username",
    "share:read": "查询共享数据 query shared data for your department",
    "catalog:write": "维护本部门目录 maintain your department's catalogue",
    "grants:approve": "审批共享申请 approve applications for your data",
    "audit:read": "查阅审计日志 read the audit log",
    "admin": "系统管理 administer the gateway",
}
log = logging.getLogger("shuqiao.identity")
GENERIC_LOGIN_ERROR = (
    "用户名或密码错误，或账户已暂时锁定。 Wrong username or password, or the account is locked for now."
)


class Pages:
    def __init__(
        self, identity: Identity, *, secure_cookies: bool = False, first_party: frozenset[str] = frozenset()
    ) -> None:
        self.identity = identity
        self.first_party = first_party  # client ids that are the gateway's own pages: no consent asked
        self._key = bytes.fromhex(identity.hasher.hash("shuqiao/session-cookie/v1"))
        self.secure = secure_cookies
        self._userinfo_bearer = identity.protector(realm="shuqiao", scopes=["openid"])

    # ------------------------------------------------------------ session cookie
    def _sign(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()

    def _session_value(self, user: User) -> str:
        now = int(time.time())
        payload = f"{user.id}.{now}.{now + SESSION_SECONDS}"
        return f"{payload}.{self._sign(payload)}"

    def _session(self, request: Request) -> tuple[str, int] | None:
        raw = request.cookies.get(SESSION_COOKIE, "")
        parts = raw.split(".")
        if len(parts) != 4:
            return None
        payload = ".".join(parts[:3])
        if not hmac.compare_digest(self._sign(payload), parts[3]):
            return None
        try:
            auth_time, exp = int(parts[1]), int(parts[2])
        except ValueError:
            return None
        return (parts[0], auth_time) if exp > time.time() else None

    def _consent_csrf(self, request: Request) -> str:
        return self._sign("consent:" + request.cookies.get(SESSION_COOKIE, ""))

    def _page(self, request: Request, name: str, ctx: dict[str, Any], status: int = 200) -> Response:
        response = TEMPLATES.TemplateResponse(request, name, ctx, status_code=status)
        response.headers.update(PAGE_HEADERS)
        return response

    # ------------------------------------------------------------ /oauth/authorize
    async def authorize(self, request: Request) -> Response:
        server = _Server(self.identity)
        session = self._session(request)
        user = await self.identity.store.user(session[0]) if session else None
        if user is not None and user.disabled:
            user = None
        oauth_request = StarletteOAuth2Request(request, [], use_query=True)
        oauth_request.auth_time = session[1] if session else None
        try:
            grant = await anyio.to_thread.run_sync(server.get_consent_grant, oauth_request, user)
        except OAuth2Error as error:
            if error.redirect_uri:
                return server.handle_error_response(oauth_request, error)
            return self._page(
                request, "error.html", {"error": error.error, "description": error.description or ""}, 400
            )
        if user is None:
            return self._login_page(request, next_url=f"{request.url.path}?{request.url.query}")
        # The gateway's own pages (the console, the officers' pages, the workbench): the person
        # signed in to use them, so there is nothing to ask; the consent is still recorded.
        first_party = grant.client.get_client_id() in self.first_party
        if request.method == "POST" or first_party:
            approved = True
            if request.method == "POST":
                form = await request.form()
                if not hmac.compare_digest(str(form.get("csrf", "")), self._consent_csrf(request)):
                    return self._page(
                        request, "error.html", {"error": "invalid_request", "description": "CSRF"}, 400
                    )
                approved = form.get("decision") == "approve"
            response = await anyio.to_thread.run_sync(
                lambda: server.create_authorization_response(
                    oauth_request, grant_user=user if approved else None, grant=grant
                )
            )
            try:
                await self.identity.audit.record(
                    "consent.grant" if approved else "consent.deny",
                    status=response.status_code,
                    principal_kind="user",
                    principal_id=user.username,
                    consumer=user.department_code or user.enterprise_code,
                    subject=user.id,
                    detail={
                        "client_id": grant.client.get_client_id(),
                        "scope": oauth_request.scope,
                        "redirect_uri": oauth_request.payload.redirect_uri,
                        **({"first_party": True} if first_party else {}),
                    },
                    request=request,
                )
            except AuditUnavailable:  # fail closed: no code leaves without its record
                log.exception("identity audit write failed; consent answer withheld")
                return self._unavailable(request)
            return response
        client = grant.client
        try:  # what this person may grant this client (the same rule as the token endpoint)
            asked = sorted(_granted(oauth_request.scope, client, user))
        except OAuth2Error as error:
            error.state = oauth_request.payload.state
            error.redirect_uri = oauth_request.payload.redirect_uri or client.get_default_redirect_uri()
            return server.handle_error_response(oauth_request, error)
        return self._page(
            request,
            "consent.html",
            {
                "client_name": client.row.name or client.client_id,
                "user_name": user.display_name or user.username,
                "department": user.department_code,
                "scopes": [(s, SCOPE_TEXT.get(s, "")) for s in asked],
                "csrf": self._consent_csrf(request),
                "action": f"{request.url.path}?{request.url.query}",
                "redirect_uri": oauth_request.payload.redirect_uri or client.get_default_redirect_uri(),
            },
        )

    def _unavailable(self, request: Request) -> Response:
        response = self._page(
            request,
            "error.html",
            {
                "error": "temporarily_unavailable",
                "description": "审计日志不可用 The audit log is unavailable.",
            },
            503,
        )
        response.headers["Retry-After"] = "5"
        return response

    async def _record_login(
        self, request: Request, operation: str, username: str, user: User | None, status: int
    ) -> None:
        await self.identity.audit.record(
            operation,
            status=status,
            principal_kind="user",
            principal_id=username,  # as typed; never the password
            consumer=(user.department_code or user.enterprise_code) if user is not None else None,
            subject=user.id if user is not None else None,
            error=None if operation == "login.success" else operation.split(".", 1)[1],
            request=request,
        )

    async def _throttled(self, request: Request) -> tuple[Decision, bool] | None:
        """Too many failed authentications (any endpoint) or sign-in attempts from this
        address: the refusal, and whether it is the first of its window (the one recorded)."""
        throttled = await self.identity.failures.check(request)
        if throttled is not None:
            return throttled.decision, throttled.record
        address = client_address(request) or "unknown"
        attempts = await self.identity.limiter.for_login(address)
        if attempts.allowed:
            return None
        return attempts, await self.identity.limiter.first_refusal(address)

    # ------------------------------------------------------------ /oauth/login
    def _login_page(
        self, request: Request, *, next_url: str, error: str = "", username: str = "", status: int = 200
    ) -> Response:
        csrf = secrets.token_urlsafe(24)
        response = self._page(
            request,
            "login.html",
            {"csrf": csrf, "next": next_url, "error": error, "username": username},
            status,
        )
        response.set_cookie(
            CSRF_COOKIE, csrf, httponly=True, samesite="strict", secure=self.secure, path="/oauth/login"
        )
        return response

    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            return self._login_page(request, next_url=_safe_next(request.query_params.get("next", "")))
        form = await request.form()
        next_url = _safe_next(str(form.get("next", "")))
        username = str(form.get("username", ""))[:100]
        csrf = str(form.get("csrf", ""))
        if not csrf or not hmac.compare_digest(csrf, request.cookies.get(CSRF_COOKIE, "")):
            return self._login_page(
                request, next_url=next_url, error="表单已过期 The form expired; try again.", status=400
            )
        refusal = await self._throttled(request)
        if refusal is not None:
            decision, record = refusal
            try:
                if record:  # one event per refused burst, not one per attempt
                    await self._record_login(request, "login.throttled", username, None, 429)
            except AuditUnavailable:
                log.exception("identity audit write failed; sign-in answer withheld")
                return self._unavailable(request)
            response = self._login_page(
                request, next_url=next_url, error="尝试过多 Too many attempts; wait a minute.", status=429
            )
            response.headers["Retry-After"] = str(decision.retry_after)
            return response
        result = await self.identity.users.authenticate(username, str(form.get("password", "")))
        operation = "login.success" if result.user else ("login.locked" if result.locked else "login.failure")
        if result.user is None:
            await self.identity.failures.failed(request)
        try:
            await self._record_login(
                request, operation, username, result.user, 303 if result.user is not None else 401
            )
        except AuditUnavailable:  # fail closed: no session without its record
            log.exception("identity audit write failed; sign-in answer withheld")
            return self._unavailable(request)
        if result.user is None:
            return self._login_page(
                request, next_url=next_url, error=GENERIC_LOGIN_ERROR, username=username, status=401
            )
        response = RedirectResponse(next_url or "/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            self._session_value(result.user),
            max_age=SESSION_SECONDS,
            httponly=True,
            samesite="lax",
            secure=self.secure,
            path="/oauth",
        )
        response.delete_cookie(CSRF_COOKIE, path="/oauth/login")
        return response

    async def logout(self, request: Request) -> Response:
        response = RedirectResponse("/oauth/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/oauth")
        return response

    # ------------------------------------------------------------ /oauth/userinfo
    async def userinfo(self, request: Request) -> Response:
        try:
            claims = await self._userinfo_bearer.validate_request(request)
        except BearerRefused as refused:
            return Response(status_code=refused.status, headers=refused.headers)
        user = await self.identity.store.user(claims.subject)
        if user is None:  # an openid token is a person's; a client's has nobody to describe
            challenge = 'Bearer realm="shuqiao", error="insufficient_scope", scope="openid"'
            return Response(status_code=403, headers={"WWW-Authenticate": challenge})
        return JSONResponse(userinfo(user, " ".join(claims.scopes)), headers={"Cache-Control": "no-store"})


def _safe_next(value: str) -> str:
    """Only back to our own authorization endpoint: never an open redirect."""
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or parts.path != "/oauth/authorize":
        return "/oauth/authorize" if not value else ""
    return value
