"""The authorization server on Authlib's framework-agnostic core (RFC 6749 and friends).

Authlib ships no Starlette server integration and its hooks are synchronous; this module
is the small adapter. Each OAuth request runs Authlib in a worker thread
(`anyio.to_thread`), and the hooks reach the async database through `anyio.from_thread`,
so the event loop never blocks on Authlib and Authlib never sees a coroutine.

- client credentials with client_secret_basic, client_secret_post and private_key_jwt (RFC 7523)
- authorization code with PKCE, S256 only (RFC 7636), for people; ID tokens (OIDC Core)
- refresh tokens rotated on every use; a used one presented again revokes its family
- revocation (RFC 7009) and introspection (RFC 7662)
"""

from __future__ import annotations

import base64
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from urllib.parse import unquote

import anyio
import anyio.from_thread
import anyio.to_thread
import orjson
from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import (
    AuthorizationCodeMixin,
    ClientMixin,
    InvalidClientError,
    OAuth2Request,
    TokenMixin,
    grants,
)
from authlib.oauth2.rfc6749.errors import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc6749.requests import OAuth2Payload
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from starlette.requests import Request
from starlette.responses import Response

from gateway.identity.audit import AuditUnavailable
from gateway.identity.bearer import is_live, verify_token
from gateway.identity.models import AuthorizationCode, OAuthClient, RefreshToken, User
from gateway.identity.roles import API_SCOPES, OIDC_SCOPES, InvalidScope, token_scopes
from gateway.identity.tokens import InvalidToken, TokenClaims, peek_claims
from gateway.problems import Problem

if TYPE_CHECKING:
    from gateway.identity.service import Identity

SCOPES = API_SCOPES
SECRET_METHODS = ["client_secret_basic", "client_secret_post"]
AUTH_METHODS = [*SECRET_METHODS, "private_key_jwt"]
ASSERTION_ALGORITHMS = ["ES256", "RS256", "PS256", "EdDSA"]
T = TypeVar("T")
log = logging.getLogger("shuqiao.identity")


