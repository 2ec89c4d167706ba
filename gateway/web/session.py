"""Sign-in for the gateway's own pages (the officers' console first; the portal next), built once.

A page with no session sends the browser to `GET /web/login?next=/audit`, which starts the
authorization-code flow with PKCE (S256) at our own `/oauth/authorize` as the first-party public
client `shuqiao-web` (redirect URI `{issuer}/web/callback`). The person signs in on the ordinary
sign-in page. `/web/callback` checks the state, redeems the code at the token endpoint (the same
handler `/oauth/token` runs, so the exchange is audited like any other), and opens a server-side
session:

- the browser holds `sq_web`: an opaque random id (HttpOnly, SameSite=Lax, Secure when the issuer
  is https); the `web_session` row holds its keyed hash, the person, roles, department, scopes,
  the access token (sealed) and its jti, created / last seen / expiry;
- a session ends at the first of: its absolute lifetime (SHUQIAO_WEB_SESSION_SECONDS), the access
  token's expiry, SHUQIAO_WEB_SESSION_IDLE_SECONDS without a request, sign-out;
- every request on a session re-checks the stored token with the one bearer check
  (`BearerProtector.authenticate_token`: signature, expiry, and liveness through the revocation
  list), so revoking the token or disabling the person or client ends the session within the
  list's poll interval (one second);
- state-changing requests on a session need the session's CSRF token in `X-CSRF-Token` (or a
  `csrf` form field), and an `Origin`, when sent, of this gateway.

`SessionOrBearer` is the check pages and their APIs use: a bearer token when the request sends
one (machines, as before), else the session cookie; the endpoint's scope is checked either way."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

import orjson
import sqlmodel
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from catalogue.models import Department
from gateway.db import table_of, utc_aware
from gateway.identity.audit import AuditUnavailable
from gateway.identity.bearer import BearerProtector, BearerRefused
from gateway.identity.models import OAuthClient
from gateway.identity.oauth import OAuthEndpoints
from gateway.identity.tokens import TokenClaims
from gateway.problems import Problem, problem_response
from gateway.web.models import WebSession
from keys import sm4
from keys.errors import DecryptionError
from keys.sm3 import hmac_sm3

if TYPE_CHECKING:
    from gateway.identity.service import Identity

log = logging.getLogger("shuqiao.web")

WEB_CLIENT_ID = "shuqiao-web"
WEB_SCOPES = ("share:read", "catalog:write", "grants:approve", "audit:read", "enterprise")  # never admin
COOKIE = "sq_web"
LOGIN_COOKIE = "sq_web_login"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOGIN_SECONDS = 600  # to finish signing in once /web/login sent the browser off
TOUCH_SECONDS = 30  # last_seen_at is written at most this often per session
SEAL_LABEL = b"shuqiao/web-session-token/v1"
SESSIONS = table_of(WebSession)


def _now() -> datetime:
    return datetime.now(UTC)


def safe_next(value: str | None, default: str = "/audit") -> str:
    """A path on this gateway, never another site (no scheme, no host, no `//`, no backslash, and
    no whitespace or control character, which browsers drop: "/", a tab, "/evil" would become `//evil`)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        return default
    parts = urlsplit(value)
    return value if not parts.scheme and not parts.netloc else default


class SessionRefused(BearerRefused):
    """No session, or one that ended: 401, and pages send the browser to sign in."""

    def __init__(self, message: str = "Sign in first.") -> None:
        super().__init__(401, message, 'Bearer realm="shuqiao-web"')


async def ensure_public_client(
    engine: AsyncEngine, client_id: str, name: str, scopes: tuple[str, ...], redirect: str
) -> None:
    """A first-party public client (PKCE, no secret, authorization code only) with one redirect
    URI, which follows the issuer. Idempotent. A client row names a department; a first-party
    client's is only bookkeeping (a person's token carries the person's department), so it is the
    first department there is."""
    async with AsyncSession(engine, expire_on_commit=False) as s:
        row = await s.get(OAuthClient, client_id)
        if row is not None:  # a store made before a page's scope existed gets it here
            wanted = " ".join(scopes)
            if row.redirect_uris != redirect or row.scopes != wanted:
                row.redirect_uris = redirect
                row.scopes = wanted
                s.add(row)
                await s.commit()
            return
        first = sqlmodel.select(Department.code).order_by(Department.code).limit(1)
        dept = (await s.exec(first)).first()
        if dept is None:
            raise Problem(503, "No department exists yet; the web sign-in needs one.", "UNAVAILABLE")
        s.add(
            OAuthClient(
                client_id=client_id,
                secret_hash="",
                name=name,
                department_code=str(dept),
                scopes=" ".join(scopes),
                auth_methods="none",
                grant_types="authorization_code",
                redirect_uris=redirect,
            )
        )
        await s.commit()


