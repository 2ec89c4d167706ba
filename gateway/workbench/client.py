"""The workbench's OAuth client: `shuqiao-graphiql`, first-party and public (no secret; the
browser proves possession with PKCE S256), authorization code only, scope share:read, one
redirect URI `{issuer}/graphiql/share`. Made by `shuqiao demo init` and, on a store made before
it existed, by the first load of /graphiql/share."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.web.session import ensure_public_client

CLIENT_ID = "shuqiao-graphiql"
CLIENT_NAME = "数桥查询工作台 Shuqiao query workbench"
SCOPES = ("share:read",)
REDIRECT_PATH = "/graphiql/share"


def redirect_uri(issuer: str) -> str:
    return issuer.rstrip("/") + REDIRECT_PATH


async def ensure_workbench_client(engine: AsyncEngine, issuer: str) -> None:
    await ensure_public_client(engine, CLIENT_ID, CLIENT_NAME, SCOPES, redirect_uri(issuer))
