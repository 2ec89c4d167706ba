"""The admin GraphQL API: `POST /admin/graphql`, the machine twin of the workflow console and CLI.

One bearer check (gateway.identity.bearer: any of our access tokens with share:read, to apply,
grants:approve, to decide, or admin) authenticates people (authorization code: roles and
department in the token) and systems (client credentials: the client's department); people on
the console (/console, gateway.workflow.console) send their session cookie instead, with its
CSRF token (gateway.web.session.SessionOrBearer, handed in by the app factory). What each
caller may do is `policies.workflow`, checked in the service on every resolver (a steward of
police cannot approve samr's applications; hrss cannot read samr's). Every call is one audit
event (tier "admin", written before the answer leaves: `answer_once_recorded`), and every step
taken is one more (`application.<step>`, `grant.revoke|renew`).

    query    myApplications(state) pendingApprovals application(id) applications(state, dataset)
             grants(state: active|expiring|expired|revoked|all) applicableDatasets(tier)
    mutation createApplication submitApplication approveApplication rejectApplication
             returnApplication withdrawApplication revokeGrant renewGrant
    (and an enterprise's keys and usage: gateway.enterprise.graphql)

Errors are GraphQL errors with `extensions.code`: FORBIDDEN, NOT_FOUND, BAD_USER_INPUT, CONFLICT
(not from the application's state), and the parse/validation codes of the other endpoints.

The root types are lists so other modules' types (demands, quality reports, KPIs) are merged in
with one line each: add the class to `QUERY_TYPES` / `MUTATION_TYPES`. Their resolvers get the
same `AdminContext` (engine, actor, audit)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import strawberry
from graphql import GraphQLError, GraphQLFormattedError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from strawberry.scalars import JSON
from strawberry.tools import merge_types
from strawberry.types import Info

from catalogue.service import load_catalogue
from gateway.access_log import AccessEvent, AccessLog, answer_once_recorded, query_digest
from gateway.client_address import client_address
from gateway.enterprise.graphql import EnterpriseMutation, EnterpriseQuery
from gateway.grants import service as grants
from gateway.grants.models import GrantRecord
from gateway.identity.audit import AuditUnavailable, IdentityAudit
from gateway.identity.bearer import BearerProtector
from gateway.identity.models import User
from gateway.identity.tokens import TokenClaims
from gateway.problems import AUDIT_UNAVAILABLE, Problem, problem_response
from gateway.static_graphql import answer_type, check_document, graphql_response, read_post, require_post
from gateway.workflow import applications as apps
from gateway.workflow.demands_graphql import DemandMutation, DemandQuery
from gateway.workflow.kpi_graphql import KpiQuery
from gateway.workflow.models import Application as ApplicationRow
from gateway.workflow.models import ApplicationEvent
from gateway.workflow.quality_graphql import QualityMutation, QualityQuery
from policies.limits import Limits
from policies.model import Open, Share, Tier
from policies.workflow import Actor, steps_for, valid_treatments
from schema.naming import camel

log = logging.getLogger("shuqiao")
TIER = "admin"
# any one admits; what it allows is policies.workflow (and gateway.enterprise.service)
SCOPES = ["share:read", "grants:approve", "enterprise", "admin"]


@dataclass
class AdminContext:
    engine: AsyncEngine
    actor: Actor
    audit: IdentityAudit | None
    claims: TokenClaims | None
    warning_days: int = grants.DEFAULT_WARNING_DAYS
    sealed: dict[str, Any] = field(default_factory=dict)  # added to the call's sealed variables
    rows: int = 0  # records handed out, for the call's own event
    keyring: Any = None  # the pool keyring: a quality report keyed by a protected field (blind index)
    hasher: Any = None  # the server's keyed hash: API keys made by enterprises (gateway.enterprise)
    key_defaults: Any = None  # the gateway's API-key limits (gateway.enterprise.service.KeyDefaults)


def ctx_of(info: Info) -> AdminContext:
    return info.context


def _err(message: str, code: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code})


def actor_from(claims: TokenClaims, username: str | None = None, enterprise: str | None = None) -> Actor:
    """People: their roles cap their scopes already (gateway.identity.roles), and deciding
    needs the steward or admin role as well as grants:approve. Systems: their scopes. An
    enterprise's user (`enterprise` scope, the enterprise read off their account, never the
    token) applies for their enterprise on the open tier."""
    person = claims.subject != claims.client_id
    approve = "grants:approve" in claims.scopes and (not person or bool(claims.roles & {"steward", "admin"}))
    company = enterprise if person and "enterprise" in claims.scopes and not claims.department else None
    return Actor(
        principal=(username or claims.subject) if person else claims.client_id,
        kind="person" if person else "system",
        department=claims.department,
        enterprise=company,
        apply=("share:read" in claims.scopes and claims.department is not None) or company is not None,
        approve=approve and claims.department is not None,
        admin="admin" in claims.scopes,
    )


# -- types ------------------------------------------------------------------------------------


@strawberry.type(description="A field and how it is (to be) delivered: clear, masked or encrypted.")
class FieldTreatment:
    name: str
    treatment: str


@strawberry.input(description="A field and its treatment; no treatment: the most protective it allows.")
class FieldInput:
    name: str
    treatment: str | None = None


@strawberry.type(description="One step of an application's history.")
class ApplicationStep:
    at: str
    actor: str
    organisation: str | None
    step: str
    from_state: str | None
    to_state: str
    reason: str | None
    changes: JSON | None


def _treatments(value: dict[str, str] | None) -> list[FieldTreatment] | None:
    if value is None:
        return None
    return [FieldTreatment(name=k, treatment=v) for k, v in value.items()]


@strawberry.type(name="Application", description="An application (申请) for a dataset.")
class ApplicationType:
    id: int
    tier: str
    consumer: str
    applicant: str
    provider: str
    dataset: str
    fields: list[FieldTreatment]
    purpose: str
    legal_basis: str
    period_start: str | None
    period_end: str | None
    row_scope: JSON | None
    state: str
    created_at: str | None
    submitted_at: str | None
    decided_at: str | None
    decided_by: str | None
    decision_reason: str | None
    approved_fields: list[FieldTreatment] | None
    approved_end: str | None
    grant_id: int | None
    next_steps: list[str] = strawberry.field(description="What the caller may do next.")
    history: list[ApplicationStep] | None = strawberry.field(
        default=None, description="Oldest step first (on `application(id)` and the mutations)."
    )

    @staticmethod
    def of(
        row: ApplicationRow, actor: Actor, events: list[ApplicationEvent] | None = None
    ) -> ApplicationType:
        d = apps.describe(row, events)
        return ApplicationType(
            id=d["id"],
            tier=d["tier"],
            consumer=d["consumer"],
            applicant=d["applicant"],
            provider=d["provider"],
            dataset=d["dataset"],
            fields=_treatments(d["fields"]) or [],
            purpose=d["purpose"],
            legal_basis=d["legal_basis"],
            period_start=d["period_start"],
            period_end=d["period_end"],
            row_scope=d["row_scope"],
            state=d["state"],
            created_at=d["created_at"],
            submitted_at=d["submitted_at"],
            decided_at=d["decided_at"],
            decided_by=d["decided_by"],
            decision_reason=d["decision_reason"],
            approved_fields=_treatments(d["approved_fields"]),
            approved_end=d["approved_end"],
            grant_id=d["grant_id"],
            next_steps=[s.value for s in steps_for(actor, apps.facts(row))],
            history=[ApplicationStep(**h) for h in d["history"]] if events is not None else None,
        )


@strawberry.type(name="Grant", description="A grant: what an approval created.")
class GrantType:
    id: int
    tier: str
    dataset: str
    consumer: str
    fields: list[str]
    clear_fields: list[str]
    purpose: str
    status: str
    state: str = strawberry.field(description="active, expiring, expired, revoked or pending")
    expires_at: str | None
    created_at: str | None
    created_by: str | None
    revoked_at: str | None
    revoked_by: str | None
    revoke_reason: str | None
    renewed_at: str | None
    application_id: int | None
    row_scope: JSON | None = strawberry.field(description="The rows it opens; null: every row")

    @staticmethod
    def of(row: GrantRecord, warning_days: int) -> GrantType:
        d = grants.describe(row, warning_days=warning_days)
        return GrantType(**{k: d[k] for k in GrantType.__annotations__ if k in d})


@strawberry.type(description="A field an application may name, with the treatments it allows.")
class ApplicableField:
    name: str = strawberry.field(description="As stored (snake_case); camelCase is accepted too")
    graphql_name: str
    title: str
    level: str
    treatments: list[str] = strawberry.field(description="Most protective first")


@strawberry.type(description="A dataset the caller's organisation may apply for.")
class ApplicableDataset:
    code: str
    name: str
    provider: str
    fields: list[ApplicableField]
    resource_code: str = strawberry.field(description="资源代码, as FORBIDDEN errors name it")


@strawberry.input(description="A new application. Dates: YYYY-MM-DD (China Standard Time) or ISO 8601.")
class CreateApplicationInput:
    dataset: str
    fields: list[FieldInput]
    purpose: str
    legal_basis: str
    period_end: str
    period_start: str | None = None
    row_scope: JSON | None = strawberry.field(
        default=None, description='e.g. {"district": {"in": ["雁塔区"]}}'
    )
    tier: str = "share"
    consumer: str | None = strawberry.field(
        default=None, description="Administrators only: apply for another"
    )
    submit: bool = strawberry.field(default=False, description="Submit at once (otherwise a draft)")


@strawberry.input(description="An approval, as asked or narrowed (never wider).")
class ApproveInput:
    fields: list[FieldInput] | None = strawberry.field(
        default=None, description="Fewer fields, lower treatments"
    )
    row_scope: JSON | None = None
    period_end: str | None = None
    reason: str | None = None


# -- resolvers --------------------------------------------------------------------------------


def _tier(value: str) -> Tier:
    try:
        return Tier(value)
    except ValueError:
        raise _err("tier is share or open", "BAD_USER_INPUT") from None


async def _run(coro: Any) -> Any:
    """A service call, its refusals as GraphQL errors with their codes."""
    try:
        return await coro
    except apps.WorkflowError as err:
        raise _err(str(err), err.code) from None


async def _with_history(ctx: AdminContext, row: ApplicationRow) -> ApplicationType:
    row, events = await apps.get(ctx.engine, ctx.actor, row.id or 0)
    ctx.rows += 1
    return ApplicationType.of(row, ctx.actor, events)


def _fields(items: list[FieldInput]) -> dict[str, str | None]:
    return {f.name: f.treatment for f in items}


@strawberry.type
class WorkflowQuery:
    @strawberry.field(description="Your organisation's applications, newest first.")
    async def my_applications(self, info: Info, state: str | None = None) -> list[ApplicationType]:
        ctx = ctx_of(info)
        rows = await _run(apps.list_applications(ctx.engine, ctx.actor, view="mine", state=state))
        ctx.rows += len(rows)
        return [ApplicationType.of(r, ctx.actor) for r in rows]

    @strawberry.field(description="Submitted applications for your department's datasets (stewards).")
    async def pending_approvals(self, info: Info) -> list[ApplicationType]:
        ctx = ctx_of(info)
        rows = await _run(apps.list_applications(ctx.engine, ctx.actor, view="pending"))
        ctx.rows += len(rows)
        return [ApplicationType.of(r, ctx.actor) for r in rows]

    @strawberry.field(description="Every application you may see: yours, and those addressed to you.")
    async def applications(
        self, info: Info, state: str | None = None, dataset: str | None = None
    ) -> list[ApplicationType]:
        ctx = ctx_of(info)
        rows = await _run(apps.list_applications(ctx.engine, ctx.actor, state=state, dataset=dataset))
        ctx.rows += len(rows)
        return [ApplicationType.of(r, ctx.actor) for r in rows]

    @strawberry.field(description="One application with its history.")
    async def application(self, info: Info, id: int) -> ApplicationType:
        ctx = ctx_of(info)
        row, events = await _run(apps.get(ctx.engine, ctx.actor, id))
        ctx.rows += 1
        return ApplicationType.of(row, ctx.actor, events)

    @strawberry.field(
        description="Your grants; a steward's also those on their department's datasets; an "
        "administrator's all. state: active (includes expiring), expiring, expired, revoked, all."
    )
    async def grants(self, info: Info, state: str = "active") -> list[GrantType]:
        ctx = ctx_of(info)
        rows = await _run(
            apps.visible_grants(ctx.engine, ctx.actor, state=state, warning_days=ctx.warning_days)
        )
        ctx.rows += len(rows)
        return [GrantType.of(r, ctx.warning_days) for r in rows]

    @strawberry.field(
        description="Datasets your organisation may apply for (not its own), each with the fields "
        "a grant can give and the treatments each allows (policies.workflow.valid_treatments)."
    )
    async def applicable_datasets(self, info: Info, tier: str = "share") -> list[ApplicableDataset]:
        ctx = ctx_of(info)
        chosen = _tier(tier)
        if not (ctx.actor.apply or ctx.actor.admin):
            raise _err(
                "only a department (share:read), an enterprise's user or an administrator applies",
                "FORBIDDEN",
            )
        catalogue = await load_catalogue(ctx.engine)
        out: list[ApplicableDataset] = []
        for code, spec in sorted(catalogue.datasets.items()):
            # on the open tier only 有条件开放 needs a grant (无条件开放 is everyone's already)
            listed = spec.share is not Share.NONE if chosen is Tier.SHARE else spec.open is Open.CONDITIONAL
            if not listed or spec.department == ctx.actor.department:
                continue
            policy = spec.policy()
            fields = []
            for f in spec.fields:
                valid = valid_treatments(chosen, policy, f.policy())
                if valid:
                    order = sorted(valid, key=lambda t: TREATMENT_ORDER.index(t))
                    fields.append(
                        ApplicableField(
                            name=f.name,
                            graphql_name=camel(f.name),
                            title=f.title,
                            level=f.level.name,
                            treatments=order,
                        )
                    )
            if fields:
                out.append(
                    ApplicableDataset(
                        code=code,
                        name=spec.name,
                        provider=spec.department,
                        fields=fields,
                        resource_code=spec.resource_code,
                    )
                )
        return out


TREATMENT_ORDER = ("masked", "encrypted", "clear")  # most protective first (policies.workflow)


@strawberry.type
class WorkflowMutation:
    @strawberry.mutation(description="Apply for a dataset (a draft unless submit: true).")
    async def create_application(self, info: Info, input: CreateApplicationInput) -> ApplicationType:
        ctx = ctx_of(info)
        row = await _run(
            apps.create(
                ctx.engine,
                ctx.audit,
                ctx.actor,
                tier=_tier(input.tier),
                consumer=input.consumer,
                dataset=input.dataset,
                fields=_fields(input.fields),
                purpose=input.purpose,
                legal_basis=input.legal_basis,
                period_end=apps.parse_time(input.period_end, "periodEnd"),
                period_start=apps.parse_start(input.period_start) if input.period_start else None,
                row_scope=input.row_scope,
                submit_now=input.submit,
            )
        )
        return await _with_history(ctx, row)

    @strawberry.mutation(
        description="Submit a draft, or resubmit a returned application (note: your answer)."
    )
    async def submit_application(self, info: Info, id: int, note: str | None = None) -> ApplicationType:
        ctx = ctx_of(info)
        row = await _run(apps.submit(ctx.engine, ctx.audit, ctx.actor, id, note=note))
        return await _with_history(ctx, row)

    @strawberry.mutation(
        description="Approve as asked or narrowed (stewards of the provider); creates the grant."
    )
    async def approve_application(
        self, info: Info, id: int, input: ApproveInput | None = None
    ) -> ApplicationType:
        ctx = ctx_of(info)
        input = input or ApproveInput()
        row = await _run(
            apps.approve(
                ctx.engine,
                ctx.audit,
                ctx.actor,
                id,
                fields=_fields(input.fields) if input.fields is not None else None,
                row_scope=input.row_scope,
                period_end=apps.parse_time(input.period_end, "periodEnd") if input.period_end else None,
                reason=input.reason,
            )
        )
        return await _with_history(ctx, row)

    @strawberry.mutation(description="Reject, with the reason the applicant is shown.")
    async def reject_application(self, info: Info, id: int, reason: str) -> ApplicationType:
        ctx = ctx_of(info)
        row = await _run(apps.reject(ctx.engine, ctx.audit, ctx.actor, id, reason=reason))
        return await _with_history(ctx, row)

    @strawberry.mutation(description="Return to the applicant for more information (reason required).")
    async def return_application(self, info: Info, id: int, reason: str) -> ApplicationType:
        ctx = ctx_of(info)
        row = await _run(apps.return_(ctx.engine, ctx.audit, ctx.actor, id, reason=reason))
        return await _with_history(ctx, row)

    @strawberry.mutation(description="Withdraw your application (draft, submitted or returned).")
    async def withdraw_application(self, info: Info, id: int, reason: str | None = None) -> ApplicationType:
        ctx = ctx_of(info)
        row = await _run(apps.withdraw(ctx.engine, ctx.audit, ctx.actor, id, reason=reason))
        return await _with_history(ctx, row)

    @strawberry.mutation(description="Revoke a grant (refused everywhere within a second).")
    async def revoke_grant(self, info: Info, id: int, reason: str) -> GrantType:
        ctx = ctx_of(info)
        row = await _run(apps.revoke_grant(ctx.engine, ctx.audit, ctx.actor, id, reason=reason))
        ctx.rows += 1
        return GrantType.of(row, ctx.warning_days)

    @strawberry.mutation(
        description="Extend a grant (the provider's stewards). until: YYYY-MM-DD or ISO 8601."
    )
    async def renew_grant(self, info: Info, id: int, until: str) -> GrantType:
        ctx = ctx_of(info)
        row = await _run(
            apps.renew_grant(ctx.engine, ctx.audit, ctx.actor, id, until=apps.parse_time(until, "until"))
        )
        ctx.rows += 1
        return GrantType.of(row, ctx.warning_days)


# Add another module's root types here (one line each); their resolvers get AdminContext.
QUERY_TYPES: list[type] = [WorkflowQuery, DemandQuery, QualityQuery, KpiQuery, EnterpriseQuery]
MUTATION_TYPES: list[type] = [WorkflowMutation, DemandMutation, QualityMutation, EnterpriseMutation]

Query = merge_types("Query", tuple(QUERY_TYPES))
Mutation = merge_types("Mutation", tuple(MUTATION_TYPES))


class _Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        for error in errors:  # expected errors carry a code; log only the unexpected ones
            original = error.original_error
            if original is not None and not (error.extensions or {}).get("code"):  # noqa: SIM102
                if not isinstance(original, (AuditUnavailable, apps.WorkflowError)):
                    log.error("admin GraphQL error", exc_info=original)


schema = _Schema(query=Query, mutation=Mutation)


# -- the endpoint -----------------------------------------------------------------------------


def _format(error: GraphQLError) -> GraphQLFormattedError:
    out = error.formatted
    code = (error.extensions or {}).get("code")
    if not code:
        if isinstance(error.original_error, apps.WorkflowError):  # e.g. a date that does not parse
            code = error.original_error.code
        elif isinstance(error.original_error, AuditUnavailable):
            out["message"] = AUDIT_UNAVAILABLE.message
            code = AUDIT_UNAVAILABLE.code
        elif error.original_error is not None and not isinstance(error.original_error, GraphQLError):
            out["message"] = "Internal error."
            code = "INTERNAL_SERVER_ERROR"
        else:
            code = "GRAPHQL_VALIDATION_FAILED"
    out["extensions"] = {**(out.get("extensions") or {}), "code": code}
    return out


@dataclass
class _Call:
    """What the call's own audit event says of the request."""

    operation: str = "graphql"
    operation_type: str = "query"
    digest: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    error_codes: list[str] = field(default_factory=list)
    rows: int | None = None


