"""OpenID Connect discovery, JWKS and protected-resource metadata (RFC 8414 / RFC 9728)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.identity.oauth import AUTH_METHODS
from gateway.identity.roles import API_SCOPES, OIDC_SCOPES
from gateway.identity.tokens import ALGORITHM


async def openid_configuration(request: Request) -> JSONResponse:
    issuer = request.app.state.gateway.settings.issuer
    return JSONResponse(
        {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/oauth/authorize",
            "token_endpoint": f"{issuer}/oauth/token",
            "revocation_endpoint": f"{issuer}/oauth/revoke",
            "introspection_endpoint": f"{issuer}/oauth/introspect",
            "userinfo_endpoint": f"{issuer}/oauth/userinfo",
            "jwks_uri": f"{issuer}/.well-known/jwks.json",
            "grant_types_supported": [
                "client_credentials",
                "authorization_code",
                "refresh_token",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": [*AUTH_METHODS, "none"],
            "token_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256", "PS256", "EdDSA"],
            "revocation_endpoint_auth_methods_supported": [*AUTH_METHODS, "none"],
            "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
            "scopes_supported": [*OIDC_SCOPES, *API_SCOPES],
            "claims_supported": ["sub", "name", "preferred_username", "dept", "enterprise", "roles"],
            "id_token_signing_alg_values_supported": [ALGORITHM],
            "subject_types_supported": ["public"],
        },
        headers={"Cache-Control": "public, max-age=300"},
    )


async def jwks(request: Request) -> JSONResponse:
    return JSONResponse(
        request.app.state.gateway.tokens.jwks(), headers={"Cache-Control": "public, max-age=300"}
    )


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
