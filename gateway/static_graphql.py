"""The request half of a GraphQL call over HTTP, shared by every endpoint: the body read within
the operator's size limit, and — for the static Strawberry schemas (/admin/graphql,
/audit/graphql) — the document parsed within a token budget and refused before validation when its
expanded shape exceeds the same limits the tiers apply (resolvers.documents), with the same codes.
The tiers' catalogue-built schemas go through resolvers.documents.DocumentCache instead."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from graphql import GraphQLError, OperationDefinitionNode, parse
from starlette.requests import Request

from gateway.access_log import query_digest
from gateway.problems import Problem
from policies.limits import Limits, measure
from resolvers.documents import MAX_TOKENS, shape_problems
from resolvers.errors import PARSE_FAILED


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
    """One POSTed GraphQL request, checked and ready to execute."""

    text: str
    variables: dict[str, Any]
    operation_name: str | None
    label: str  # what the call's audit event names it: graphql:<operation or root fields>
    operation_type: str
    digest: str

    @property
    def recorded(self) -> dict[str, Any]:
        return {"query": self.text, "variables": self.variables, "operationName": self.operation_name}


async def read_post(request: Request, limits: Limits) -> tuple[str, dict[str, Any], str | None]:
    """The query, variables and operation name of one POST; a `Problem` (400, 413) if malformed."""
    try:
        body = orjson.loads(await read_body(request, limits.max_body_bytes) or b"null")
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        raise Problem(400, 'The body is JSON {"query": "...", "variables": {...}}.', "BAD_REQUEST")
    text: str = body["query"]
    variables = body.get("variables") or {}
    operation = body.get("operationName")
    if not isinstance(variables, dict) or not (operation is None or isinstance(operation, str)):
        raise Problem(400, "variables is an object and operationName a string.", "BAD_REQUEST")
    return text, variables, operation


def check_document(text: str, variables: dict[str, Any], operation: str | None, limits: Limits) -> StaticCall:
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
    return StaticCall(text, variables, operation, label, kind, query_digest(text, variables))
