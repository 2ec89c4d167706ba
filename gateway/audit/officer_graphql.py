"""The officer GraphQL API: `POST /audit/graphql`, a static Strawberry schema beside the JSON API.

Authentication, the `audit:read` scope check (401/403 before any GraphQL runs) and the call's own
audit event are `AuditAPI._guard` in `gateway.audit.http`, exactly as for `/audit/api/…`. The
resolvers call the same functions the JSON handlers call (`gateway.audit.query`, `alerts`, `history`,
`verify`); no SQL lives here.

    events(filter: EventFilter, first: Int = 50, after: String, exact: Boolean = false):
        EventConnection!   newest first, keyset by seq (`after` is an edge's cursor); totalCount is
        exact up to 10,000 matches, then 10,000 with totalExact false (exact: true counts all)
    event(seq: Int!): Event            the detail; `variables` is opened only here
    archivedEvents(filter: EventFilter, first: Int = 50, after: String): ArchivedEventConnection!
        the archives retention left, read in place (`gateway.audit.history.search_archives`, as
        `GET /audit/api/archive/events` and `shuqiao audit search --archived`): newest first, keyset
        by seq, totalCount always exact, each event's `archive` its file, `archives` those anchored
    stats(from: String, to: String): Stats!
    verify: VerifyReport!
    alerts(open: Boolean, rule: String, first: Int = 100): [Alert!]!   open: null = all
    mutation acknowledgeAlert(id: Int!, comment: String!): Alert!
    mutation assignAlert(id: Int!, assignee: String!, comment: String = ""): Alert!
    mutation commentAlert(id: Int!, comment: String!): Alert!
    mutation closeAlert(id: Int!, reason: String!, comment: String = ""): Alert!

Every error carries `extensions.code`: BAD_USER_INPUT, NOT_FOUND, CONFLICT, GRAPHQL_PARSE_FAILED,
GRAPHQL_VALIDATION_FAILED, INTERNAL_SERVER_ERROR (message withheld)."""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import strawberry
from graphql import GraphQLError, GraphQLFormattedError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import Response
from strawberry.scalars import JSON
from strawberry.types import Info

from gateway.access_log import query_digest
from gateway.audit import query as audit_query
from gateway.audit.alert_handling import HandlingError, act
from gateway.audit.alerts import AckError, acknowledge, list_alerts
from gateway.audit.variables import VariableCipher
from gateway.audit.verify import verify_chain
from gateway.static_graphql import check_document, graphql_response, read_post
from policies.alert_handling import AlertAction
from policies.limits import Limits

log = logging.getLogger("shuqiao")


@dataclass
class OfficerContext:
    engine: AsyncEngine
    cipher: VariableCipher | None
    claims: Any
    archives: Path | None = None  # the directory retention archives to; None: none configured
    rows: int = 0  # audit_event rows handed out, for the call's own event
    sealed: dict[str, Any] = field(default_factory=dict)  # added to the call's sealed variables


def _err(message: str, code: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code})


def _ctx(info: Info) -> OfficerContext:
    return info.context


# -- types ------------------------------------------------------------------------------------


@strawberry.input(description="The JSON search's filters. Times: ISO 8601; no offset = UTC+08:00.")
class EventFilter:
    from_: str | None = strawberry.field(name="from", default=None)
    to: str | None = None
    principal: str | None = None
    department: str | None = None
    dataset: str | None = None
    field: str | None = strawberry.field(
        default=None, description="idNumber, id_number or population.idNumber"
    )
    decision: str | None = strawberry.field(default=None, description="allow, mask, encrypt or deny")
    status: int | None = None
    tier: str | None = None

    def filters(self) -> audit_query.Filters:
        params = {
            "from": self.from_,
            "to": self.to,
            "principal": self.principal,
            "department": self.department,
            "dataset": self.dataset,
            "field": self.field,
            "decision": self.decision,
            "status": None if self.status is None else str(self.status),
            "tier": self.tier,
        }
        return audit_query.Filters.from_params({k: v for k, v in params.items() if v is not None})


@strawberry.type
class FieldDecision:
    dataset: str | None
    field: str | None
    action: str | None
    reason: str | None
    grant_id: int | None


@strawberry.type
class Read:
    dataset: str | None
    rows: int | None
    grant_id: int | None
    purpose: str | None


