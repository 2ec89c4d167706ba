"""The token endpoint (RFC 6749 client credentials) on Authlib's framework-agnostic server.

Authlib ships no Starlette server integration: this module is the small adapter — an
OAuth2Request built from a Starlette request, and responses handed back to Starlette.
Clients are loaded (async) before Authlib runs its synchronous checks."""

from __future__ import annotations

import base64
import binascii
from typing import Any, ClassVar
from urllib.parse import unquote

import orjson
from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, OAuth2Request, grants
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from gateway.identity.models import OAuthClient
from gateway.identity.tokens import TokenService
from gateway.secrets import SecretHasher

SCOPES = ("share:read", "catalog:write", "grants:approve", "audit:read", "admin")


class Client(ClientMixin):
    def __init__(self, row: OAuthClient, hasher: SecretHasher) -> None:
        self.row = row
        self._hasher = hasher

    def get_client_id(self) -> str:
        return self.row.client_id

    def get_default_redirect_uri(self) -> str | None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        allowed = set(self.row.scopes.split())
        if not scope:
            return " ".join(sorted(allowed))
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return self._hasher.verify(client_secret, self.row.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint == "token" and method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials" and not self.row.disabled


class _ClientCredentials(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["client_secret_basic", "client_secret_post"]


class _StarletteOAuth2Request(OAuth2Request):
    def __init__(self, request: Request, form: dict[str, str]) -> None:
        # TLS terminates at the data centre's ingress proxy, in front of the gateway;
        # Authlib's https check would refuse every request that reaches us behind it.
        super().__init__(
            method=request.method, uri=str(request.url.replace(scheme="https")), headers=request.headers
        )
        self._form = form
        self._args = dict(request.query_params)
        self.payload = BasicOAuth2Payload(form)

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class _Server(AuthorizationServer):
    def __init__(self, tokens: TokenService) -> None:
        super().__init__(scopes_supported=list(SCOPES))
        self.tokens = tokens
        self._clients: dict[str, Client] = {}
        self.register_grant(_ClientCredentials)
        self.register_token_generator("default", self._generate)

    def _generate(
        self,
        grant_type: str,
        client: Client,
        user: Any = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        scope = scope or client.get_allowed_scope(None)  # no scope asked: all the client may have
        token, ttl = self.tokens.issue(
            client.row.client_id, client.row.department_code, (scope or "").split()
        )
        return {"token_type": "Bearer", "access_token": token, "expires_in": ttl, "scope": scope or ""}

    def query_client(self, client_id: str) -> Client | None:
        return self._clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """JWT access tokens are self-contained; issuing is recorded by the audit log."""

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        return request

    def handle_response(self, status: int, body: Any, headers: Any) -> Response:
        hdrs = dict(headers or [])
        hdrs.setdefault("Cache-Control", "no-store")
        hdrs["Content-Type"] = "application/json"
        return Response(orjson.dumps(body), status_code=status, headers=hdrs)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass


def _client_id_of(request: Request, form: dict[str, str]) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth[:6].lower() == "basic ":
        try:
            user = base64.b64decode(auth[6:]).decode().split(":", 1)[0]
        except (binascii.Error, UnicodeDecodeError):
            return None
        return unquote(user)
    return form.get("client_id")


class TokenEndpoint:
    def __init__(self, engine: AsyncEngine, tokens: TokenService, hasher: SecretHasher) -> None:
        self.engine = engine
        self.hasher = hasher
        self.tokens = tokens

    async def handle(self, request: Request) -> Response:
        if request.method != "POST":
            return Response(status_code=405, headers={"Allow": "POST"})
        if (
            request.headers.get("content-type", "").split(";")[0].strip()
            != "application/x-www-form-urlencoded"
        ):
            return _oauth_error("invalid_request", "use application/x-www-form-urlencoded", 400)
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        server = _Server(self.tokens)
        client_id = _client_id_of(request, form)
        if client_id:
            async with AsyncSession(self.engine) as session:
                row = await session.get(OAuthClient, client_id)
            if row is not None:
                server._clients[client_id] = Client(row, self.hasher)
        response = server.create_token_response(_StarletteOAuth2Request(request, form))
        request.state.oauth_client = client_id if client_id in server._clients else None
        return response


def _oauth_error(error: str, description: str, status: int) -> Response:
    return Response(
        orjson.dumps({"error": error, "error_description": description}),
        status_code=status,
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )
