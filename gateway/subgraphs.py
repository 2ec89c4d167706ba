"""Department subgraphs (Apollo Federation v2), for routers that compose the share tier.

`POST /share/subgraphs/{department}/graphql` is a subgraph a stock federation router calls:
`_service { sdl }`, `_entities(representations:)` and the department's own root fields. It
is the share tier (gateway.graphql_http) on the department's subgraph schema: the same one
bearer check (share:read, the caller's own token, forwarded by the router), the same
policies for that caller, the same audit event and the same SM2 signature. The router is not
a principal: its own credentials get nothing a caller's would not (docs/federation.md).

`GET /share/subgraphs/{department}.graphql` returns the SDL as the provider itself sees it
(every field of its own datasets, including unshared ones), so only that department or a
token with the admin scope may read it; also through the one bearer check."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from gateway.access_log import AccessEvent, answer_once_recorded
from gateway.client_address import client_address
from gateway.graphql_http import GraphQLEndpoint
from gateway.identity.bearer import BearerProtector, BearerRefused
from gateway.identity.service import Identity
from gateway.problems import Problem, problem_response
from gateway.registry import BuiltSchema
from gateway.state import GatewayState
from policies.model import Tier
from resolvers.context import Principal
from schema.build import build_subgraph

log = logging.getLogger("shuqiao")
PREFIX = "/share/subgraphs/"
# What a router may say about itself. Not authentication: recorded as a claim, never trusted.
ROUTER_HEADER = "x-shuqiao-router"


class SubgraphEndpoint(GraphQLEndpoint):
    """The share tier on one department's federated subgraph, as the caller sees it."""

    def __init__(self, state: GatewayState) -> None:
        super().__init__(Tier.SHARE, state)

    async def _schema(self, request: Request, principal: Principal) -> BuiltSchema:
        department = request.path_params["department"]
        built = await self.state.registry.subgraph(department, principal.consumer or "")
        if built is None:
            raise Problem(404, f"No department {department!r}.", "NOT_FOUND")
        return built

    def _event(self, request: Request, *args: Any) -> AccessEvent:
        event = super()._event(request, *args)
        claim = request.headers.get(ROUTER_HEADER)
        event.reads.append(
            {
                "subgraph": {
                    "department": request.path_params.get("department"),
                    # the principal is the token's caller; the actor is the router: verified when
                    # it presents a delegated token (RFC 8693 `act`), else only as it names itself
                    "actor": getattr(request.state, "token_actor", None),
                    "router": claim[:200] if claim else None,
                }
            }
        )
        return event


_CODES = {401: "UNAUTHENTICATED", 403: "FORBIDDEN", 404: "NOT_FOUND", 429: "RATE_LIMITED"}


def bearer(identity: Identity) -> BearerProtector:
    return identity.protector(realm="shuqiao", scopes=["share:read", "admin"])


async def subgraph_sdl(request: Request) -> Response:
    """The SDL, behind the failure limit, and recorded (gateway.subgraphs.record_subgraph_read)."""
    started = time.perf_counter()
    guard = request.app.state.gateway.identity.failures
    throttled = await guard.check(request)
    if throttled is not None:  # too many failed tokens from this address: not even tried
        response: Response = problem_response(
            Problem(429, throttled.message, "RATE_LIMITED", throttled.decision.headers)
        )
        if not throttled.record:  # one event per refused burst
            return response
    else:
        response = await _subgraph_sdl(request)
        if response.status_code == 401:
            await guard.failed(request)
    return await record_subgraph_read(request, response, started)


async def record_subgraph_read(request: Request, response: Response, started: float) -> Response:
    """One audit event per subgraph read (share tier, `subgraph.sdl`): who asked (the token's
    client, or anonymous), for which department, and the outcome. Fail closed: an SDL whose
    read cannot be recorded is not handed out."""
    state = request.app.state.gateway
    claims = getattr(request.state, "subgraph_claims", None)
    status = response.status_code
    event = AccessEvent(
        request_id=getattr(request.state, "request_id", ""),
        tier=Tier.SHARE.value,
        principal_kind="department" if claims is not None else "anonymous",
        principal_id=claims.client_id if claims is not None else "anonymous",
        consumer=claims.department if claims is not None else None,
        client_address=client_address(request),
        operation_name="subgraph.sdl",
        operation_type="query",
        query_digest=None,
        status=status,
        error_codes=[] if status < 400 else [_CODES.get(status, "ERROR")],
        latency_ms=round((time.perf_counter() - started) * 1000, 3),
        reads=[{"subgraph": {"department": request.path_params.get("department")}}],
        subject=claims.subject if claims is not None else None,  # as the share tier records it
    )
    return await answer_once_recorded(state.access_log, event, response)


async def _subgraph_sdl(request: Request) -> Response:
    state = request.app.state.gateway
    try:
        claims = await bearer(state.identity).validate_request(request)
    except BearerRefused as refused:
        request.state.subgraph_claims = refused.claims  # who asked, when the token was valid
        return problem_response(refused)
    request.state.subgraph_claims = claims  # for the event
    department = request.path_params["department"]
    if "admin" not in claims.scopes and claims.department != department:
        return problem_response(
            Problem(403, "Only the providing department may read its subgraph.", "FORBIDDEN")
        )
    catalogue = await state.registry.refresh()
    if department not in catalogue.departments:
        return problem_response(Problem(404, f"No department {department!r}.", "NOT_FOUND"))
    sdl = build_subgraph(catalogue, department).federation_sdl or ""  # the provider's own view
    return PlainTextResponse(sdl, media_type="text/plain; charset=utf-8")