@strawberry.type
class Event:
    seq: int
    occurred_at: str
    request_id: str
    tier: str
    principal_kind: str
    principal_id: str
    department: str | None
    subject: str | None
    client_address: str | None
    operation_name: str | None
    operation_type: str | None
    query_digest: str | None
    status: int
    error_codes: list[str]
    latency_ms: float
    row_count: int | None
    fields: list[FieldDecision]
    reads: list[Read]
    grant_ids: list[int]
    purposes: list[str]
    has_variables: bool
    signature_kid: str | None
    prev_hash: str
    hash: str
    variables: JSON | None = strawberry.field(
        default=None, description="The sealed query variables, opened; only on `event(seq:)`."
    )
    variables_error: str | None = None
    archive: str | None = strawberry.field(
        default=None, description="The archive file the event was read from; null for a live event."
    )


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int | str) and str(value).lstrip("-").isdigit() else None


def _event(doc: dict[str, Any]) -> Event:
    return Event(
        seq=doc["seq"],
        occurred_at=doc["occurred_at"],
        request_id=doc["request_id"],
        tier=doc["tier"],
        principal_kind=doc["principal_kind"],
        principal_id=doc["principal_id"],
        department=doc["department"],
        subject=doc["subject"],
        client_address=doc["client_address"],
        operation_name=doc["operation_name"],
        operation_type=doc["operation_type"],
        query_digest=doc["query_digest"],
        status=doc["status"],
        error_codes=doc["error_codes"],
        latency_ms=doc["latency_ms"],
        row_count=doc["row_count"],
        fields=[
            FieldDecision(
                dataset=f.get("dataset"),
                field=f.get("field"),
                action=f.get("action", f.get("decision")),
                reason=f.get("reason"),
                grant_id=_int_or_none(f.get("grant_id")),
            )
            for f in doc["fields"]
        ],
        reads=[
            Read(
                dataset=r.get("dataset"),
                rows=_int_or_none(r.get("rows")),
                grant_id=_int_or_none(r.get("grant_id")),
                purpose=r.get("purpose"),
            )
            for r in doc["reads"]
        ],
        grant_ids=[int(g) for g in doc["grant_ids"]],
        purposes=doc["purposes"],
        has_variables=doc["has_variables"],
        signature_kid=doc["signature_kid"],
        prev_hash=doc["prev_hash"],
        hash=doc["hash"],
        variables=doc.get("variables"),
        variables_error=doc.get("variables_error"),
        archive=doc.get("archive"),
    )


@strawberry.type
class EventEdge:
    cursor: str
    node: Event


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class EventConnection:
    total_count: int = strawberry.field(
        description="Exact up to 10,000 matches; past that 10,000 and totalExact is false."
    )
    total_exact: bool = strawberry.field(
        description="Whether totalCount is every match (false: there are more than it says)."
    )
    edges: list[EventEdge]
    page_info: PageInfo

    @strawberry.field
    def nodes(self) -> list[Event]:
        return [e.node for e in self.edges]


@strawberry.type(description="Archived events: totalCount is always exact (the archives are read through).")
class ArchivedEventConnection(EventConnection):
    archives: list[str] = strawberry.field(
        description="The archives the search read: those a prune anchor names and the archive "
        "directory holds, oldest first."
    )
    missing: list[str] = strawberry.field(
        description="The archives a prune anchor names that the archive directory does not hold (not read)."
    )


@strawberry.type
class DepartmentStats:
    department: str | None
    events: int
    rows: int
    refused: int


@strawberry.type
class DecisionCount:
    decision: str
    events: int


@strawberry.type
class DatasetStats:
    dataset: str
    events_by_decision: list[DecisionCount]

    @strawberry.field
    def events(self, decision: str) -> int:
        return next((d.events for d in self.events_by_decision if d.decision == decision), 0)


@strawberry.type
class StatusCount:
    status: int
    events: int


@strawberry.type
class Stats:
    departments: list[DepartmentStats]
    datasets: list[DatasetStats]
    statuses: list[StatusCount]


@strawberry.type
class VerifyReport:
    ok: bool
    events_checked: int
    first_bad_seq: int | None
    reason: str | None
    pruned_through: int | None = strawberry.field(
        default=None, description="Events 1..this were archived and pruned; the check starts after it."
    )


@strawberry.type
class Alert:
    id: int
    rule: str
    principal_id: str
    consumer: str | None
    seq: int
    occurred_at: str
    raised_at: str
    summary: str
    detail: JSON
    acknowledged_at: str | None
    acknowledged_by: str | None
    ack_comment: str | None
    state: str
    assignee: str | None
    closed_at: str | None
    closed_by: str | None
    close_reason: str | None


def _alert(doc: dict[str, Any]) -> Alert:
    return Alert(**{k: v for k, v in doc.items() if k != "history"})