async def handle(request: Request, ctx: AdminContext, call: _Call, limits: Limits) -> Response:
    """Run one GraphQL request for an authenticated caller (`ctx`)."""
    text, variables, operation = await read_post(request, limits)
    call.variables = {"query": text, "variables": variables, "operationName": operation}
    call.digest = query_digest(text, variables)
    checked = check_document(text, operation, limits)
    call.operation, call.operation_type = checked.label, checked.operation_type
    result = await schema.execute(
        text, variable_values=variables, context_value=ctx, operation_name=operation
    )
    call.variables.update(ctx.sealed)
    call.rows = ctx.rows
    payload: dict[str, Any] = {}
    status = 200
    if result.errors:
        payload["errors"] = [_format(e) for e in result.errors]
        call.error_codes = sorted({e["extensions"]["code"] for e in payload["errors"]})
        if result.data is None and all(e.path is None for e in result.errors):
            status = 400  # nothing executed: a request (validation) error
        if "AUDIT_UNAVAILABLE" in call.error_codes:
            raise Problem(
                AUDIT_UNAVAILABLE.status,
                AUDIT_UNAVAILABLE.message,
                AUDIT_UNAVAILABLE.code,
                AUDIT_UNAVAILABLE.headers,
            )
    if status == 200:
        payload["data"] = result.data
    return graphql_response(request, payload, status)


