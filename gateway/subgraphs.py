"""Department subgraphs (Apollo Federation v2 SDL) for teams composing their own supergraph.

A subgraph shows every field of the provider's own datasets, including unshared ones, so
only that department (a share:read token of its own) or a token with the admin scope may
read it. The token is checked by the one bearer check (gateway.identity.bearer): revoked
tokens and those of disabled clients or people are refused like on every other endpoint."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from gateway.identity.bearer import BearerProtector, BearerRefused
from gateway.identity.service import Identity
from schema.build import build_subgraph


def bearer(identity: Identity) -> BearerProtector:
    return identity.protector(realm="shuqiao", scopes=["share:read", "admin"])


async def subgraph_sdl(request: Request) -> Response:
    state = request.app.state.gateway
    try:
        claims = await bearer(state.identity).validate_request(request)
    except BearerRefused as refused:
        return JSONResponse({"error": refused.message}, status_code=refused.status, headers=refused.headers)
    department = request.path_params["department"]
    if "admin" not in claims.scopes and claims.department != department:
        return JSONResponse({"error": "only the providing department may read its subgraph"}, status_code=403)
    catalogue = await state.registry.refresh()
    if department not in catalogue.departments:
        return JSONResponse({"error": f"no department {department!r}"}, status_code=404)
    return PlainTextResponse(
        build_subgraph(catalogue, department).sdl(), media_type="text/plain; charset=utf-8"
    )
