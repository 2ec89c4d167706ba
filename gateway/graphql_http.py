"""GraphQL over HTTP for both tiers: request → identity → tier schema → executor →
access event → response. Status codes and media types follow the GraphQL-over-HTTP spec."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from graphql import GraphQLError, get_operation_ast, parse
from starlette.requests import Request
from starlette.responses import Response

from gateway.access_log import AccessEvent, answer_once_recorded, query_digest
from gateway.client_address import client_address
from gateway.crypto.requests import SignedRequestRefused, verifier_for
from gateway.crypto.signing import NO_KEY_MESSAGE, PRESIGN, SIGNING_UNAVAILABLE
from gateway.graphql_media import NOT_ACCEPTABLE, check_content_type, content_type, negotiate
from gateway.identity.apikeys import InvalidApiKey
from gateway.identity.bearer import BearerRefused
from gateway.identity.limits_hook import check_rate, restrict_grants
from gateway.outages import classify
from gateway.problems import AUDIT_UNAVAILABLE, INTERNAL, Problem, problem_response
from gateway.registry import BuiltSchema
from gateway.state import GatewayState
from gateway.static_graphql import read_body, typed_params
from policies.model import Tier
from resolvers.context import ANONYMOUS, ExecutionContext, Principal, PrincipalKind
from resolvers.documents import MAX_TOKENS
from resolvers.execute import Outcome, run

log = logging.getLogger("shuqiao")

# The same answer as the signing middleware's, which is what the client gets (this one is audited).
SIGNING_REFUSED = Problem(503, NO_KEY_MESSAGE, "SIGNING_UNAVAILABLE", {"Retry-After": "5"})


def _operation_type(query: str, op_name: str | None) -> str | None:
    """The type of the operation a GET would run ("query", "mutation"…), or None when the document
    does not parse or names no single operation (the executor then says why)."""
    try:
        document = parse(query, max_tokens=MAX_TOKENS)
    except GraphQLError:
        return None
    op = get_operation_ast(document, op_name)
    return op.operation.value if op is not None else None


def _json_param(q: Any, name: str) -> Any:
    """A GET parameter that carries JSON ({variables}, {extensions}); the empty string is absent."""
    raw = q.get(name)
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Problem(400, f"`{name}` is not valid JSON.", "BAD_REQUEST") from None


def _params(request: Request, body: bytes) -> tuple[str, dict[str, Any] | None, str | None]:
    """The GraphQL-over-HTTP request parameters; a 400 for any that is not of its type
    (query: string; operationName: string; variables and extensions: objects; null or, on GET,
    the empty string = absent). Other members are ignored, as the spec says they must be."""
    if request.method == "GET":
        q = request.query_params
        payload: dict[str, Any] = {
            "query": q.get("query"),
            "variables": _json_param(q, "variables"),
            "operationName": q.get("operationName") or None,
            "extensions": _json_param(q, "extensions"),
        }
    else:
        check_content_type(request.headers.get("content-type", ""))
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise Problem(400, "The request body is not valid JSON.", "BAD_REQUEST") from None
        if isinstance(payload, list):
            raise Problem(
                400,
                "Batched requests are not accepted; send one operation per request.",
                "BATCHING_NOT_SUPPORTED",
            )
        if not isinstance(payload, dict):
            raise Problem(400, "The request body must be a JSON object.", "BAD_REQUEST")
    return typed_params(payload)


def _scope_state(request: Request) -> dict[str, Any]:
    """The request's state as the dict it is (`scope["state"]`, what `request.state.x = …` writes):
    reading an absent name through `request.state` raises and catches an AttributeError, a
    measurable cost on the request path when done six times per request."""
    state: dict[str, Any] = request.scope.setdefault("state", {})
    return state


def _add_headers(response: Response, headers: dict[str, str]) -> None:
    """`response.headers.update(headers)` without its scan of every header per name: a name the
    response does not carry yet is appended as it is; one it does is replaced, as update would."""
    if not headers:
        return
    present = {name for name, _ in response.raw_headers}
    for name, value in headers.items():
        key = name.lower().encode("latin-1")
        if key in present:
            response.headers[name] = value
        else:
            response.raw_headers.append((key, value.encode("latin-1")))


class GraphQLEndpoint:
    def __init__(self, tier: Tier, state: GatewayState) -> None:
        self.tier = tier
        self.state = state
        self.methods = ("GET", "POST") if tier is Tier.OPEN else ("POST",)
        self.signatures = verifier_for(state) if tier is Tier.SHARE else None  # RFC 9421 signed requests

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        state = _scope_state(request)
        media = negotiate(request.headers.get("accept"))
        principal: Principal = ANONYMOUS
        outcome: Outcome | None = None
        query = variables = None
        codes: list[str] = []
        try:
            if request.method not in self.methods:
                raise Problem(
                    405,
                    f"Use {' or '.join(self.methods)}.",
                    "METHOD_NOT_ALLOWED",
                    {"Allow": ", ".join(self.methods)},
                )
            if media is None:
                raise NOT_ACCEPTABLE
            body = await read_body(request, self.state.settings.limits.max_body_bytes)
            principal = await self._identify_limited(request)
            await self._check_signature(request, principal, body)
            await self._limit(request, principal)
            query, variables, op_name = _params(request, body)
            if request.method == "GET" and _operation_type(query, op_name) not in (None, "query"):
                # GET is safe: a mutation (or subscription) is refused before anything runs
                raise Problem(405, "Only queries may use GET.", "METHOD_NOT_ALLOWED", {"Allow": "POST"})
            if state.get(SIGNING_UNAVAILABLE, False):
                raise SIGNING_REFUSED  # the middleware answers; this records the refusal
            outcome = await self._execute(
                principal, query, variables, op_name, await self._schema(request, principal)
            )
            # No `data` (a request error: parse, validation, limits, variables) → 400 under either
            # media type; `data` present → 200, field errors or not.
            status = 400 if outcome.request_error else 200
            response = Response(
                orjson.dumps(outcome.body()), status_code=status, media_type=content_type(status, media)
            )
        except Problem as problem:
            status, codes, response = (
                problem.status,
                [problem.code],
                problem_response(problem, content_type(problem.status, media)),
            )
        except Exception as err:  # still an answer, audited: a problem document, never a bare 500
            outcome = None
            failure = self._failure(request, err)
            status, codes, response = (
                failure.status,
                [failure.code],
                problem_response(failure, content_type(failure.status, media)),
            )
        if state.get("quiet_refusal", False):
            return response  # a refused burst is recorded once per window (gateway.identity.failures)
        event = self._event(request, principal, outcome, status, codes, query, variables, started)
        # The result is serialised into the response by now: let go of its rows before waiting
        # for the audit commit, or every waiting request holds its whole page in memory.
        outcome = None
        _add_headers(response, state.get("ratelimit_headers", {}))
        # Signed (when the path is) while the event's batch commits: the signing middleware uses
        # that signature if exactly this response leaves, else signs what does.
        return await answer_once_recorded(
            self.state.access_log,
            event,
            response,
            content_type(AUDIT_UNAVAILABLE.status, media),
            meanwhile=state.get(PRESIGN),
        )

    def _failure(self, request: Request, err: Exception) -> Problem:
        """503 for a dependency that is down (logged by type: a driver's message may name hosts
        or values), 500 for anything else (logged with its traceback, never sent)."""
        request_id = getattr(request.state, "request_id", "")
        problem = classify(err)
        if problem is None:
            log.error("request %s on %s failed", request_id, request.url.path, exc_info=err)
            return INTERNAL
        log.warning("request %s answered %s: %s", request_id, problem.code, type(err).__name__)
        return problem

    async def _identify(self, request: Request) -> Principal:
        if self.tier is Tier.SHARE:
            try:  # the one bearer check (gateway.identity.bearer)
                claims = await self.state.identity.share_bearer.validate_request(request)
            except BearerRefused as refused:
                raise Problem(refused.status, refused.message, refused.code, refused.headers) from None
            request.state.token_actor = claims.actor  # RFC 8693 `act`: a router presenting it
            return Principal(
                PrincipalKind.DEPARTMENT, claims.client_id, claims.department, claims.scopes, claims.subject
            )
        key = request.headers.get("x-api-key")
        if key is None:
            return ANONYMOUS
        try:
            ident = await self.state.identity.api_keys.verify(key.strip())
        except InvalidApiKey:
            raise Problem(
                401,
                "The API key is not valid.",
                "UNAUTHENTICATED",
                {"WWW-Authenticate": 'ApiKey realm="shuqiao", header="X-API-Key"'},
            ) from None
        request.state.api_key_limits = (ident.rate_per_minute, ident.daily_quota)
        return Principal(PrincipalKind.ENTERPRISE, ident.prefix, ident.enterprise, ident.datasets)

    async def _identify_limited(self, request: Request) -> Principal:
        """`_identify` behind the per-address limit on failed authentication: past it, 429
        without trying the credential; a 401 counts as a failure. Anonymous open-tier calls
        present no credential and have their own limit."""
        if self.tier is Tier.OPEN and "x-api-key" not in request.headers:
            return ANONYMOUS  # what _identify says of an open-tier call without a key
        guard = self.state.identity.failures
        throttled = await guard.check(request)
        if throttled is not None:
            request.state.quiet_refusal = not throttled.record
            raise Problem(429, throttled.message, "RATE_LIMITED", throttled.decision.headers)
        try:
            return await self._identify(request)
        except Problem as problem:
            if problem.status == 401:
                await guard.failed(request)
            raise

    async def _check_signature(self, request: Request, principal: Principal, body: bytes) -> None:
        """Share tier: verify an RFC 9421 request signature (required for marked departments)
        before anything runs; a refusal is a 401 with a `Signature` challenge (gateway.crypto.requests)."""
        if self.signatures is None or not principal.consumer:
            return
        try:
            await self.signatures.check(request, principal.consumer, body)
        except SignedRequestRefused as refused:
            raise Problem(refused.status, refused.message, refused.code, refused.headers) from None

    async def _limit(self, request: Request, principal: Principal) -> None:
        """Rate limits and quotas (gateway.identity.ratelimit): 429 with Retry-After."""
        decision = await check_rate(self.state.identity.limiter, request, principal)
        if not decision.allowed:
            request.state.quiet_refusal = not decision.record
            raise Problem(
                429,
                f"Rate limit exceeded ({decision.policy}); retry after {decision.retry_after} s.",
                "RATE_LIMITED",
                decision.headers,
            )
        _scope_state(request)["ratelimit_headers"] = decision.headers

    async def _schema(self, request: Request, principal: Principal) -> BuiltSchema:
        """The schema this request runs against: the tier's, per consuming department."""
        return await self.state.registry.schema(self.tier, principal.consumer)

    async def _execute(
        self,
        principal: Principal,
        query: str,
        variables: dict[str, Any] | None,
        op_name: str | None,
        built: BuiltSchema,
    ) -> Outcome:
        registry = self.state.registry
        ctx = ExecutionContext(
            self.tier,
            principal,
            restrict_grants(principal, await registry.grants()),
            datetime.now(UTC),
            self.state.settings.limits,
            encryptor=self.state.encryptor_for(principal),
            pool=registry.keyring,
            watermark=self.state.watermark_for(principal),
        )
        reads = self.state.reads
        async with reads.connect() if reads is not None else self.state.engine.connect() as conn:
            outcome = await run(
                built.tier, query, variables, op_name, ctx, conn, cache=built.documents, plans=built.plans
            )
        outcome.context = ctx  # type: ignore[attr-defined]
        return outcome

    def _event(
        self,
        request: Request,
        principal: Principal,
        outcome: Outcome | None,
        status: int,
        codes: list[str],
        query: str | None,
        variables: dict[str, Any] | None,
        started: float,
    ) -> AccessEvent:
        ctx: ExecutionContext | None = getattr(outcome, "context", None)
        state = _scope_state(request)
        return AccessEvent(
            request_id=state.get("request_id", ""),
            tier=self.tier.value,
            principal_kind=principal.kind.value,
            principal_id=principal.id,
            consumer=principal.consumer,
            client_address=client_address(request),
            operation_name=outcome.operation_name if outcome else None,
            operation_type=outcome.operation_type if outcome else None,
            query_digest=query_digest(query, variables),
            status=status,
            error_codes=outcome.error_codes if outcome else codes,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            fields=[a.as_dict() for a in ctx.accesses.values()] if ctx else [],
            reads=[r.as_dict() for r in ctx.reads] if ctx else [],
            subject=principal.subject,
            variables=variables,
            signature_kid=state.get("signature_kid"),
        )
