"""The request half of a GraphQL call over HTTP, shared by every endpoint: the body read within
the operator's size limit, and — for the static Strawberry schemas (/admin/graphql,
/audit/graphql) — the document parsed within a token budget and refused before validation when its
expanded shape exceeds the same limits the tiers apply (resolvers.documents), with the same codes.
The tiers' catalogue-built schemas go through resolvers.documents.DocumentCache instead."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import orjson
from graphql import GraphQLError, OperationDefinitionNode, parse
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import request_response
from starlette.types import Receive, Scope, Send

from gateway.graphql_media import NOT_ACCEPTABLE, check_content_type, content_type, negotiate
from gateway.problems import Problem
from policies.limits import Limits, measure
from resolvers.documents import MAX_TOKENS, shape_problems
from resolvers.errors import PARSE_FAILED


class EveryMethod:
    """A GraphQL endpoint as the router's ASGI app rather than a function, so that the router hands
    it every method (a function endpoint gets only the methods listed, and the router's own 405
    for the rest carries no error code and is never audited); the endpoint answers the 405."""

    def __init__(self, handler: Any) -> None:
        self._app = request_response(handler)
        # An async handler is called directly: request_response's own exception wrapper (one more
        # `send` wrapper per message) duplicates Starlette's ExceptionMiddleware, which wraps the
        # router with the same handlers and so still answers an HTTPException the handler raises.
        self._handler = handler if inspect.iscoroutinefunction(handler) else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._handler is None:
            await self._app(scope, receive, send)
            return
        response = await self._handler(Request(scope, receive, send))
        await response(scope, receive, send)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Problem(413, f"The request body is larger than {limit} bytes.", "PAYLOAD_TOO_LARGE")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Problem(413, f"The request body is larger than {limit} bytes.", "PAYLOAD_TOO_LARGE")
    return bytes(body)


@dataclass(frozen=True, slots=True)
class StaticCall:
    """What a checked request's audit event says of it (its digest and variables the caller
    records before the check, so a refused document is recorded too)."""

    label: str  # graphql:<operation name, or the root fields>
    operation_type: str


def typed_params(payload: dict[str, Any]) -> tuple[str, dict[str, Any] | None, str | None]:
    """The GraphQL-over-HTTP request parameters of every endpoint; a 400 for any that is not of its
    type (query: a non-empty string; operationName: string; variables and extensions: objects;
    null = absent). Other members are ignored, as the spec says they must be."""
    query, variables, op_name = payload.get("query"), payload.get("variables"), payload.get("operationName")
    extensions = payload.get("extensions")
    if not isinstance(query, str) or not query.strip():
        raise Problem(400, "`query` is required and must be a string.", "BAD_REQUEST")
    if variables is not None and not isinstance(variables, dict):
        raise Problem(400, "`variables` must be a JSON object.", "BAD_REQUEST")
    if op_name is not None and not isinstance(op_name, str):
        raise Problem(400, "`operationName` must be a string.", "BAD_REQUEST")
    if extensions is not None and not isinstance(extensions, dict):
        raise Problem(400, "`extensions` must be a JSON object.", "BAD_REQUEST")
    return query, variables, op_name


def require_post(request: Request) -> None:
    """The static endpoints take POST only; anything else is a 405 with `Allow`, answered by the
    endpoint itself (not the router) so that it is still the call's audit event."""
    if request.method != "POST":
        raise Problem(405, "Use POST.", "METHOD_NOT_ALLOWED", {"Allow": "POST"})


def answer_type(request: Request, status: int) -> str:
    """The Content-Type of a static endpoint's answer with `status`, as the client's Accept asks
    (gateway.graphql_media): the same rule as the tiers'."""
    return content_type(status, negotiate(request.headers.get("accept")))


def graphql_response(request: Request, payload: dict[str, Any], status: int) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=answer_type(request, status))


async def read_post(request: Request, limits: Limits) -> tuple[str, dict[str, Any], str | None]:
    """The query, variables and operation name of one POST; a `Problem` if the client accepts no
    GraphQL response type (406), the body is not declared JSON (415), is too large (413) or is not
    a GraphQL request (400)."""
    if negotiate(request.headers.get("accept")) is None:
        raise NOT_ACCEPTABLE
    check_content_type(request.headers.get("content-type", ""))
    try:
        body = orjson.loads(await read_body(request, limits.max_body_bytes) or b"null")
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        raise Problem(400, 'The body is JSON {"query": "...", "variables": {...}}.', "BAD_REQUEST")
    text, variables, operation = typed_params(body)
    return text, variables or {}, operation


def check_document(text: str, operation: str | None, limits: Limits) -> StaticCall:
    """Parse and measure the query; a `Problem` (400) for a parse failure or an exceeded limit."""
    try:
        document = parse(text, max_tokens=MAX_TOKENS)
    except GraphQLError as err:
        raise Problem(400, err.message, PARSE_FAILED) from None
    refused = shape_problems(measure(document), limits)
    if refused:
        first = refused[0]
        raise Problem(400, first.message, first.code, extensions=first.extensions)
    label, kind = "graphql", "query"
    ops = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    op = next((d for d in ops if operation is None or (d.name and d.name.value == operation)), None)
    if op is not None:
        roots = ",".join(s.name.value for s in op.selection_set.selections if hasattr(s, "name"))
        label, kind = f"graphql:{op.name.value if op.name else roots}", op.operation.value
    return StaticCall(label, kind)
