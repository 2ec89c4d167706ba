"""The identity routes, for the app factory to mount under /oauth, /admin/identity and
/static/identity."""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Route
from starlette.staticfiles import StaticFiles

from gateway.identity.admin import AdminAPI
from gateway.identity.oauth import OAuthEndpoints
from gateway.identity.pages import Pages
from gateway.identity.service import Identity

STATIC = Path(__file__).resolve().parents[1] / "static" / "identity"


def oauth_routes(identity: Identity, first_party: frozenset[str] = frozenset()) -> list[BaseRoute]:
    """Under `Mount("/oauth")`: the authorization server's endpoints and the sign-in pages
    (`first_party`: the gateway's own clients, which sign a person in without a consent page)."""
    oauth = OAuthEndpoints(identity)
    pages = Pages(identity, secure_cookies=identity.issuer.startswith("https://"), first_party=first_party)
    return [
        Route("/token", oauth.token, methods=["GET", "POST"]),
        Route("/revoke", oauth.revoke, methods=["GET", "POST"]),
        Route("/introspect", oauth.introspect, methods=["GET", "POST"]),
        Route("/authorize", pages.authorize, methods=["GET", "POST"]),
        Route("/login", pages.login, methods=["GET", "POST"]),
        Route("/logout", pages.logout, methods=["GET", "POST"]),
        Route("/userinfo", pages.userinfo, methods=["GET", "POST"]),
    ]


def admin_routes(identity: Identity) -> list[BaseRoute]:
    """Under `Mount("/admin/identity")`: clients, people, API keys, issuers, roles."""
    return list(AdminAPI(identity).routes())


def identity_static() -> StaticFiles:
    return StaticFiles(directory=STATIC)