def _bridge(fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
    """From Authlib's worker thread, run one coroutine on the event loop and wait."""
    return anyio.from_thread.run(fn, *args)


class Client(ClientMixin):
    def __init__(self, row: OAuthClient, hasher: Any) -> None:
        self.row = row
        self._hasher = hasher

    @property
    def client_id(self) -> str:
        return self.row.client_id

    def get_client_id(self) -> str:
        return self.row.client_id

    def _grants(self) -> set[str]:
        return set(self.row.grant_types.split())

    def get_default_redirect_uri(self) -> str | None:
        uris = self.row.redirect_uris.split()
        return uris[0] if uris else None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """At the authorization endpoint (no person yet): what this client may ask for;
        None (invalid_scope) when that is nothing. The person's roles narrow it later."""
        try:
            return _join(token_scopes(scope, registered=self.row.scopes, oidc=self.oidc))
        except InvalidScope:
            return None

    @property
    def oidc(self) -> bool:
        """openid/profile: only for people, through an authorization-code client."""
        return "authorization_code" in self._grants()

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.row.redirect_uris.split()

    def check_client_secret(self, client_secret: str) -> bool:
        # one hash check whether or not the client has a secret: the timing says nothing
        matches = self._hasher.verify(client_secret, self.row.secret_hash or _UNKNOWN_CLIENT_HASH)
        return bool(self.row.secret_hash) and matches

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return not self.row.disabled and method in self.row.auth_methods.split()

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self._grants()

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self._grants() and not self.row.disabled


class _CodeRecord(AuthorizationCodeMixin):
    def __init__(self, row: AuthorizationCode) -> None:
        self.row = row

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return self.row.scope

    def get_nonce(self) -> str | None:
        return self.row.nonce

    def get_auth_time(self) -> int:
        return self.row.auth_time


class RefreshRecord(TokenMixin):
    kind = "refresh_token"

    def __init__(self, row: RefreshToken) -> None:
        self.row = row

    def check_client(self, client: Client) -> bool:
        return self.row.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.row.scope

    def get_expires_in(self) -> int:
        return max(0, int(self.row.expires_at.timestamp() - time.time()))

    def is_expired(self) -> bool:
        exp = self.row.expires_at
        return (exp.timestamp() if exp.tzinfo else exp.replace(tzinfo=None).timestamp()) < time.time()

    def is_revoked(self) -> bool:
        return self.row.revoked_at is not None or self.row.used_at is not None


class AccessRecord(TokenMixin):
    kind = "access_token"

    def __init__(self, claims: TokenClaims, revoked: bool) -> None:
        self.claims = claims
        self.revoked = revoked

    def check_client(self, client: Client) -> bool:
        return self.claims.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return " ".join(sorted(self.claims.scopes))

    def get_expires_in(self) -> int:
        return max(0, self.claims.expires_at - int(time.time()))

    def is_expired(self) -> bool:
        return self.claims.expires_at < time.time()

    def is_revoked(self) -> bool:
        return self.revoked


class _Payload(OAuth2Payload):
    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._data: dict[str, str] = {}
        self._datalist: dict[str, list[str]] = {}
        for k, v in items:
            self._data.setdefault(k, v)
            self._datalist.setdefault(k, []).append(v)

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> dict[str, list[str]]:
        return self._datalist


class StarletteOAuth2Request(OAuth2Request):
    def __init__(self, request: Request, form: list[tuple[str, str]], *, use_query: bool = False) -> None:
        # TLS terminates at the data centre's ingress proxy, in front of the gateway;
        # Authlib's https check would refuse every request that reaches us behind it.
        super().__init__(
            method=request.method, uri=str(request.url.replace(scheme="https")), headers=request.headers
        )
        self._form = dict(form)
        self._args = dict(request.query_params)
        self.payload = _Payload(list(request.query_params.multi_items()) if use_query else form)

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class _ClientCredentials(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = AUTH_METHODS


class _AuthorizationCode(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = [*AUTH_METHODS, "none"]
    server: _Server

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        user: User = request.user
        client: Client = request.client
        scope = _join(_granted(request.scope, client, user))
        data = request.payload.data
        row = AuthorizationCode(
            code_hash="",
            client_id=request.client.get_client_id(),
            user_id=user.id,
            redirect_uri=request.payload.redirect_uri or "",
            scope=scope,
            nonce=data.get("nonce"),
            code_challenge=data["code_challenge"],
            code_challenge_method=data.get("code_challenge_method", "S256"),
            auth_time=int(getattr(request, "auth_time", 0) or time.time()),
        )
        _bridge(self.server.identity.store.save_code, code, row)

    def query_authorization_code(self, code: str, client: Client) -> _CodeRecord | None:
        row = _bridge(self.server.identity.store.take_code, code, client.get_client_id())
        return _CodeRecord(row) if row is not None else None

    def delete_authorization_code(self, authorization_code: _CodeRecord) -> None:
        """Already consumed by `query_authorization_code`: a code is good for one try."""

    def authenticate_user(self, authorization_code: _CodeRecord) -> User | None:
        user = _bridge(self.server.identity.store.user, authorization_code.row.user_id)
        return user if user is not None and not user.disabled else None


class _S256Only(CodeChallenge):
    """PKCE is required on every authorization request, and only with S256."""

    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge (S256).")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("Only code_challenge_method=S256 is accepted.")
        super().validate_code_challenge(grant, redirect_uri)

    def get_authorization_code_challenge(self, authorization_code: _CodeRecord) -> str:
        return authorization_code.row.code_challenge

    def get_authorization_code_challenge_method(self, authorization_code: _CodeRecord) -> str:
        return authorization_code.row.code_challenge_method


class _IdTokens:
    """OpenID Connect: an ID token beside the access token when `openid` was granted."""

    def __call__(self, grant: Any) -> None:
        grant.register_hook("after_create_token_response", self.process)

    def process(self, grant: Any, response: Any) -> None:
        _, token, _ = response
        if "openid" not in str(token.get("scope", "")).split():
            return
        request = grant.request
        user: User = request.user
        code: _CodeRecord = request.authorization_code
        token["id_token"] = grant.server.identity.tokens.issue_id_token(
            subject=user.id,
            client_id=request.client.get_client_id(),
            nonce=code.get_nonce(),
            auth_time=code.get_auth_time(),
            access_token=token.get("access_token"),
            userinfo=userinfo(user, token["scope"]),
        )


def _join(scopes: frozenset[str]) -> str:
    return " ".join(sorted(scopes))


def _granted(
    asked: str | None, client: Client, user: User | None, ceiling: str | None = None
) -> frozenset[str]:
    """The scope rule (gateway.identity.roles.token_scopes) with this request's client and person,
    both as stored now; nothing grantable is RFC 6749 invalid_scope."""
    try:
        return token_scopes(
            asked,
            registered=client.row.scopes,
            oidc=user is not None and client.oidc,
            roles=user.roles.split() if user is not None else None,
            ceiling=ceiling,
        )
    except InvalidScope:
        raise InvalidScopeError() from None


def userinfo(user: User, scope: str) -> dict[str, Any]:
    info: dict[str, Any] = {"sub": user.id}
    if "profile" in scope.split():
        info.update(name=user.display_name or user.username, preferred_username=user.username)
    if user.department_code:
        info["dept"] = user.department_code
    if user.enterprise_code:
        info["enterprise"] = user.enterprise_code
    info["roles"] = sorted(user.roles.split())
    return info


class _RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = [*AUTH_METHODS, "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True
    server: _Server

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshRecord | None:
        store = self.server.identity.store
        row = _bridge(store.find_refresh, refresh_token)
        if row is None or row.client_id != self.request.client.get_client_id():
            return None
        record = RefreshRecord(row)
        if row.revoked_at is not None or record.is_expired():
            return None
        # Rotation: a token is good once. Presented again (stolen, or replayed), it
        # revokes the whole family, including the access tokens issued from it.
        if not _bridge(store.use_refresh, row):
            self.server.audit_notes.update(reuse_family=row.family_id, reuse_subject=row.user_id)
            return None
        self.server.audit_notes["previous_family"] = row.family_id
        return record

    def authenticate_user(self, refresh_token: RefreshRecord) -> User | None:
        user = _bridge(self.server.identity.store.user, refresh_token.row.user_id)
        return user if user is not None and not user.disabled else None

    def issue_token(self, user: User, refresh_token: RefreshRecord) -> dict[str, Any]:
        # never wider than the original grant (the roles and the client are re-read in _generate)
        self.server.scope_ceiling = refresh_token.get_scope()
        return super().issue_token(user, refresh_token)

    def revoke_old_credential(self, refresh_token: RefreshRecord) -> None:
        """Already marked used by `authenticate_refresh_token`."""


TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 - RFC 8693 grant type
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 - a type URI
EXCHANGE_TTL = 300  # seconds: a delegated token lives no longer than one routed session needs


class _TokenExchange(grants.BaseGrant, grants.TokenEndpointMixin):
    """RFC 8693 token exchange, for federation routers (docs/federation.md): a client registered
    for this grant trades a caller's live share:read access token (`subject_token`) for a short
    one that names the caller as subject — same client id, department, person and roles — and
    the router as actor (`act.sub`). Subgraphs apply the caller's policies and record the actor.
    No actor token: the authenticated client is the actor. A delegated token is not exchanged
    again (no chains of actors), and dies with the caller's token or when the router's client
    is disabled (gateway.identity.store)."""

    GRANT_TYPE = TOKEN_EXCHANGE
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = AUTH_METHODS
    server: _Server

    def validate_token_request(self) -> None:
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError(
                f"The client is not authorized to use grant_type={self.GRANT_TYPE}."
            )
        form = self.request.payload.data
        if form.get("subject_token_type") != ACCESS_TOKEN_TYPE or not form.get("subject_token"):
            raise InvalidRequestError(f"Send subject_token with subject_token_type={ACCESS_TOKEN_TYPE}.")
        if form.get("actor_token"):
            raise InvalidRequestError("actor_token is not accepted: the authenticated client is the actor.")
        bearer = self.server.identity.share_bearer  # the one bearer check, on the subject token
        try:
            subject = _bridge(bearer.authenticate_token, form["subject_token"])
            bearer.validate_scope(subject)
        except Problem:
            raise InvalidGrantError(
                "The subject token is not a live share:read token of a department."
            ) from None
        if subject.actor is not None:
            raise InvalidGrantError("A delegated token cannot be exchanged again.")
        self.request.client = client
        self.subject = subject
        self.server.audit_notes["token"] = {
            "token_type": "access_token",
            "jti": subject.jti,
            "token_client_id": subject.client_id,
        }

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        s: TokenClaims = self.subject
        now = int(time.time())
        expires = min(s.expires_at, now + EXCHANGE_TTL)
        token, _ = self.server.identity.tokens.issue_with_claims(
            s.client_id,
            s.department,
            ["share:read"],
            subject=s.subject,
            now=now,
            roles=sorted(s.roles),
            extra={
                "exp": expires,
                "act": {"sub": self.request.client.get_client_id()},
                "parent_jti": s.jti,  # revoking the caller's token revokes this one too
            },
        )
        body = {
            "access_token": token,
            "issued_token_type": ACCESS_TOKEN_TYPE,
            "token_type": "Bearer",
            "expires_in": expires - now,
            "scope": "share:read",
        }
        return 200, body, self.TOKEN_RESPONSE_HEADER


class _PrivateKeyJWT(JWTBearerClientAssertion):
    """RFC 7523 section 2.2 client authentication with a key the client registered."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, identity: Identity) -> None:
        super().__init__(validate_jti=True, leeway=30)
        self.identity = identity

    def get_audiences(self) -> list[str]:
        iss = self.identity.issuer
        return [iss, f"{iss}/oauth/token", f"{iss}/oauth/revoke", f"{iss}/oauth/introspect"]

    def validate_jti(self, claims: Any, jti: str) -> bool:
        exp = int(claims.get("exp", 0)) if isinstance(claims.get("exp"), int) else 0
        return bool(_bridge(self.identity.replay.first_use, f"{claims['sub']}:{jti}", exp))

    def resolve_client_public_key(self, client: Client) -> KeySet:
        if not client.row.jwks:
            raise InvalidClientError(description="The client has no registered keys.")
        return KeySet.import_key_set(orjson.loads(client.row.jwks))

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=ASSERTION_ALGORITHMS)
        except (JoseError, ValueError) as err:
            raise InvalidClientError(description="The client assertion is invalid.") from err
        self.verify_claims(token.claims)
        return token.claims


class _TokenLookup:
    server: _Server
    CLIENT_AUTH_METHODS: ClassVar[list[str]] = [*AUTH_METHODS, "none"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        identity = self.server.identity
        looks_like_jwt = token_string.count(".") == 2
        if token_type_hint != "refresh_token" and looks_like_jwt:  # noqa: S105
            try:
                claims = _bridge(verify_token, identity, token_string, None)
            except InvalidToken:
                claims = None
            if claims is not None:
                self.server.audit_notes["token"] = {
                    "token_type": "access_token",
                    "jti": claims.jti,
                    "token_client_id": claims.client_id,
                }
                # revoked, or its client or person disabled: inactive (RFC 7662), nothing to revoke
                return AccessRecord(claims, not _bridge(is_live, identity, claims))
        row = _bridge(identity.store.find_refresh, token_string)
        if row is None:
            return None
        self.server.audit_notes["token"] = {
            "token_type": "refresh_token",
            "family": row.family_id,
            "token_client_id": row.client_id,
        }
        return RefreshRecord(row)


class _Revocation(_TokenLookup, RevocationEndpoint):
    def revoke_token(self, token: Any, request: OAuth2Request) -> None:
        identity = self.server.identity
        if isinstance(token, AccessRecord):
            _bridge(identity.store.revoke_jti, token.claims.jti, token.claims.expires_at)
            identity.revocations.add(token.claims.jti, token.claims.expires_at)
        else:
            _bridge(identity.store.revoke_family, token.row.family_id)
        self.server.audit_notes["revoked"] = True


class _Introspection(_TokenLookup, IntrospectionEndpoint):
    def check_permission(self, token: Any, client: Client, request: OAuth2Request) -> bool:
        # the token's own client, or a resource server registered with the admin scope
        return token.check_client(client) or "admin" in client.row.scopes.split()

    def introspect_token(self, token: Any) -> dict[str, Any]:
        if isinstance(token, AccessRecord):
            c = token.claims
            out: dict[str, Any] = {
                "active": True,
                "token_type": "Bearer",
                "scope": token.get_scope(),
                "client_id": c.client_id,
                "sub": c.subject,
                "exp": c.expires_at,
                "iss": c.issuer,
                "aud": sorted(c.audiences),
                "jti": c.jti,
                "roles": sorted(c.roles),
            }
            if c.department:
                out["dept"] = c.department
            return out
        row = token.row
        return {
            "active": True,
            "token_type": "refresh_token",
            "scope": row.scope,
            "client_id": row.client_id,
            "sub": row.user_id,
            "exp": int(row.expires_at.timestamp()),
        }


class _Server(AuthorizationServer):
    def __init__(self, identity: Identity) -> None:
        super().__init__(scopes_supported=[*API_SCOPES, *OIDC_SCOPES])
        self.identity = identity
        self._clients: dict[str, Client | None] = {}
        self._issued: dict[str, dict[str, Any]] = {}
        # what the audit event of this request needs to know (one _Server per request)
        self.audit_notes: dict[str, Any] = {}
        self.scope_ceiling: str | None = None  # refresh: the original grant's scope
        self.register_client_auth_method("private_key_jwt", _PrivateKeyJWT(identity))
        self.register_grant(_ClientCredentials)
        self.register_grant(_AuthorizationCode, [_S256Only(required=True), _IdTokens()])
        self.register_grant(_RefreshTokenGrant)
        self.register_grant(_TokenExchange)
        self.register_token_generator("default", self._generate)
        self.register_endpoint(_Revocation)
        self.register_endpoint(_Introspection)

    def _generate(
        self,
        grant_type: str,
        client: Client,
        user: User | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        scopes = sorted(_granted(scope, client, user, self.scope_ceiling))
        if user is not None:
            token, claims = self.identity.tokens.issue_with_claims(
                client.get_client_id(),
                user.department_code,
                scopes,
                subject=user.id,
                roles=user.roles.split(),
            )
        else:
            token, claims = self.identity.tokens.issue_with_claims(
                client.get_client_id(), client.row.department_code, scopes
            )
        self._issued[token] = claims
        out: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": token,
            "expires_in": self.identity.tokens.ttl,
            "scope": " ".join(scopes),
        }
        if include_refresh_token and user is not None:
            out["refresh_token"] = secrets.token_urlsafe(32)
        return out

    def query_client(self, client_id: str) -> Client | None:
        if client_id not in self._clients:
            row = _bridge(self.identity.store.client, client_id)
            if row is None:
                # As much work as checking a real client's secret, so the answer's timing does
                # not tell an unknown client from a wrong secret (the message does not either).
                self.identity.hasher.verify(client_id, _UNKNOWN_CLIENT_HASH)
            self._clients[client_id] = Client(row, self.identity.hasher) if row is not None else None
        return self._clients[client_id]

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        refresh = token.get("refresh_token")
        if not refresh or request.user is None:
            return
        claims = self._issued.get(token["access_token"], {})
        previous: RefreshRecord | None = request.refresh_token
        store = self.identity.store
        family = previous.row.family_id if previous is not None else secrets.token_hex(16)
        self.audit_notes["family"] = family

        async def save() -> None:
            await store.save_refresh(
                refresh,
                family=family,
                client_id=request.client.get_client_id(),
                user_id=request.user.id,
                scope=token.get("scope", ""),
                access_jti=claims.get("jti"),
                access_exp=claims.get("exp"),
            )

        _bridge(save)

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        return request

    def handle_response(self, status: int, body: Any, headers: Any) -> Response:
        hdrs = dict(headers or [])
        if status in (302, 303):
            return Response(
                status_code=303 if status == 302 else status, headers={"Location": hdrs["Location"]}
            )
        hdrs["Cache-Control"] = "no-store"
        hdrs["Content-Type"] = "application/json"
        return Response(orjson.dumps(body), status_code=status, headers=hdrs)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass


def _is_form(request: Request) -> bool:
    return (
        request.headers.get("content-type", "").split(";")[0].strip().lower()
        == "application/x-www-form-urlencoded"
    )


async def _form_items(request: Request) -> list[tuple[str, str]]:
    return [(k, v) for k, v in (await request.form()).multi_items() if isinstance(v, str)]


class OAuthEndpoints:
    """The HTTP side: /oauth/token, /oauth/revoke, /oauth/introspect. Each answer is
    recorded on the audit log before it leaves (gateway.identity.audit); if it cannot be,
    the caller gets 503 `temporarily_unavailable` and no token."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity

    def server(self) -> _Server:
        return _Server(self.identity)

    async def _run(
        self, request: Request, endpoint: str, call: Callable[[_Server, OAuth2Request], Response]
    ) -> Response:
        started = time.perf_counter()
        if request.method != "POST":
            return Response(status_code=405, headers={"Allow": "POST"})
        if not _is_form(request):
            return oauth_error("invalid_request", "use application/x-www-form-urlencoded", 400)
        form = await _form_items(request)
        guard = self.identity.failures
        throttled = await guard.check(request)
        if throttled is not None:  # too many failures from this address: not even tried
            try:
                await guard.record_refusal(request, throttled, endpoint, _claimed_client(request, dict(form)))
            except AuditUnavailable:
                log.exception("identity audit write failed; %s answer withheld", endpoint)
                return _audit_unavailable()
            response = oauth_error("slow_down", throttled.message, 429)
            response.headers.update(throttled.decision.headers)
            return response
        server = self.server()
        oauth_request = StarletteOAuth2Request(request, form)
        if _basic_unreadable(request):  # Authlib would raise on it (a bare 500)
            response = client_refused()
        else:
            response = _one_client_error(await anyio.to_thread.run_sync(call, server, oauth_request))
        client = oauth_request.client
        request.state.oauth_client = client.get_client_id() if client is not None else None
        if response.status_code == 401:
            await guard.failed(request)
        try:
            await self._audit(endpoint, request, dict(form), server, oauth_request, response, started)
        except AuditUnavailable:
            log.exception("identity audit write failed; %s answer withheld", endpoint)
            return _audit_unavailable()
        return response

    async def _audit(
        self,
        endpoint: str,
        request: Request,
        form: dict[str, str],
        server: _Server,
        oauth_request: OAuth2Request,
        response: Response,
        started: float,
    ) -> None:
        client: Client | None = oauth_request.client
        notes = server.audit_notes
        status = response.status_code
        error = None
        body: dict[str, Any] = {}
        with contextlib.suppress(orjson.JSONDecodeError, TypeError):
            body = orjson.loads(bytes(response.body))
        if status >= 400:
            error = str(body.get("error") or status)
        detail: dict[str, Any] = {"client_authenticated": client is not None}
        department = client.row.department_code if client is not None else None
        subject = None
        if endpoint == "token":
            detail["grant_type"] = form.get("grant_type")
            user: User | None = getattr(oauth_request, "user", None)
            subject = user.id if user is not None else None
            if notes.get("reuse_family"):
                operation = "token.refresh_reuse"
                subject = notes.get("reuse_subject")
                detail.update(family=notes["reuse_family"], family_revoked=True)
            elif status >= 400:
                operation = "token.refuse"
            else:
                refresh_grant = form.get("grant_type") == "refresh_token"
                operation = "token.refresh" if refresh_grant else "token.issue"
                claims = next(iter(server._issued.values()), {})
                department = claims.get("dept", department)
                detail.update(
                    scope=claims.get("scope", body.get("scope")),
                    audience=claims.get("aud"),
                    jti=claims.get("jti"),
                    expires_at=claims.get("exp"),
                    family=notes.get("family") if "refresh_token" in body else None,
                    previous_family=notes.get("previous_family"),
                    id_token="id_token" in body or None,
                )
        else:
            operation = "token.revoke" if endpoint == "revocation" else "token.introspect"
            detail["token_type_hint"] = form.get("token_type_hint")
            detail.update(notes.get("token") or {"found": False})
            if endpoint == "revocation":
                detail["revoked"] = bool(notes.get("revoked"))
            elif status == 200:
                detail["active"] = bool(body.get("active"))
        await self.identity.audit.record(
            operation,
            status=status,
            principal_kind="client",
            principal_id=client.get_client_id() if client is not None else _claimed_client(request, form),
            consumer=department,
            subject=subject,
            error=error,
            detail=detail,
            request=request,
            started=started,
        )

    async def token(self, request: Request) -> Response:
        return await self._run(request, "token", lambda s, r: s.create_token_response(r))

    async def revoke(self, request: Request) -> Response:
        return await self._run(
            request, "revocation", lambda s, r: s.create_endpoint_response("revocation", r)
        )

    async def introspect(self, request: Request) -> Response:
        return await self._run(
            request, "introspection", lambda s, r: s.create_endpoint_response("introspection", r)
        )


def _claimed_client(request: Request, form: dict[str, str]) -> str | None:
    """The client id a caller claimed when authentication failed (never the secret)."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            return unquote(base64.b64decode(value).decode().split(":", 1)[0])[:200] or None
        except (ValueError, UnicodeDecodeError):
            return None
    if form.get("client_id"):
        return form["client_id"][:200]
    if form.get("client_assertion"):
        try:
            sub = peek_claims(form["client_assertion"]).get("sub")
        except InvalidToken:
            return None
        return str(sub)[:200] if sub else None
    return None


# A hash no secret has (the HMAC output is 32 bytes; this is the right length and all zeros).
_UNKNOWN_CLIENT_HASH = "00" * 32
CLIENT_REFUSED = "Client authentication failed."


def client_refused() -> Response:
    """The one answer to failed client authentication, whatever failed: an unknown client, a
    wrong secret, a disabled client, a bad assertion, unreadable Basic credentials (RFC 6749
    section 5.2: 401 with a challenge)."""
    response = oauth_error("invalid_client", CLIENT_REFUSED, 401)
    response.headers["WWW-Authenticate"] = 'Basic realm="shuqiao"'
    return response


def _one_client_error(response: Response) -> Response:
    """Authlib says "does not exist" for an unknown client and something else for a wrong
    secret (400 or 401 by method): that tells a caller which client ids are real."""
    if response.status_code not in (400, 401):
        return response
    try:
        error = orjson.loads(bytes(response.body)).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return response
    return client_refused() if error == "invalid_client" else response


def _basic_unreadable(request: Request) -> bool:
    """Basic credentials that are not base64 of UTF-8 text."""
    scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        base64.b64decode(value.strip()).decode("utf-8")
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        return True
    return False


def _audit_unavailable() -> Response:
    response = oauth_error("temporarily_unavailable", "The audit log is unavailable; try again later.", 503)
    response.headers["Retry-After"] = "5"
    return response


def oauth_error(error: str, description: str, status: int) -> Response:
    return Response(
        orjson.dumps({"error": error, "error_description": description}),
        status_code=status,
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )
