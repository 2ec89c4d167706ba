"""Every identity route, for the app factory to list in one line."""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gateway.identity.admin import AdminAPI
from gateway.identity.oauth import OAuthEndpoints
from gateway.identity.pages import Pages
from gateway.identity.service import Identity

STATIC = Path(__file__).resolve().parents[1] / "static" / "identity"


def identity_routes(identity: Identity) -> list[BaseRoute]:
    oauth = OAuthEndpoints(identity)
    pages = Pages(identity, secure_cookies=identity.issuer.startswith("https://"))
    return [
        Route("/oauth/token", oauth.token, methods=["GET", "POST"]),
        Route("/oauth/revoke", oauth.revoke, methods=["GET", "POST"]),
        Route("/oauth/introspect", oauth.introspect, methods=["GET", "POST"]),
        Route("/oauth/authorize", pages.authorize, methods=["GET", "POST"]),
        Route("/oauth/login", pages.login, methods=["GET", "POST"]),
        Route("/oauth/logout", pages.logout, methods=["GET", "POST"]),
        Route("/oauth/userinfo", pages.userinfo, methods=["GET", "POST"]),
        *AdminAPI(identity).routes(),
        Mount("/static/identity", StaticFiles(directory=STATIC), name="identity-static"),
    ]