async def ensure_web_client(engine: AsyncEngine, issuer: str) -> None:
    """The `shuqiao-web` public client, redirect URI `{issuer}/web/callback`."""
    redirect = f"{issuer.rstrip('/')}/web/callback"
    await ensure_public_client(engine, WEB_CLIENT_ID, "数桥网页 Shuqiao web pages", WEB_SCOPES, redirect)


class WebSessions:
    def __init__(
        self,
        identity: Identity,
        master_key: bytes,
        *,
        absolute_seconds: int = 8 * 3600,
        idle_seconds: int = 1800,
    ) -> None:
        self.identity = identity
        self.engine = identity.engine
        self.issuer = identity.issuer.rstrip("/")
        self.secure = self.issuer.startswith("https://")
        self.absolute = timedelta(seconds=absolute_seconds)
        self.idle = timedelta(seconds=idle_seconds)
        self._seal_key = hmac_sm3(master_key, SEAL_LABEL)[: sm4.KEY_SIZE]
        self._sign_key = hmac_sm3(master_key, b"shuqiao/web-login-state/v1")
        # no scope: whether the token is genuine and live; each endpoint checks its own scope
        self.tokens = identity.protector(realm="shuqiao-web")
        self._client_ready = False

    def routes(self) -> list[Route]:
        """Under `Mount("/web")`."""
        return [
            Route("/login", self.login),
            Route("/callback", self.callback),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/session", self.whoami),
        ]

    # ------------------------------------------------------------ helpers
    def _id_hash(self, session_id: str) -> str:
        return self.identity.hasher.hash("web-session:" + session_id)

    def _seal(self, id_hash: str, token: str) -> str:
        blob = sm4.encrypt(self._seal_key, token.encode(), aad=id_hash.encode())
        return base64.urlsafe_b64encode(blob).decode()

    def _open(self, id_hash: str, sealed: str) -> str | None:
        try:
            blob = base64.urlsafe_b64decode(sealed)
            return sm4.decrypt(self._seal_key, blob, aad=id_hash.encode()).decode()
        except (DecryptionError, ValueError):
            return None

    def _sign(self, payload: str) -> str:
        return hmac.new(self._sign_key, payload.encode(), hashlib.sha256).hexdigest()

    @property
    def redirect_uri(self) -> str:
        return f"{self.issuer}/web/callback"

    # ------------------------------------------------------------ GET /web/login
    async def login(self, request: Request) -> Response:
        if not self._client_ready:
            await ensure_web_client(self.engine, self.issuer)
            self._client_ready = True
        next_url = safe_next(request.query_params.get("next"))
        state = secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        nxt = base64.urlsafe_b64encode(next_url.encode()).decode()
        payload = f"{state}.{verifier}.{nxt}.{int(time.time()) + LOGIN_SECONDS}"
        query = urlencode(
            {
                "response_type": "code",
                "client_id": WEB_CLIENT_ID,
                "redirect_uri": self.redirect_uri,
                "scope": "openid profile " + " ".join(WEB_SCOPES),
                "state": state,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        response = RedirectResponse(f"/oauth/authorize?{query}", status_code=303)
        response.headers["Cache-Control"] = "no-store"
        response.set_cookie(
            LOGIN_COOKIE,
            f"{payload}.{self._sign(payload)}",
            max_age=LOGIN_SECONDS,
            httponly=True,
            samesite="lax",
            secure=self.secure,
            path="/web/callback",
        )
        return response

    # ------------------------------------------------------------ GET /web/callback
    def _login_state(self, request: Request) -> tuple[str, str, str] | None:
        parts = request.cookies.get(LOGIN_COOKIE, "").split(".")
        if len(parts) != 5:
            return None
        payload = ".".join(parts[:4])
        if not hmac.compare_digest(self._sign(payload), parts[4]):
            return None
        state, verifier, nxt, exp = parts[:4]
        if not exp.isdigit() or int(exp) < time.time():
            return None
        try:
            next_url = base64.urlsafe_b64decode(nxt).decode()
        except ValueError:
            return None
        return state, verifier, safe_next(next_url)

    async def callback(self, request: Request) -> Response:
        started = self._login_state(request)
        params = request.query_params
        if started is None or not hmac.compare_digest(params.get("state", ""), started[0]):
            return self._error(400, "登录已过期或无效 The sign-in expired or is not this browser's.")
        if params.get("error") or not params.get("code"):
            return self._error(403, "未获授权 Sign-in was refused or cancelled.")
        token = await self._exchange(request, params["code"], started[1])
        if token is None:
            return self._error(400, "登录失败 The sign-in could not be completed; sign in again.")
        try:
            claims = await self.tokens.authenticate_token(token)
        except BearerRefused:
            return self._error(400, "登录失败 The sign-in could not be completed; sign in again.")
        user = await self.identity.store.user(claims.subject)
        if user is None or user.disabled:
            return self._error(403, "账户不可用 This account cannot sign in.")
        session_id = secrets.token_urlsafe(32)
        id_hash = self._id_hash(session_id)
        now = _now()
        expires = min(now + self.absolute, datetime.fromtimestamp(claims.expires_at, UTC))
        row = WebSession(
            id_hash=id_hash,
            user_id=user.id,
            username=user.username,
            display_name=user.display_name or user.username,
            roles=" ".join(sorted(claims.roles or user.roles.split())),
            department=claims.department,
            scopes=" ".join(sorted(claims.scopes)),
            jti=claims.jti,
            token_sealed=self._seal(id_hash, token),
            csrf=secrets.token_urlsafe(24),
            created_at=now,
            last_seen_at=now,
            expires_at=expires,
        )
        try:
            await self._record(request, "web.session.start", 303, row)
        except AuditUnavailable:  # fail closed: no session without its record
            return self._error(503, "审计日志不可用 The audit log is unavailable; try again.")
        async with AsyncSession(self.engine) as s:
            s.add(row)
            await s.commit()
        async with self.engine.begin() as conn:  # ended sessions are kept a day, then dropped
            await conn.execute(delete(SESSIONS).where(SESSIONS.c.expires_at < now - timedelta(days=1)))
        response = RedirectResponse(started[2], status_code=303)
        response.headers["Cache-Control"] = "no-store"
        response.delete_cookie(LOGIN_COOKIE, path="/web/callback")
        response.set_cookie(
            COOKIE,
            session_id,
            max_age=max(1, int((expires - now).total_seconds())),
            httponly=True,
            samesite="lax",
            secure=self.secure,
            path="/",
        )
        return response

    async def _exchange(self, request: Request, code: str, verifier: str) -> str | None:
        """Redeem the code with the token endpoint's own handler (audited as `token.issue`)."""
        body = urlencode(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.redirect_uri,
                "client_id": WEB_CLIENT_ID,
                "code_verifier": verifier,
            }
        ).encode()
        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": "POST",
            "scheme": request.url.scheme,
            "path": "/oauth/token",
            "raw_path": b"/oauth/token",
            "root_path": "",
            "query_string": b"",
            "headers": [
                (b"host", request.headers.get("host", "localhost").encode("latin-1")),
                (b"content-type", b"application/x-www-form-urlencoded"),
                (b"content-length", str(len(body)).encode()),
            ],
            "client": request.scope.get("client"),
            "server": request.scope.get("server"),
            "state": dict(request.scope.get("state") or {}),
        }
        sent = False

        async def receive() -> dict[str, object]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        response = await OAuthEndpoints(self.identity).token(Request(scope, receive))
        if response.status_code != 200:
            log.info("web sign-in: the token endpoint answered %s", response.status_code)
            return None
        token = orjson.loads(bytes(response.body)).get("access_token")
        return str(token) if token else None

    def _error(self, status: int, message: str) -> Response:
        html = (
            '<!doctype html><html lang="zh-CN"><meta charset="utf-8"><title>数桥 登录</title>'
            f'<p>{message}</p><p><a href="/web/login">重新登录 Sign in again</a></p></html>'
        )
        return Response(
            html,
            status_code=status,
            media_type="text/html; charset=utf-8",
            headers={"Cache-Control": "no-store"},
        )

    async def _record(self, request: Request, operation: str, status: int, row: WebSession) -> None:
        await self.identity.audit.record(
            operation,
            status=status,
            principal_kind="user",
            principal_id=row.username,
            consumer=row.department,
            subject=row.user_id,
            detail={"client_id": WEB_CLIENT_ID, "jti": row.jti, "expires_at": row.expires_at.isoformat()},
            request=request,
        )

    # ------------------------------------------------------------ the session on each request
    def has_cookie(self, request: Request) -> bool:
        return bool(request.cookies.get(COOKIE))

    async def authenticate(self, request: Request) -> tuple[TokenClaims, WebSession]:
        """The claims of the session's access token, re-checked now; SessionRefused (401) when
        there is no live session."""
        session_id = request.cookies.get(COOKIE, "")
        if not session_id:
            raise SessionRefused()
        id_hash = self._id_hash(session_id)
        now = _now()
        async with AsyncSession(self.engine, expire_on_commit=False) as s:
            row = await s.get(WebSession, id_hash)
        if row is None or row.revoked_at is not None:
            raise SessionRefused()
        if utc_aware(row.expires_at) <= now or utc_aware(row.last_seen_at) + self.idle <= now:
            raise SessionRefused("会话已过期 The session expired; sign in again.")
        token = self._open(id_hash, row.token_sealed)
        if token is None:
            raise SessionRefused()
        try:
            claims = await self.tokens.authenticate_token(token)
        except BearerRefused:  # revoked, expired, the person or client disabled
            raise SessionRefused("会话已失效 The session ended; sign in again.") from None
        if (now - utc_aware(row.last_seen_at)).total_seconds() >= TOUCH_SECONDS:
            async with self.engine.begin() as conn:
                touch = update(SESSIONS).where(SESSIONS.c.id_hash == id_hash).values(last_seen_at=now)
                await conn.execute(touch)
        return claims, row

    def check_csrf(self, request: Request, row: WebSession, form_token: str | None = None) -> None:
        """State-changing requests on a session: the session's CSRF token, and our own Origin."""
        origin = request.headers.get("origin")
        if origin is not None and origin not in (self.issuer, _origin(request)):
            raise Problem(403, "Cross-site request refused.", "FORBIDDEN")
        sent = request.headers.get(CSRF_HEADER) or form_token or ""
        if not sent or not hmac.compare_digest(sent, row.csrf):
            raise Problem(403, "The CSRF token is missing or wrong; reload the page.", "FORBIDDEN")

    # ------------------------------------------------------------ GET /web/session
    async def whoami(self, request: Request) -> Response:
        try:
            claims, row = await self.authenticate(request)
        except Problem as problem:
            return problem_response(problem)
        body = {
            "user": row.username,
            "user_id": row.user_id,
            "display_name": row.display_name,
            "roles": row.roles.split(),
            "department": row.department,
            "scopes": sorted(claims.scopes),
            "expires_at": utc_aware(row.expires_at).isoformat(),
            "csrf": row.csrf,
        }
        headers = {"Cache-Control": "no-store"}
        return Response(orjson.dumps(body), media_type="application/json", headers=headers)

    # ------------------------------------------------------------ POST /web/logout
    async def logout(self, request: Request) -> Response:
        """End the session and revoke its access token, then end the sign-in at /oauth/logout."""
        form_token = None
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            form_token = str((await request.form()).get("csrf", "")) or None
        try:
            _, row = await self.authenticate(request)
            self.check_csrf(request, row, form_token)
        except SessionRefused:
            row = None
        except Problem as problem:
            return problem_response(problem)
        if row is not None:
            async with self.engine.begin() as conn:
                await conn.execute(
                    update(SESSIONS).where(SESSIONS.c.id_hash == row.id_hash).values(revoked_at=_now())
                )
            exp = int(utc_aware(row.expires_at).timestamp()) + 3600
            await self.identity.store.revoke_jti(row.jti, exp)
            self.identity.revocations.add(row.jti, exp)
            try:
                await self._record(request, "web.session.end", 303, row)
            except AuditUnavailable:
                log.exception("identity audit write failed; sign-out recorded nowhere")
        response = RedirectResponse("/oauth/logout", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response


def _origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', '')}"


class SessionOrBearer:
    """The check for pages and their APIs: a bearer token when one is sent, else the session
    cookie; either way the endpoint's scope (`protector`) must be held. On a session, unsafe
    methods must pass the CSRF check. Raises the refusal (a Problem: 401, 403)."""

    def __init__(self, sessions: WebSessions, protector: BearerProtector) -> None:
        self.sessions = sessions
        self.protector = protector

    async def __call__(self, request: Request) -> TokenClaims:
        if request.headers.get("authorization") or not self.sessions.has_cookie(request):
            return await self.protector.validate_request(request)
        claims, row = await self.sessions.authenticate(request)
        request.state.web_session = row
        try:
            self.protector.validate_scope(claims)
        except BearerRefused as refused:
            refused.claims = claims
            raise
        if request.method not in SAFE_METHODS:
            try:
                self.sessions.check_csrf(request, row)
            except Problem as refused:
                refused.claims = claims  # type: ignore[attr-defined]  # who was refused, for the audit event
                raise
        return claims