class AdminGraphQL:
    """`POST /admin/graphql`, given what it needs by the app factory: the store, the bearer
    check, the access log (the call's event) and the identity audit (each step's event)."""

    def __init__(
        self,
        engine: AsyncEngine,
        bearer: BearerProtector,
        access_log: AccessLog,
        audit: IdentityAudit | None,
        warning_days: int = grants.DEFAULT_WARNING_DAYS,
        keyring: Callable[[], Any] | None = None,
        check: Callable[[Request], Awaitable[TokenClaims]] | None = None,
        hasher: Any = None,
        key_defaults: Any = None,
        limits: Limits | None = None,
    ) -> None:
        self.engine = engine
        self.limits = limits or Limits()  # the size, depth and breadth a GraphQL request may have
        self.bearer = bearer
        # people's pages (the console): gateway.web.session.SessionOrBearer over `bearer`, so a
        # session cookie (with its CSRF token) is accepted as well as a bearer token
        self.check = check or bearer.validate_request
        self.access_log = access_log
        self.audit = audit
        self.warning_days = warning_days
        self.keyring = keyring  # the current pool keyring (it is reloaded with the catalogue)
        self.hasher = hasher  # enterprises' API keys (gateway.enterprise)
        self.key_defaults = key_defaults

    async def _person(self, claims: TokenClaims) -> tuple[str | None, str | None]:
        """The person's username and enterprise (None, None for a system)."""
        if claims.subject == claims.client_id:
            return None, None
        async with AsyncSession(self.engine) as session:
            user = await session.get(User, claims.subject)
        if user is None:
            return None, None
        return user.username, user.enterprise_code if "enterprise_user" in user.roles.split() else None

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        claims: TokenClaims | None = None
        call = _Call()
        guard = self.bearer.identity.failures  # failed authentication, limited per address
        try:
            require_post(request)
            throttled = await guard.check(request)
            if throttled is not None:
                if not throttled.record:  # a refused burst is recorded once per window
                    return problem_response(
                        Problem(429, throttled.message, "RATE_LIMITED", throttled.decision.headers),
                        answer_type(request, 429),
                    )
                raise Problem(429, throttled.message, "RATE_LIMITED", throttled.decision.headers)
            try:
                claims = await self.check(request)
            except Problem as refused:
                if refused.status == 401:
                    await guard.failed(request)
                raise
            actor = actor_from(claims, *await self._person(claims))
            ctx = AdminContext(self.engine, actor, self.audit, claims, self.warning_days)
            ctx.keyring = self.keyring() if self.keyring is not None else None
            ctx.hasher, ctx.key_defaults = self.hasher, self.key_defaults
            response = await handle(request, ctx, call, self.limits)
        except Problem as problem:
            claims = claims or getattr(problem, "claims", None)  # a valid token without the scope
            response = problem_response(problem, answer_type(request, problem.status))
            call.error_codes = call.error_codes or [problem.code]
        person = claims is not None and claims.subject != claims.client_id
        event = AccessEvent(
            request_id=getattr(request.state, "request_id", ""),
            tier=TIER,
            principal_kind=("person" if person else "department") if claims else "anonymous",
            principal_id=claims.client_id if claims else "anonymous",
            consumer=claims.department if claims else None,
            client_address=client_address(request),
            operation_name=call.operation,
            operation_type=call.operation_type,
            query_digest=call.digest,
            status=response.status_code,
            error_codes=call.error_codes
            or ([] if response.status_code < 400 else [str(response.status_code)]),
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            reads=[{"dataset": "application", "rows": call.rows}] if call.rows is not None else [],
            subject=claims.subject if person and claims else None,
            variables=call.variables or None,
        )
        return await answer_once_recorded(
            self.access_log, event, response, answer_type(request, AUDIT_UNAVAILABLE.status)
        )