def _cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode()


def _seq_of(cursor: str) -> int:
    try:
        kind, _, seq = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
    except (binascii.Error, UnicodeError, ValueError):
        kind, seq = "", ""
    if kind != "seq" or not seq.isdigit():
        raise _err("after is a cursor from a previous page", "BAD_USER_INPUT")
    return int(seq)


# -- resolvers --------------------------------------------------------------------------------


def _connection(page: dict[str, Any]) -> dict[str, Any]:
    """A search page (`query.search` or `history.search_archives`) as a connection's fields."""
    edges = [EventEdge(cursor=_cursor(d["seq"]), node=_event(d)) for d in page["events"]]
    return {
        "total_count": page["total"],
        "total_exact": page["total_exact"],
        "edges": edges,
        "page_info": PageInfo(
            has_next_page=page["next_before"] is not None, end_cursor=edges[-1].cursor if edges else None
        ),
    }


def _filters(f: EventFilter | None) -> audit_query.Filters:
    try:
        return f.filters() if f else audit_query.Filters()
    except audit_query.BadFilter as bad:
        raise _err(str(bad), "BAD_USER_INPUT") from None


@strawberry.type
class Query:
    @strawberry.field(description="Search, newest first; keyset by seq.")
    async def events(
        self,
        info: Info,
        filter: EventFilter | None = None,
        first: int = 50,
        after: str | None = None,
        exact: Annotated[
            bool,
            strawberry.argument(description="Count every match (slower past 10,000) instead of stopping."),
        ] = False,
    ) -> EventConnection:
        ctx = _ctx(info)
        if not 1 <= first <= audit_query.MAX_PAGE:
            raise _err(f"first is 1..{audit_query.MAX_PAGE}", "BAD_USER_INPUT")
        f = _filters(filter)
        before = _seq_of(after) if after else None
        async with ctx.engine.connect() as conn:
            page = await audit_query.search(conn, f, limit=first, before=before, exact=exact)
        ctx.rows += len(page["events"])
        return EventConnection(**_connection(page))

    @strawberry.field(
        description="The archives retention left, searched in place (slower than `events`): newest "
        "first, keyset by seq, with `events`' filters."
    )
    async def archived_events(
        self, info: Info, filter: EventFilter | None = None, first: int = 50, after: str | None = None
    ) -> ArchivedEventConnection:
        from gateway.audit.history import search_archives

        ctx = _ctx(info)
        if ctx.archives is None:
            raise _err("No archives are configured.", "NOT_FOUND")
        if not 1 <= first <= audit_query.MAX_PAGE:
            raise _err(f"first is 1..{audit_query.MAX_PAGE}", "BAD_USER_INPUT")
        f = _filters(filter)
        before = _seq_of(after) if after else None
        page = await search_archives(ctx.engine, ctx.archives, f, limit=first, before=before)
        ctx.rows += len(page["events"])
        return ArchivedEventConnection(
            **_connection(page), archives=page["archives"], missing=page["missing"]
        )

    @strawberry.field(description="One event; its sealed variables are opened.")
    async def event(self, info: Info, seq: int) -> Event | None:
        ctx = _ctx(info)
        async with ctx.engine.connect() as conn:
            doc = await audit_query.detail(conn, seq, ctx.cipher)
        if doc is None:
            return None
        ctx.rows += 1
        return _event(doc)

    @strawberry.field(description="Per department, per dataset (by decision), per status.")
    async def stats(
        self,
        info: Info,
        from_: Annotated[str | None, strawberry.argument(name="from")] = None,
        to: str | None = None,
    ) -> Stats:
        ctx = _ctx(info)
        f = _filters(EventFilter(from_=from_, to=to))
        async with ctx.engine.connect() as conn:
            s = await audit_query.stats(conn, f)
        return Stats(
            departments=[DepartmentStats(**d) for d in s["departments"]],
            datasets=[
                DatasetStats(
                    dataset=d["dataset"],
                    events_by_decision=[
                        DecisionCount(decision=k, events=v)
                        for k, v in sorted(d["events_by_decision"].items())
                    ],
                )
                for d in s["datasets"]
            ],
            statuses=[StatusCount(**x) for x in s["statuses"]],
        )

    @strawberry.field(description="The chain check, as `shuqiao audit verify --json`.")
    async def verify(self, info: Info) -> VerifyReport:
        ctx = _ctx(info)
        report = await verify_chain(ctx.engine)
        ctx.rows += report.events_checked
        return VerifyReport(**asdict(report))

    @strawberry.field(description="Newest first. open: true = open, false = acknowledged, null = all.")
    async def alerts(
        self, info: Info, open: bool | None = None, rule: str | None = None, first: int = 100
    ) -> list[Alert]:
        ctx = _ctx(info)
        state = "all" if open is None else "open" if open else "handled"
        async with ctx.engine.connect() as conn:
            page = await list_alerts(conn, state=state, rule=rule, limit=first)
        return [_alert(a) for a in page["alerts"]]


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Acknowledge with a comment, sealed into this call's own event.")
    async def acknowledge_alert(self, info: Info, id: int, comment: str) -> Alert:
        ctx = _ctx(info)
        ctx.sealed.update({"id": id, "comment": comment})
        claims = ctx.claims
        by = f"{claims.client_id}/{claims.subject}" if claims.subject else claims.client_id
        try:
            doc = await acknowledge(ctx.engine, id, by, comment)
        except AckError as err:
            raise _err(
                str(err), {404: "NOT_FOUND", 409: "CONFLICT"}.get(err.status, "BAD_USER_INPUT")
            ) from None
        ctx.rows += 1
        return _alert(doc)

    @strawberry.mutation(description="Assign to an officer (username), with an optional comment.")
    async def assign_alert(self, info: Info, id: int, assignee: str, comment: str = "") -> Alert:
        return await _handle(info, id, AlertAction("assign", comment=comment, assignee=assignee))

    @strawberry.mutation(description="Add a comment; the state does not change.")
    async def comment_alert(self, info: Info, id: int, comment: str) -> Alert:
        return await _handle(info, id, AlertAction("comment", comment=comment))

    @strawberry.mutation(
        description="Close with a reason: resolved, false_positive, authorised, duplicate, other."
    )
    async def close_alert(self, info: Info, id: int, reason: str, comment: str = "") -> Alert:
        return await _handle(info, id, AlertAction("close", comment=comment, reason=reason))


