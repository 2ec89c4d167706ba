"""Department subgraphs (Apollo Federation v2 SDL) for teams composing their own supergraph.

A subgraph shows every field of the provider's own datasets, including unshared ones, so
only that department (or a token with the admin scope) may read it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from gateway.identity.tokens import InvalidToken
from schema.build import build_subgraph


async def subgraph_sdl(request: Request) -> Response:
    state = request.app.state.gateway
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="shuqiao"'}
    if scheme.lower() != "bearer" or not token:
        return JSONResponse({"error": "a bearer token is required"}, status_code=401, headers=challenge)
    try:
        claims = state.tokens.verify(token.strip())
    except InvalidToken:
        return JSONResponse({"error": "invalid_token"}, status_code=401, headers=challenge)
    department = request.path_params["department"]
    if claims.department != department and "admin" not in claims.scopes:
        return JSONResponse({"error": "only the providing department may read its subgraph"}, status_code=403)
    catalogue = await state.registry.refresh()
    if department not in catalogue.departments:
        return JSONResponse({"error": f"no department {department!r}"}, status_code=404)
    return PlainTextResponse(
        build_subgraph(catalogue, department).sdl(), media_type="text/plain; charset=utf-8"
    )
