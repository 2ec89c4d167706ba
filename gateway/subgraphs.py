"""Department subgraphs (Apollo Federation v2 SDL) for teams composing their own supergraph.

A subgraph shows every field of the provider's own datasets, including unshared ones, so
only that department (a share:read token of its own) or a token with the admin scope may
read it. The token is checked by the one bearer check (gateway.identity.bearer): revoked
tokens and those of disabled clients or people are refused like on every other endpoint."""

from __future__ import annotations

import logging
import time

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from gateway.access_log import AccessEvent, answer_once_recorded
from gateway.client_address import client_address
from gateway.identity.bearer import BearerProtector, BearerRefused
from gateway.identity.service import Identity
from gateway.problems import Problem, problem_response
from policies.model import Tier
from schema.build import build_subgraph

log = logging.getLogger("shuqiao")
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
    return PlainTextResponse(
        build_subgraph(catalogue, department).sdl(), media_type="text/plain; charset=utf-8"
    )
