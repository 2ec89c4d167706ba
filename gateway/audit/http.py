"""The officer API and page under /audit. Every data route needs a bearer token with the
`audit:read` scope (401 without a token, 403 without the scope), and every call to it is itself
an access event (tier "audit"), written before the answer leaves, like any other request.

People reach the page and the API with the session of their sign-in (gateway.web.session: role
security_officer or admin, i.e. the audit:read scope); machines with a bearer token as before.
Without either, the page sends the browser to sign in; anyone else signed in gets 403 on every
page and API here. Each page view is an event too (operation "page").

Routes (each page has a machine twin):
  GET /audit                      the web page (vanilla JS, no CDN); its event search reads the live
                                  chain or (在线记录 / 归档) the archives, through the two routes below
  GET /audit/api/consumer         one consumer's reads (code=, from=, to=) beside its grants
  GET /audit/api/person           every read of one 身份证号's records (id_number=), by blind index
  GET /audit/api/posture          the dashboard (态势感知), every panel; /audit/api/posture/{panel}
                                  one panel (gateway/audit/posture.py), both with from= and to=
  GET /audit/static/{name}        its script and style
  GET /audit/api/events           search: from, to, principal, department, dataset, field, decision,
                                  status, tier, limit, before, exact; `total` is exact up to 10,000
                                  matches, then 10,000 with `total_exact` false (exact=true: all)
  GET /audit/api/events/{seq}     one event, with its query variables opened
  GET /audit/api/stats            per department, per dataset (by decision), per status
  GET /audit/api/export           the filtered range, format=csv (UTF-8 with BOM) or json; the
                                  response is SM2-signed (RFC 9421) like the share tier's
  GET /audit/api/verify           the chain check: ok, events checked, first broken position; after
                                  a prune the whole history, archived and live segments in order
  GET /audit/api/archive/events   the archives searched in place (the search's filters, newest first;
                                  limit, before → next_before; each event's `archive`, `archives` the
                                  files read, `missing` the anchored ones absent); GraphQL
                                  `archivedEvents`
  GET /audit/api/bundle           an investigation (view=consumer|person|search) as a signed bundle
  GET /audit/api/alerts           alerts, newest first: state=open|acknowledged|all, rule, limit, before
  GET /audit/api/alerts/{id}      one alert with its history of actions
  POST /audit/api/alerts/{id}/ack acknowledge with {"comment": ...}; /assign {"assignee": officer,
                                  "comment"?}; /comment {"comment"}; /close {"reason", "comment"?}
                                  (gateway/audit/alert_handling.py; each call's body is sealed into
                                  its own event)
  GET /audit/api/officers         the officers an alert can be assigned to
  POST /audit/graphql             the same as GraphQL (gateway/audit/officer_graphql.py)"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from gateway.access_log import AccessEvent, AccessLog, answer_once_recorded
from gateway.audit import investigate, officer_graphql, posture, query
from gateway.audit.alert_handling import HandlingError, act, alert_with_history, officers
from gateway.audit.alerts import list_alerts
from gateway.audit.variables import VariableCipher
from gateway.audit.verify import verify_chain
from gateway.client_address import client_address
from gateway.problems import AUDIT_UNAVAILABLE, JSON, Problem, problem_response
from gateway.static_graphql import EveryMethod, answer_type, require_post
from policies.limits import Limits

STATIC = Path(__file__).resolve().parent.parent / "static" / "audit"
ASSETS = {
    "audit.js": "text/javascript; charset=utf-8",
    "audit.css": "text/css; charset=utf-8",
    "posture.js": "text/javascript; charset=utf-8",
}
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    # not no-referrer: with it the sign-out form would send `Origin: null`, which the CSRF check refuses
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}
log = logging.getLogger("shuqiao")


MOUNT = "/audit"
EXPORT_PATH = "/audit/api/export"  # always answered signed (RFC 9421, SM2): see gateway/app.py


# The check the app factory hands in (gateway.web.session.SessionOrBearer: a session cookie or a
# bearer token, through gateway.identity.bearer): the request's claims, or a Problem (401/403).
BearerCheck = Callable[[Request], Awaitable[Any]]


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json", headers=headers)


class AuditAPI:
    """Given what it needs by the app factory: the store, the access log, the one bearer check
    (with the audit:read scope), the cipher that opens sealed variables, the export ceiling."""

    def __init__(
        self,
        engine: AsyncEngine,
        access_log: AccessLog,
        bearer: BearerCheck,
        cipher: VariableCipher | None,
        export_max_events: int,
        master_key: bytes | None = None,
        limits: Limits | None = None,
        archives: tuple[Any, Path] | None = None,
    ) -> None:
        self.engine = engine
        self.limits = limits or Limits()  # the size, depth and breadth a GraphQL request may have
        self.access_log = access_log
        self.bearer = bearer
        self.cipher = cipher
        self.export_max_events = export_max_events
        self.master_key = master_key  # the pool keyring's, for the person view's blind index
        self.archives = archives  # (key store, archive directory): verify and search the whole history
        self._page = self._guard("page", self._page_file, sign_in=True)

    def routes(self) -> list[Route]:
        """Under `Mount(MOUNT)`; the page itself is `GET /audit` (`self.page`)."""
        return [
            Route("/static/{name}", self.asset),
            Route("/api/events", self._guard("search", self.events)),
            Route("/api/events/{seq:int}", self._guard("detail", self.event)),
            Route("/api/stats", self._guard("stats", self.stats)),
            Route(EXPORT_PATH.removeprefix(MOUNT), self._guard("export", self.export)),
            Route("/api/verify", self._guard("verify", self.verify)),
            Route("/api/archive/events", self._guard("archive-search", self.archive_events)),
            Route("/api/bundle", self._guard("bundle", self.bundle)),
            Route("/api/alerts", self._guard("alerts", self.alerts)),
            Route("/api/alerts/{id:int}", self._guard("alert", self.alert)),
            Route(
                "/api/alerts/{id:int}/ack",
                self._guard("ack-alert", self._act("acknowledge")),
                methods=["POST"],
            ),
            Route(
                "/api/alerts/{id:int}/assign",
                self._guard("assign-alert", self._act("assign")),
                methods=["POST"],
            ),
            Route(
                "/api/alerts/{id:int}/comment",
                self._guard("comment-alert", self._act("comment")),
                methods=["POST"],
            ),
            Route(
                "/api/alerts/{id:int}/close", self._guard("close-alert", self._act("close")), methods=["POST"]
            ),
            Route("/api/officers", self._guard("officers", self.officers)),
            Route("/api/posture", self._guard("posture", self.posture)),
            Route("/api/posture/{panel}", self._guard("posture", self.posture)),
            Route("/api/consumer", self._guard("consumer-view", self.consumer)),
            Route("/api/person", self._guard("person-view", self.person)),
            Route(
                "/graphql",
                EveryMethod(self._guard("graphql", self.graphql, graphql=True)),
            ),
        ]

    async def page(self, request: Request) -> Response:
        """The page, for officers only; a page view is an audit event like any API call."""
        return await self._page(request)

    async def _page_file(self, request: Request) -> tuple[Response, int]:
        response = FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")
        response.headers.update(PAGE_HEADERS)
        return response, 0

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:
            return problem_response(Problem(404, "No such asset.", "NOT_FOUND"))
        return FileResponse(STATIC / name, media_type=ASSETS[name])

    def guarded(self, operation: str, handler: Any, *, sign_in: bool = False) -> Any:
        """The same check-answer-record wrapper for an officer page or API served by another
        module (the watermark trace, gateway/watermark_http.py): `handler(request)` returns
        (response, audit events read)."""
        return self._guard(operation, handler, sign_in=sign_in)

    def _guard(self, operation: str, handler: Any, *, sign_in: bool = False, graphql: bool = False) -> Any:
        """Check, answer, record. `sign_in`: a page, so no credentials (or an ended session)
        sends the browser to sign in instead of a 401 document. `graphql`: refusals take the
        media type the client's Accept chooses (GraphQL over HTTP, gateway.graphql_media)."""

        def media(request: Request, status: int) -> str:
            return answer_type(request, status) if graphql else JSON

        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            claims = None
            try:
                if graphql:
                    require_post(request)
                claims = await self.bearer(request)
                request.state.audit_claims = claims
                response, rows = await handler(request)
            except Problem as problem:
                claims = claims or getattr(problem, "claims", None)  # a valid token without the scope
                response, rows = problem_response(problem, media(request, problem.status)), None
                request.state.audit_error_codes = [problem.code]
                if sign_in and problem.status == 401:
                    # back to the page asked for after signing in (safe_next checks it again)
                    response = RedirectResponse(f"/web/login?next={request.url.path}", status_code=303)
            except query.BadFilter as bad:
                response, rows = problem_response(Problem(400, str(bad), "BAD_USER_INPUT")), None
                request.state.audit_error_codes = ["BAD_USER_INPUT"]
            event = AccessEvent(
                request_id=getattr(request.state, "request_id", ""),
                tier="audit",
                principal_kind=_kind(claims),
                principal_id=claims.client_id if claims else "anonymous",
                consumer=claims.department if claims else None,
                client_address=client_address(request),
                operation_name=getattr(request.state, "audit_operation", operation),
                operation_type=getattr(request.state, "audit_operation_type", "query"),
                query_digest=getattr(request.state, "audit_query_digest", None),
                status=response.status_code,
                error_codes=getattr(request.state, "audit_error_codes", None)
                or ([] if response.status_code < 400 else [str(response.status_code)]),
                latency_ms=round((time.perf_counter() - started) * 1000, 3),
                reads=[{"dataset": "audit_event", "rows": rows}] if rows is not None else [],
                subject=claims.subject if claims else None,
                variables={
                    **request.query_params,
                    **request.path_params,
                    **getattr(request.state, "audit_variables", {}),
                }
                or None,
            )
            return await answer_once_recorded(
                self.access_log, event, response, media(request, AUDIT_UNAVAILABLE.status)
            )

        return endpoint

    async def posture(self, request: Request) -> tuple[Response, int]:
        """The dashboard's JSON: every panel, or the one named, for from= / to= (default: the
        last 24 hours)."""
        panel = request.path_params.get("panel")
        if panel is not None and panel not in posture.PANELS:
            raise Problem(404, f"No panel {panel!r}; panels: {', '.join(posture.PANELS)}.", "NOT_FOUND")
        period = posture.Period.from_params(request.query_params)
        async with self.engine.connect() as conn:
            doc = await posture.compute(conn, period, [panel] if panel else list(posture.PANELS))
        return _json(doc), 0

    async def consumer(self, request: Request) -> tuple[Response, int]:
        """Everything one department or enterprise (code=) read in from= / to=, with the purposes
        and the grants each read was made under (gateway/audit/investigate.py)."""
        code = (request.query_params.get("code") or "").strip()
        if not code:
            raise query.BadFilter("code is the department or enterprise code, e.g. hrss")
        period = posture.Period.from_params(request.query_params)
        async with self.engine.connect() as conn:
            doc = await investigate.consumer_view(conn, code, period)
        return _json(doc), doc["requests"]

    async def person(self, request: Request) -> tuple[Response, int]:
        """Every read of one 身份证号's records (id_number=, from=, to=; default the last year),
        found by its blind index. The number itself is sealed into this call's own event."""
        from catalogue.protection import PoolKeyring

        id_number = (request.query_params.get("id_number") or "").strip()
        if not id_number:
            raise query.BadFilter("id_number is the 身份证号 to look for")
        if self.master_key is None:
            raise Problem(503, "The person view needs the master key.", "UNAVAILABLE")
        params = dict(request.query_params)
        params.setdefault("from", (datetime.now(UTC) - timedelta(days=366)).isoformat())
        period = posture.Period.from_params(params)
        keyring = await PoolKeyring(self.master_key).load(self.engine)
        async with self.engine.connect() as conn:
            doc = await investigate.person_view(conn, keyring, id_number, period)
        return _json(doc), len(doc["reads"])

    async def events(self, request: Request) -> tuple[Response, int]:
        f = query.Filters.from_params(request.query_params)
        limit = _int(request.query_params.get("limit"), 100)
        before = request.query_params.get("before")
        exact = _flag(request.query_params.get("exact"), "exact")
        async with self.engine.connect() as conn:
            page = await query.search(
                conn, f, limit=limit, before=_int(before, 0) if before else None, exact=exact
            )
        return _json(page), len(page["events"])

    async def event(self, request: Request) -> tuple[Response, int]:
        async with self.engine.connect() as conn:
            doc = await query.detail(conn, int(request.path_params["seq"]), self.cipher)
        if doc is None:
            raise Problem(404, "No event with that seq.", "NOT_FOUND")
        return _json(doc), 1

    async def stats(self, request: Request) -> tuple[Response, int]:
        f = query.Filters.from_params(request.query_params)
        async with self.engine.connect() as conn:
            return _json(await query.stats(conn, f)), 0

    async def export(self, request: Request) -> tuple[Response, int]:
        f = query.Filters.from_params(request.query_params)
        fmt = request.query_params.get("format", "csv")
        if fmt not in ("csv", "json"):
            raise query.BadFilter("format is csv or json")
        limit = self.export_max_events
        async with self.engine.connect() as conn:  # counted up to one past the limit, no further
            rows, within = await query.count(conn, f, cap=limit)
        if not within:
            raise Problem(
                413,
                f"More than {limit} events match; an export over HTTP holds at most {limit} "
                "(SHUQIAO_AUDIT_EXPORT_MAX_EVENTS). Narrow the time range or filters, or "
                "use `shuqiao audit export`, which streams and signs any size.",
                "EXPORT_TOO_LARGE",
            )
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        media = "text/csv; charset=utf-8" if fmt == "csv" else "application/json"
        return StreamingResponse(
            query.export(self.engine, f, fmt),
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="audit-{stamp}.{fmt}"'},
        ), rows

    async def verify(self, request: Request) -> tuple[Response, int]:
        """The chain; after a prune, the whole history: archived ranges and live, in order."""
        report = await verify_chain(self.engine)
        doc = report.to_json()
        if report.pruned_through and self.archives is not None:
            from gateway.audit.history import verify_history, with_history

            doc = with_history(doc, await verify_history(self.engine, *self.archives, report))
        return _json(doc), report.events_checked

    async def bundle(self, request: Request) -> tuple[Response, int]:
        """An investigation as a signed bundle (gateway/audit/bundle.py): view=consumer|person|search
        with that view's parameters; `shuqiao audit verify-archive FILE --pubkey …` verifies it."""
        from gateway.audit.bundle import BundleError, build_bundle, investigation_seqs

        if self.archives is None:
            raise Problem(503, "No signing key store is configured.", "UNAVAILABLE")
        try:
            seqs, described = await investigation_seqs(
                self.engine, dict(request.query_params), self.master_key
            )
            data = await build_bundle(self.engine, self.archives[0], seqs, described)
        except BundleError as err:
            raise Problem(409, str(err), "CONFLICT") from None
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        headers = {
            "Content-Disposition": f'attachment; filename="audit-bundle-{described["view"]}-{stamp}.jsonl"'
        }
        return Response(data, media_type="application/x-ndjson", headers=headers), len(set(seqs))

    async def archive_events(self, request: Request) -> tuple[Response, int]:
        """The archives retention left, searched in place with the event search's filters."""
        from gateway.audit.history import search_archives

        if self.archives is None:
            raise Problem(404, "No archives are configured.", "NOT_FOUND")
        f = query.Filters.from_params(request.query_params)
        before = request.query_params.get("before")
        page = await search_archives(
            self.engine,
            self.archives[1],
            f,
            limit=_int(request.query_params.get("limit"), 100),
            before=_int(before, 0) if before else None,
        )
        return _json(page), len(page["events"])

    async def alerts(self, request: Request) -> tuple[Response, int]:
        params = request.query_params
        try:
            async with self.engine.connect() as conn:
                page = await list_alerts(
                    conn,
                    state=params.get("state", "open"),
                    rule=params.get("rule"),
                    limit=_int(params.get("limit"), 100),
                    before=_int(params.get("before"), 0) or None,
                    assignee=params.get("assignee") or None,
                )
        except ValueError as err:
            raise query.BadFilter(str(err)) from None
        return _json(page), len(page["alerts"])

    async def alert(self, request: Request) -> tuple[Response, int]:
        async with self.engine.connect() as conn:
            doc = await alert_with_history(conn, int(request.path_params["id"]))
        if doc is None:
            raise Problem(404, "No alert with that id.", "NOT_FOUND")
        return _json(doc), 1

    async def officers(self, request: Request) -> tuple[Response, int]:
        async with self.engine.connect() as conn:
            people = await officers(conn)
        return _json({"officers": people}), 0

    def _act(self, action: str) -> Callable[[Request], Awaitable[tuple[Response, int]]]:
        """POST /api/alerts/{id}/<action> with a JSON body: {"comment"}, plus {"assignee"} to
        assign, {"reason"} to close. The body is sealed into this call's own event."""

        async def handler(request: Request) -> tuple[Response, int]:
            from policies.alert_handling import AlertAction

            try:
                body = orjson.loads(await request.body() or b"{}")
                fields = {k: body.get(k) for k in ("comment", "assignee", "reason")}
            except (orjson.JSONDecodeError, AttributeError):
                raise query.BadFilter('the body is JSON {"comment": "...", "assignee"?, "reason"?}') from None
            if not all(v is None or isinstance(v, str) for v in fields.values()):
                raise query.BadFilter("comment, assignee and reason are strings")
            request.state.audit_variables = {k: v for k, v in fields.items() if v is not None}
            request.state.audit_operation_type = "mutation"
            claims = request.state.audit_claims
            by = f"{claims.client_id}/{claims.subject}" if claims.subject else claims.client_id
            step = AlertAction(
                action, comment=fields["comment"] or "", assignee=fields["assignee"], reason=fields["reason"]
            )
            try:
                alert = await act(self.engine, int(request.path_params["id"]), by, step)
            except HandlingError as err:
                raise Problem(err.status, str(err), err.code) from None
            return _json(alert), 1

        return handler

    async def graphql(self, request: Request) -> tuple[Response, int]:
        directory = self.archives[1] if self.archives is not None else None
        return await officer_graphql.handle(request, self.engine, self.cipher, self.limits, directory)


def _kind(claims: Any) -> str:
    """A person (a token with a subject other than its client), a department's client, or nobody."""
    if not claims:
        return "anonymous"
    return "user" if claims.subject and claims.subject != claims.client_id else "department"


def _flag(text: str | None, name: str) -> bool:
    if text is None or text.strip().lower() in ("", "false", "0"):
        return False
    if text.strip().lower() in ("true", "1"):
        return True
    raise query.BadFilter(f"{name} is true or false")


def _int(text: str | None, default: int) -> int:
    if text is None or text == "":
        return default
    if not text.isdigit():
        raise query.BadFilter(f"not a whole number: {text!r}")
    return int(text)
