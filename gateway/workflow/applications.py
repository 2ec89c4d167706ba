"""Applications (申请): create, submit, approve (creating a grant), reject, return, withdraw,
list and read, with their history.

Who may take which step is `policies.workflow.may`; this module keeps the state. Every step is
a conditional update (`WHERE state = <the state it starts from>`), so two stewards deciding at
once cannot both win, plus one `application_event` row (the history applicants and stewards
see) and one audit event (`application.<step>`, tier "identity", the path grant changes take:
`gateway.grants.audit`). Recording is fail closed: if the audit event cannot be written the
step is taken back (an approval's grant revoked) and `AuditUnavailable` propagates.

An approval creates its grant through `gateway.grants.service.create_grant`, so it adds to the
consumer's other grants (they combine, `policies.model.GrantSet`) and every worker honours it
within its catalogue poll interval.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
from sqlalchemy import delete, or_, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from catalogue.protection import is_protected
from catalogue.service import load_catalogue
from catalogue.spec import FieldType
from gateway.grants import service as grants
from gateway.grants.models import GrantRecord
from gateway.identity.audit import AuditUnavailable, IdentityAudit
from gateway.workflow.models import Application, ApplicationEvent
from policies import workflow as rules
from policies.model import Tier
from policies.workflow import Actor, Facts, State, Step
from schema.naming import camel

__all__ = [
    "Actor",
    "WorkflowError",
    "approve",
    "create",
    "describe",
    "get",
    "list_applications",
    "reject",
    "return_",
    "submit",
    "withdraw",
]


class WorkflowError(ValueError):
    """A step that cannot be taken. `code` is the GraphQL error code: BAD_USER_INPUT,
    FORBIDDEN, NOT_FOUND or CONFLICT (not from the application's state); the message says
    what would be valid."""

    def __init__(self, message: str, code: str = "BAD_USER_INPUT") -> None:
        super().__init__(message)
        self.code = code


def _aware(dt: datetime | None) -> datetime | None:
    return dt.replace(tzinfo=UTC) if dt is not None and dt.tzinfo is None else dt


def _iso(dt: datetime | None) -> str | None:
    aware = _aware(dt)
    return aware.isoformat() if aware is not None else None


def _loads(text: str | None) -> Any:
    return orjson.loads(text) if text else None


def _dumps(value: Any) -> str | None:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode() if value is not None else None


CST = timezone(timedelta(hours=8))


def parse_time(value: str, what: str = "date") -> datetime:
    """A date means "through that day" (China Standard Time, as a period end); a full ISO 8601
    time is taken as given (UTC when it has no offset)."""
    try:
        if len(value) == 10:
            day = datetime.fromisoformat(value).replace(tzinfo=CST)
            return (day + timedelta(days=1)).astimezone(UTC)
        at = datetime.fromisoformat(value)
    except ValueError:
        raise WorkflowError(f"{what} {value!r} is not a date (YYYY-MM-DD) or an ISO 8601 time") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def parse_start(value: str) -> datetime:
    """A period start: a date is the start of that day (China Standard Time)."""
    if len(value) == 10:
        return parse_time(value, "period start") - timedelta(days=1)
    return parse_time(value, "period start")


def facts(row: Application) -> Facts:
    return Facts(consumer=row.consumer, provider=row.provider, state=State(row.state))


def describe(row: Application, events: list[ApplicationEvent] | None = None) -> dict[str, Any]:
    """An application as the CLI's --json and the admin API show it."""
    doc: dict[str, Any] = {
        "id": row.id,
        "tier": row.tier,
        "consumer": row.consumer,
        "applicant": row.applicant,
        "provider": row.provider,
        "dataset": row.dataset_code,
        "fields": _loads(row.requested) or {},
        "purpose": row.purpose,
        "legal_basis": row.legal_basis,
        "period_start": _iso(row.period_start),
        "period_end": _iso(row.period_end),
        "row_scope": _loads(row.row_scope),
        "state": row.state,
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
        "submitted_at": _iso(row.submitted_at),
        "decided_at": _iso(row.decided_at),
        "decided_by": row.decided_by,
        "decision_reason": row.decision_reason,
        "approved_fields": _loads(row.approved_fields),
        "approved_scope": _loads(row.approved_scope),
        "approved_end": _iso(row.approved_end),
        "grant_id": row.grant_id,
    }
    if events is not None:
        doc["history"] = [describe_event(e) for e in events]
    return doc


def describe_event(e: ApplicationEvent) -> dict[str, Any]:
    return {
        "at": _iso(e.at),
        "actor": e.actor,
        "organisation": e.actor_organisation,
        "step": e.step,
        "from_state": e.from_state,
        "to_state": e.to_state,
        "reason": e.reason,
        "changes": _loads(e.changes),
    }


# ---------------------------------------------------------------- validation


@dataclass(frozen=True)
class _Checked:
    tier: Tier
    dataset: str
    provider: str
    fields: dict[str, str]
    scope: dict[str, Any] | None


def _parse_fields(fields: Mapping[str, str | None] | list[str]) -> dict[str, str | None]:
    """{name: treatment} from a mapping, or from "name" / "name:treatment" strings."""
    if isinstance(fields, Mapping):
        return dict(fields)
    out: dict[str, str | None] = {}
    for item in fields:
        name, _, treatment = item.partition(":")
        out[name.strip()] = treatment.strip() or None
    return out


async def _check(
    engine: AsyncEngine,
    tier: Tier,
    dataset: str,
    fields: Mapping[str, str | None] | list[str],
    scope: Any,
) -> _Checked:
    """The dataset, fields and treatments, and row scope, against the catalogue: the grant
    checks (unknown dataset or field, camelCase names) plus the treatments each field allows."""
    try:
        target = await grants._target(engine, tier, dataset)
        asked = _parse_fields(fields)
        bad = [t for t in asked.values() if t is not None and t not in rules.TREATMENTS]
        if bad:
            raise WorkflowError(
                f"treatment(s) {', '.join(sorted(set(bad)))} unknown; "
                f"treatments: {', '.join(rules.TREATMENTS)}"
            )
        grants._resolve(list(asked), target.fields, "field(s)", dataset)  # every unknown name at once
        by_name = {grants._resolve([n], target.fields, "field", dataset)[0]: t for n, t in asked.items()}
        checked = rules.check_fields(tier, target.dataset, target.fields, by_name)
    except (grants.GrantError, ValueError) as err:
        if isinstance(err, WorkflowError):
            raise
        raise WorkflowError(str(err)) from None
    catalogue = await load_catalogue(engine)
    # a row scope names plain text or whole-number columns (not ones stored encrypted), by
    # their stored or GraphQL names
    kinds = {
        f.name: str if f.type is FieldType.STRING else int
        for f in catalogue.datasets[dataset].fields
        if f.type in (FieldType.STRING, FieldType.INTEGER) and not is_protected(f)
    }
    by_camel = {camel(n): n for n in kinds}
    if isinstance(scope, dict):
        scope = {by_camel.get(k, k): v for k, v in scope.items()}
    try:
        checked_scope = rules.check_scope(scope, kinds)
    except ValueError as err:
        raise WorkflowError(str(err)) from None
    for name, cond in (checked_scope or {}).items():
        values = cond.get("in", [cond.get("eq")])
        if not all(type(v) is kinds[name] for v in values):
            kind = "text" if kinds[name] is str else "whole numbers"
            raise WorkflowError(f"row scope on {name}: its values are {kind}")
    return _Checked(tier, dataset, target.dataset.provider, checked, checked_scope)


def _refuse(verdict: rules.Verdict) -> None:
    if not verdict.allowed:
        raise WorkflowError(verdict.message, verdict.code)


async def _consumer(engine: AsyncEngine, actor: Actor, tier: Tier, consumer: str | None) -> str:
    own = actor.department if tier is Tier.SHARE else actor.enterprise
    if consumer is None or consumer == own:
        if own is None:
            kind = "department" if tier is Tier.SHARE else "enterprise"
            raise WorkflowError(
                f"an application on the {tier.value} tier is made for a {kind}; name it (consumer)"
            )
        return own
    if not actor.admin:
        raise WorkflowError(
            f"{actor.principal} may apply for {own or 'no one'} only, not {consumer}", "FORBIDDEN"
        )
    async with AsyncSession(engine) as session:
        known = await grants._consumers(session, tier)
    if consumer not in known:
        kind = "department" if tier is Tier.SHARE else "enterprise"
        raise WorkflowError(f"no {kind} {consumer!r}; {kind}s: {grants._listing(known)}")
    return consumer


# ---------------------------------------------------------------- steps


async def _record(
    audit: IdentityAudit | None, actor: Actor, row: Application, step: Step, detail: dict[str, Any]
) -> None:
    if audit is None:
        return
    await audit.record(
        f"application.{step.value}",
        status=200,
        principal_kind=actor.kind,
        principal_id=actor.principal,
        consumer=row.consumer,
        detail={
            "application_id": row.id,
            "tier": row.tier,
            "dataset": row.dataset_code,
            "provider": row.provider,
            "state": row.state,
            "acting_for": actor.organisation,
            **detail,
        },
    )


def _event(
    row: Application, actor: Actor, step: Step, before: str | None, reason: str | None, changes: Any
) -> ApplicationEvent:
    return ApplicationEvent(
        application_id=row.id or 0,
        actor=actor.principal,
        actor_organisation=actor.organisation,
        step=step.value,
        from_state=before,
        to_state=row.state,
        reason=(reason or "").strip() or None,
        changes=_dumps(changes),
    )


async def create(
    engine: AsyncEngine,
    audit: IdentityAudit | None,
    actor: Actor,
    *,
    dataset: str,
    fields: Mapping[str, str | None] | list[str],
    purpose: str,
    legal_basis: str,
    period_end: datetime,
    period_start: datetime | None = None,
    row_scope: Any = None,
    tier: Tier = Tier.SHARE,
    consumer: str | None = None,
    submit_now: bool = False,
) -> Application:
    """A new application (draft; submitted at once with `submit_now`)."""
    consumer = await _consumer(engine, actor, tier, consumer)
    checked = await _check(engine, tier, dataset, fields, row_scope)
    _refuse(rules.may(actor, Step.CREATE, Facts(consumer, checked.provider, None)))
    if not purpose.strip():
        raise WorkflowError("an application declares its purpose (用途)")
    if not legal_basis.strip():
        raise WorkflowError("an application names its legal basis (依据), e.g. the regulation or agreement")
    now = datetime.now(UTC)
    try:
        rules.check_period(_aware(period_start), _aware(period_end) or period_end, now)
    except ValueError as err:
        raise WorkflowError(str(err)) from None
    row = Application(
        tier=tier.value,
        consumer=consumer,
        applicant=actor.principal,
        provider=checked.provider,
        dataset_code=dataset,
        requested=_dumps(checked.fields) or "{}",
        purpose=purpose.strip(),
        legal_basis=legal_basis.strip(),
        period_start=period_start,
        period_end=period_end,
        row_scope=_dumps(checked.scope),
        state=State.DRAFT.value,
    )
    async with AsyncSession(engine) as session:
        session.add(row)
        await session.flush()
        session.add(
            _event(row, actor, Step.CREATE, None, None, {"fields": checked.fields, "scope": checked.scope})
        )
        await session.commit()
        await session.refresh(row)
    try:
        await _record(audit, actor, row, Step.CREATE, {"fields": checked.fields, "row_scope": checked.scope})
    except AuditUnavailable:
        async with AsyncSession(engine) as session:
            await session.exec(delete(ApplicationEvent).where(col(ApplicationEvent.application_id) == row.id))
            await session.exec(delete(Application).where(col(Application.id) == row.id))
            await session.commit()
        raise
    if submit_now:
        return await submit(engine, audit, actor, row.id or 0)
    return row


async def _load(session: AsyncSession, actor: Actor, app_id: int, *, see: bool = True) -> Application:
    """`see=False` for a step, whose own rule (`rules.may`, who before state) says who may take it."""
    row = await session.get(Application, app_id)
    if row is None:
        raise WorkflowError(f"no application {app_id}", "NOT_FOUND")
    if see and not rules.may_see(actor, facts(row)):
        raise WorkflowError(f"application {app_id} is neither yours nor addressed to you", "FORBIDDEN")
    return row


async def _transition(
    engine: AsyncEngine,
    audit: IdentityAudit | None,
    actor: Actor,
    app_id: int,
    step: Step,
    *,
    reason: str | None = None,
    values: dict[str, Any] | None = None,
    changes: Any = None,
) -> Application:
    """Take `step`: the rule, then one conditional update and its history row, then the audit
    event (the step taken back if that cannot be written)."""
    now = datetime.now(UTC)
    async with AsyncSession(engine) as session:
        row = await _load(session, actor, app_id, see=False)
        _refuse(rules.may(actor, step, facts(row)))
        if (missing := rules.reason_missing(step, reason)) is not None:
            raise WorkflowError(missing)
        before = row.state
        previous = {k: getattr(row, k) for k in (values or {})} | {
            "state": before,
            "updated_at": row.updated_at,
        }
        new = {"state": rules.next_state(step).value, "updated_at": now, **(values or {})}
        done = await session.exec(
            update(Application)
            .where(col(Application.id) == app_id, col(Application.state) == before)
            .values(**new)
        )
        if done.rowcount != 1:  # someone else moved it first
            await session.rollback()
            raise WorkflowError(f"application {app_id} changed meanwhile; read it again", "CONFLICT")
        for key, value in new.items():
            setattr(row, key, value)
        event = _event(row, actor, step, before, reason, changes)
        session.add(event)
        await session.flush()
        event_id = event.id
        await session.commit()
        await session.refresh(row)
    try:
        await _record(audit, actor, row, step, {"from": before, "reason": reason, "changes": changes})
    except AuditUnavailable:
        async with AsyncSession(engine) as session:
            await session.exec(update(Application).where(col(Application.id) == app_id).values(**previous))
            await session.exec(delete(ApplicationEvent).where(col(ApplicationEvent.id) == event_id))
            await session.commit()
        raise
    return row


async def submit(
    engine: AsyncEngine, audit: IdentityAudit | None, actor: Actor, app_id: int, *, note: str | None = None
) -> Application:
    """Submit a draft, or resubmit a returned application (with `note` answering the steward)."""
    async with AsyncSession(engine) as session:
        row = await _load(session, actor, app_id, see=False)
    step = Step.RESUBMIT if row.state == State.RETURNED.value else Step.SUBMIT
    return await _transition(
        engine, audit, actor, app_id, step, reason=note, values={"submitted_at": datetime.now(UTC)}
    )


async def withdraw(
    engine: AsyncEngine, audit: IdentityAudit | None, actor: Actor, app_id: int, *, reason: str | None = None
) -> Application:
    return await _transition(engine, audit, actor, app_id, Step.WITHDRAW, reason=reason)


async def reject(
    engine: AsyncEngine, audit: IdentityAudit | None, actor: Actor, app_id: int, *, reason: str
) -> Application:
    now = datetime.now(UTC)
    return await _transition(
        engine,
        audit,
        actor,
        app_id,
        Step.REJECT,
        reason=reason,
        values={"decided_at": now, "decided_by": actor.principal, "decision_reason": reason.strip()},
    )


async def return_(
    engine: AsyncEngine, audit: IdentityAudit | None, actor: Actor, app_id: int, *, reason: str
) -> Application:
    """Back to the applicant for more information; they answer by resubmitting."""
    return await _transition(
        engine,
        audit,
        actor,
        app_id,
        Step.RETURN,
        reason=reason,
        values={"decided_by": actor.principal, "decision_reason": reason.strip()},
    )


async def approve(
    engine: AsyncEngine,
    audit: IdentityAudit | None,
    actor: Actor,
    app_id: int,
    *,
    fields: Mapping[str, str | None] | list[str] | None = None,
    row_scope: Any = None,
    period_end: datetime | None = None,
    reason: str | None = None,
) -> Application:
    """Approve as asked, or narrowed: fewer fields, a lower treatment (clear → masked), a
    tighter row scope, an earlier end; never wider. Creates the grant, with the row scope,
    which every read under it then carries into its SQL (`resolvers.sql`)."""
    now = datetime.now(UTC)
    async with AsyncSession(engine) as session:
        row = await _load(session, actor, app_id, see=False)
    _refuse(rules.may(actor, Step.APPROVE, facts(row)))
    tier = Tier(row.tier)
    requested: dict[str, str] = _loads(row.requested) or {}
    if fields is None:
        approved_fields = dict(requested)
    else:
        approved_fields = (await _check(engine, tier, row.dataset_code, fields, None)).fields
        # a treatment left out in the approval keeps the one asked for, if the field allows it
        asked = _parse_fields(fields)
        for name in approved_fields:
            if asked.get(name) is None and name in requested:
                approved_fields[name] = requested[name]
    try:
        rules.check_narrowing(requested, approved_fields)
    except ValueError as err:
        raise WorkflowError(str(err)) from None
    asked_scope = _loads(row.row_scope)
    scope = (
        asked_scope
        if row_scope is None
        else (await _check(engine, tier, row.dataset_code, list(requested), row_scope)).scope
    )
    if not rules.scope_narrows(asked_scope, scope):
        raise WorkflowError(
            "an approval keeps every row-scope condition asked for, with the same or fewer values"
        )
    end = _aware(period_end) or _aware(row.period_end) or now
    start = _aware(row.period_start)
    if not rules.period_narrows((start, _aware(row.period_end) or end), (start, end)):
        raise WorkflowError(f"an approval ends no later than asked ({_iso(row.period_end)})")
    if end <= now:
        raise WorkflowError("the approved period has already ended")
    if start is not None and start > now:
        raise WorkflowError(
            f"the period starts {start:%Y-%m-%d}; a grant is in force from its approval, "
            "so approve on or after then"
        )
    narrowed = {
        k: v
        for k, v in {
            "fields": approved_fields if approved_fields != requested else None,
            "period_end": _iso(end) if end != _aware(row.period_end) else None,
            "row_scope": scope if scope != asked_scope else None,
        }.items()
        if v is not None
    }
    # the state first (so no second approval races this one), then the grant, then its id
    row = await _transition(
        engine,
        None,
        actor,
        app_id,
        Step.APPROVE,
        reason=reason,
        values={
            "decided_at": now,
            "decided_by": actor.principal,
            "decision_reason": (reason or "").strip() or None,
            "approved_fields": _dumps(approved_fields),
            "approved_scope": _dumps(scope),
            "approved_end": end,
        },
        changes=narrowed or None,
    )

    async def undo(why: str, grant_id: int | None) -> None:
        if grant_id is not None:
            await grants.revoke_grant(engine, grant_id, reason=why, by=actor.principal)
        async with AsyncSession(engine) as session:
            await session.exec(
                update(Application)
                .where(col(Application.id) == app_id)
                .values(
                    state=State.SUBMITTED.value,
                    decided_at=None,
                    decided_by=None,
                    decision_reason=None,
                    approved_fields=None,
                    approved_scope=None,
                    approved_end=None,
                    grant_id=None,
                )
            )
            await session.exec(
                delete(ApplicationEvent).where(
                    col(ApplicationEvent.application_id) == app_id,
                    col(ApplicationEvent.step) == Step.APPROVE.value,
                )
            )
            await session.commit()

    try:
        grant = await grants.create_grant(
            engine,
            tier=tier,
            dataset=row.dataset_code,
            consumer=row.consumer,
            fields=list(approved_fields),
            clear_fields=[n for n, t in approved_fields.items() if t == "clear"]
            if tier is Tier.SHARE
            else [],
            purpose=row.purpose,
            expires_at=end,
            created_by=actor.principal,
            application_id=app_id,
            row_scope=scope,
        )
    except grants.GrantError as err:
        await undo("", None)
        raise WorkflowError(str(err)) from None
    async with AsyncSession(engine) as session:
        await session.exec(update(Application).where(col(Application.id) == app_id).values(grant_id=grant.id))
        await session.commit()
    row.grant_id = grant.id
    try:
        await _record(
            audit,
            actor,
            row,
            Step.APPROVE,
            {
                "from": State.SUBMITTED.value,
                "reason": reason,
                "grant_id": grant.id,
                "approved_fields": approved_fields,
                "expires_at": _iso(end),
                "narrowed": narrowed or None,
            },
        )
    except AuditUnavailable:
        await undo("audit log unavailable when approved", grant.id)
        raise
    return row


# ---------------------------------------------------------------- reading


async def get(engine: AsyncEngine, actor: Actor, app_id: int) -> tuple[Application, list[ApplicationEvent]]:
    """The application and its history, oldest step first."""
    async with AsyncSession(engine) as session:
        row = await _load(session, actor, app_id)
        events = (
            await session.exec(
                select(ApplicationEvent)
                .where(col(ApplicationEvent.application_id) == app_id)
                .order_by(col(ApplicationEvent.id))
            )
        ).all()
    return row, list(events)


VIEWS = ("mine", "pending", "all")


async def list_applications(
    engine: AsyncEngine,
    actor: Actor,
    *,
    view: str = "all",
    state: str | None = None,
    dataset: str | None = None,
) -> list[Application]:
    """`mine`: the actor's organisation's applications; `pending`: submitted ones waiting for
    the actor as a steward (an administrator: every submitted one); `all`: everything the actor
    may see. Newest first."""
    if view not in VIEWS:
        raise WorkflowError(f"no view {view!r}; views: {', '.join(VIEWS)}")
    if state is not None and state not in {s.value for s in State}:
        raise WorkflowError(f"no state {state!r}; states: {', '.join(s.value for s in State)}")
    query = select(Application).order_by(col(Application.id).desc())
    org = actor.organisation
    if view == "mine":
        query = query.where(col(Application.consumer) == (org or ""))
    elif view == "pending":
        query = query.where(col(Application.state) == State.SUBMITTED.value)
        if not actor.admin:
            query = query.where(col(Application.provider) == (actor.department if actor.approve else ""))
    elif not actor.admin:
        mine = col(Application.consumer) == (org or "")
        addressed = (col(Application.provider) == (actor.department or "")) & (
            col(Application.state) != State.DRAFT.value
        )
        query = query.where(or_(mine, addressed) if actor.approve else mine)
    if state is not None:
        query = query.where(col(Application.state) == state)
    if dataset is not None:
        query = query.where(col(Application.dataset_code) == dataset)
    async with AsyncSession(engine) as session:
        rows = (await session.exec(query)).all()
    return [r for r in rows if rules.may_see(actor, facts(r))]


# ---------------------------------------------------------------- grants, as the workflow sees them


async def visible_grants(
    engine: AsyncEngine,
    actor: Actor,
    *,
    state: str = "active",
    warning_days: int = grants.DEFAULT_WARNING_DAYS,
) -> list[GrantRecord]:
    """The consumer's own grants; a steward's also those on their department's datasets;
    an administrator's all."""
    try:
        rows = await grants.list_grants(engine, state=state, warning_days=warning_days)
    except grants.GrantError as err:
        raise WorkflowError(str(err)) from None
    if actor.admin:
        return rows
    providers = await _providers(engine)
    return [r for r in rows if rules.may_see_grant(actor, r.consumer, providers.get(r.dataset_code, ""))]


async def _providers(engine: AsyncEngine) -> dict[str, str]:
    catalogue = await load_catalogue(engine)
    return {code: d.department for code, d in catalogue.datasets.items()}


async def _grant_for(engine: AsyncEngine, actor: Actor, grant_id: int, step: str) -> GrantRecord:
    try:
        row = await grants.get_grant(engine, grant_id)
    except grants.GrantError as err:
        raise WorkflowError(str(err), "NOT_FOUND") from None
    provider = (await _providers(engine)).get(row.dataset_code, "")
    verdict = rules.may_change_grant(actor, step, row.consumer, provider)
    _refuse(verdict)
    return row


async def revoke_grant(
    engine: AsyncEngine, audit: IdentityAudit | None, actor: Actor, grant_id: int, *, reason: str
) -> GrantRecord:
    """Revoke (the provider's steward, an administrator, or the consumer giving it up)."""
    from gateway.grants.audit import record_grant_event

    await _grant_for(engine, actor, grant_id, "revoke")
    try:
        row = await grants.revoke_grant(engine, grant_id, reason=reason, by=actor.principal)
    except grants.GrantError as err:
        raise WorkflowError(str(err), "CONFLICT" if "already" in str(err) else "BAD_USER_INPUT") from None
    if audit is not None:  # a revocation stands even if its event cannot be written; the caller is told
        await record_grant_event(
            audit, "grant.revoke", principal_kind=actor.kind, principal_id=actor.principal, row=row
        )
    return row


async def renew_grant(
    engine: AsyncEngine, audit: IdentityAudit | None, actor: Actor, grant_id: int, *, until: datetime
) -> GrantRecord:
    """Extend (the provider's steward or an administrator: a renewal widens access in time)."""
    from gateway.grants.audit import record_grant_event

    before = await _grant_for(engine, actor, grant_id, "renew")
    try:
        row = await grants.renew_grant(engine, grant_id, until=until, by=actor.principal)
    except grants.GrantError as err:
        raise WorkflowError(
            str(err), "CONFLICT" if before.status != "approved" else "BAD_USER_INPUT"
        ) from None
    if audit is not None:
        try:
            await record_grant_event(
                audit, "grant.renew", principal_kind=actor.kind, principal_id=actor.principal, row=row
            )
        except AuditUnavailable:  # take the renewal back: nothing widened goes unrecorded
            async with AsyncSession(engine) as session:
                await session.exec(
                    update(GrantRecord)
                    .where(col(GrantRecord.id) == grant_id)
                    .values(
                        expires_at=before.expires_at,
                        renewed_at=before.renewed_at,
                        renewed_by=before.renewed_by,
                    )
                )
                from catalogue.service import bump_version

                await bump_version(session)
                await session.commit()
            raise
    return row
