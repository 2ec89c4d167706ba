"""OpenID Connect discovery, JWKS and protected-resource metadata (RFC 8414 / RFC 9728)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.identity.oauth import SCOPES
from gateway.identity.tokens import ALGORITHM


async def openid_configuration(request: Request) -> JSONResponse:
    issuer = request.app.state.gateway.settings.issuer
    return JSONResponse(
        {
            "issuer": issuer,
            "token_endpoint": f"{issuer}/oauth/token",
            "jwks_uri": f"{issuer}/.well-known/jwks.json",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": list(SCOPES),
            "id_token_signing_alg_values_supported": [ALGORITHM],
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
        }
    )


async def jwks(request: Request) -> JSONResponse:
    return JSONResponse(request.app.state.gateway.tokens.jwks())


async def protected_resource(request: Request) -> JSONResponse:
    issuer = request.app.state.gateway.settings.issuer
    return JSONResponse(
        {
            "resource": f"{issuer}/share/graphql",
            "authorization_servers": [issuer],
            "scopes_supported": ["share:read"],
            "bearer_methods_supported": ["header"],
        }
    )