async def _handle(info: Info, id: int, step: AlertAction) -> Alert:
    ctx = _ctx(info)
    ctx.sealed.update(
        {"id": id, **{k: v for k, v in asdict(step).items() if k != "action" and v not in (None, "")}}
    )
    claims = ctx.claims
    by = f"{claims.client_id}/{claims.subject}" if claims.subject else claims.client_id
    try:
        doc = await act(ctx.engine, id, by, step)
    except HandlingError as err:
        raise _err(str(err), err.code) from None
    ctx.rows += 1
    return _alert(doc)


class _Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        for error in errors:  # expected errors carry a code; log only the unexpected ones
            if not (error.extensions or {}).get("code"):
                log.error("officer GraphQL error", exc_info=error.original_error or error)


schema = _Schema(query=Query, mutation=Mutation)


# -- the endpoint (wrapped by AuditAPI._guard: auth first, then the call's own audit event) ----


def _format(error: GraphQLError) -> GraphQLFormattedError:
    out = error.formatted
    code = (error.extensions or {}).get("code")
    if not code:
        if error.original_error is not None and not isinstance(error.original_error, GraphQLError):
            out["message"] = "Internal error."
            code = "INTERNAL_SERVER_ERROR"
        else:
            code = "GRAPHQL_VALIDATION_FAILED"
    out["extensions"] = {**(out.get("extensions") or {}), "code": code}
    return out


async def handle(
    request: Request,
    engine: AsyncEngine,
    cipher: VariableCipher | None,
    limits: Limits,
    archives: Path | None = None,
) -> tuple[Response, int]:
    text, variables, operation = await read_post(request, limits)
    request.state.audit_variables = {"query": text, "variables": variables, "operationName": operation}
    request.state.audit_query_digest = query_digest(text, variables)
    call = check_document(text, operation, limits)
    request.state.audit_operation = call.label
    request.state.audit_operation_type = call.operation_type

    ctx = OfficerContext(engine=engine, cipher=cipher, claims=request.state.audit_claims, archives=archives)
    result = await schema.execute(
        text, variable_values=variables, context_value=ctx, operation_name=operation
    )
    request.state.audit_variables.update(ctx.sealed)
    payload: dict[str, Any] = {}
    status = 200
    if result.errors:
        payload["errors"] = [_format(e) for e in result.errors]
        request.state.audit_error_codes = sorted({e["extensions"]["code"] for e in payload["errors"]})
        if result.data is None and all(e.path is None for e in result.errors):
            status = 400  # nothing executed: a request (validation) error
    if status == 200:  # execution started: "data" is present, null when a non-null root failed
        payload["data"] = result.data
    return graphql_response(request, payload, status), ctx.rows
