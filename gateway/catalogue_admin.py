"""The catalogue as code over HTTP, the machine twin of `shuqiao catalog apply|export`:

    POST /admin/catalogue/apply[?dry_run=1][&allow_destructive=1]   body: the YAML or JSON document
    GET  /admin/catalogue/export[?department=CODE]                  YAML, or JSON (Accept: application/json)

Behind `SessionOrBearer` (gateway.web.session): the one bearer check (admin audience) for
machines, or a signed-in person's session with its CSRF token on POST (the console's
"目录与数据" section) — either way the `catalog:write` or `admin` scope. A steward
(`catalog:write` without `admin`; a person's session never carries `admin`) acts on their own
department only: the token's `department` claim; the file may declare no other, and export shows
only theirs. `?filename=` names the file in the errors' messages (the page sends the upload's).
Every call, answered or refused, is one audit event (`catalogue.apply`, `catalogue.export`)
through the identity admin-event path, naming the person on a session. Errors are the one
problem shape; a file's errors are listed in `extensions.errors` (file, line, column, path, message)."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from catalogue.apply import ApplyResult, DestructiveRefused, ScopeRefused, apply_document, export_document
from catalogue.document import DocumentInvalid, dump, parse
from catalogue.service import CatalogueError
from gateway.identity.audit import AuditUnavailable, IdentityAudit, record_admin_event
from gateway.identity.bearer import BearerProtector
from gateway.identity.service import Identity
from gateway.identity.tokens import ADMIN_AUDIENCE, TokenClaims
from gateway.problems import AUDIT_UNAVAILABLE, Problem, problem_response

log = logging.getLogger("shuqiao.catalogue")
NO_STORE = {"Cache-Control": "no-store"}
MAX_BODY = 8 * 1024 * 1024  # a catalogue of thousands of datasets is well under this
YAML_MEDIA = "application/yaml; charset=utf-8"


def apply_detail(result: ApplyResult | None, digest: str | None, **extra: Any) -> dict[str, Any]:
    """What an apply's audit event says: counts by kind, what was lost, the file's digest."""
    detail: dict[str, Any] = {"sha256": digest, **extra}
    if result is not None:
        plan = result.plan
        detail.update(
            applied=result.applied,
            version=result.version,
            changes=len(plan.changes),
            added=sorted(c.target for c in plan.changes if c.action == "add" and c.kind == "dataset"),
            removed=sorted(c.target for c in plan.changes if c.action == "remove"),
            destructive=[f"{c.target}: {c.loses}" for c in plan.destructive] or None,
        )
    return detail


def principal_of(request: Request, claims: TokenClaims | None) -> dict[str, Any]:
    """Who an admin event names: the signed-in person (a console session: their user name), else
    the token's client, else nobody."""
    person = getattr(request.state, "web_session", None)
    if person is not None and claims is not None:
        return {"principal_kind": "user", "principal_id": person.username}
    if claims is not None:
        return {"principal_kind": "client", "principal_id": claims.client_id}
    return {"principal_kind": "anonymous", "principal_id": None}


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


Check = Callable[[Request], Awaitable[TokenClaims]]


def catalogue_protector(identity: Identity) -> BearerProtector:
    """The scope the catalogue and data-loading endpoints need: catalog:write, or admin."""
    return identity.protector(
        realm="shuqiao-admin", audience=ADMIN_AUDIENCE, scopes=["catalog:write", "admin"]
    )


class CatalogueAPI:
    """`check`: how a caller is authenticated — the app gives SessionOrBearer over
    `catalogue_protector`; without it, bearer tokens only."""

    def __init__(
        self, identity: Identity, audit: IdentityAudit | None = None, check: Check | None = None
    ) -> None:
        self.identity = identity
        self.audit = audit or identity.audit
        self.bearer = catalogue_protector(identity)
        self.check: Check = check or self.bearer.validate_request

    def routes(self) -> list[Route]:
        return [
            Route("/apply", self.apply, methods=["POST"]),
            Route("/export", self.export, methods=["GET"]),
        ]

    async def _claims(self, request: Request) -> TokenClaims:
        try:
            claims = await self.check(request)
        except Problem as refused:
            # a valid token without the scope, or a session's request without its CSRF token: who asked
            request.state.catalogue_claims = getattr(refused, "claims", None)
            if refused.status == 401:
                await self.identity.failures.failed(request)
            raise
        request.state.catalogue_claims = claims
        return claims

    @staticmethod
    def _allowed(claims: TokenClaims) -> frozenset[str] | None:
        """None: every department (admin); else the steward's own."""
        if "admin" in claims.scopes:
            return None
        if not claims.department:
            raise Problem(403, "A catalog:write token must name its department.", "FORBIDDEN")
        return frozenset({claims.department})

    async def _answer(self, request: Request, operation: str, started: float, run: Any) -> Response:
        """Throttle, run, record: one audit event per call, answered or refused (fail closed:
        an answer whose event cannot be recorded is withheld)."""
        guard = self.identity.failures
        throttled = await guard.check(request)
        if throttled is not None:
            try:
                await guard.record_refusal(request, throttled, "admin")
            except AuditUnavailable:
                return problem_response(AUDIT_UNAVAILABLE, headers=NO_STORE)
            return problem_response(
                Problem(429, throttled.message, "RATE_LIMITED", throttled.decision.headers)
            )
        detail: dict[str, Any] = {}
        target: str | None = None
        try:
            response, target, detail = await run(request)
            error = None
        except Problem as problem:
            response = problem_response(problem, headers=NO_STORE)
            error = problem.code.lower()
            detail = getattr(problem, "audit_detail", detail)
        claims: TokenClaims | None = getattr(request.state, "catalogue_claims", None)
        try:
            await record_admin_event(
                self.audit,
                operation,
                status=response.status_code,
                **principal_of(request, claims),
                subject=claims.subject if claims is not None and claims.subject != claims.client_id else None,
                consumer=claims.department if claims is not None else None,
                target=target,
                detail=detail,
                error=error,
                request=request,
                started=started,
            )
        except AuditUnavailable:
            log.exception("catalogue audit write failed; answer withheld")
            return problem_response(AUDIT_UNAVAILABLE, headers=NO_STORE)
        return response

    async def apply(self, request: Request) -> Response:
        return await self._answer(request, "catalogue.apply", time.perf_counter(), self._apply)

    async def export(self, request: Request) -> Response:
        return await self._answer(request, "catalogue.export", time.perf_counter(), self._export)

    async def _apply(self, request: Request) -> tuple[Response, str | None, dict[str, Any]]:
        claims = await self._claims(request)
        allowed = self._allowed(claims)
        dry_run = _flag(request, "dry_run")
        destructive = _flag(request, "allow_destructive")
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise Problem(413, f"The catalogue document is over {MAX_BODY // 1024 // 1024} MB.", "TOO_LARGE")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise Problem(400, "The catalogue document must be UTF-8.", "INVALID_CATALOGUE") from None
        sha = digest(text)
        base = {"sha256": sha, "dry_run": dry_run}
        try:
            doc = parse(text, _filename(request))
        except DocumentInvalid as invalid:
            problem = Problem(
                400,
                f"The catalogue document has {len(invalid.errors)} error(s).",
                "INVALID_CATALOGUE",
                extensions={"errors": [{"file": invalid.filename, **e.as_dict()} for e in invalid.errors]},
            )
            problem.audit_detail = {**base, "errors": len(invalid.errors)}  # type: ignore[attr-defined]
            raise problem from None
        target = ",".join(d.code for d in doc.departments) or None
        try:
            result = await apply_document(
                self.identity.engine,
                doc,
                dry_run=dry_run,
                allow_destructive=destructive,
                allowed_departments=allowed,
            )
        except ScopeRefused as err:
            raise _with_detail(Problem(403, str(err), "FORBIDDEN"), base) from None
        except DestructiveRefused as err:
            problem = Problem(409, str(err), "DESTRUCTIVE_CHANGE", extensions={"plan": err.plan.as_dict()})
            raise _with_detail(
                problem, apply_detail(ApplyResult(err.plan, False), sha, dry_run=dry_run)
            ) from None
        except CatalogueError as err:
            raise _with_detail(Problem(400, str(err), "CATALOGUE_REJECTED"), base) from None
        body = orjson.dumps(result.as_dict())
        response = Response(body, media_type="application/json", headers=NO_STORE)
        return response, target, apply_detail(result, sha, dry_run=dry_run)

    async def _export(self, request: Request) -> tuple[Response, str | None, dict[str, Any]]:
        claims = await self._claims(request)
        allowed = self._allowed(claims)
        wanted = request.query_params.get("department")
        departments: set[str] | None = None if allowed is None else set(allowed)
        if wanted:
            if allowed is not None and wanted not in allowed:
                raise Problem(403, f"You may export only department {next(iter(allowed))}.", "FORBIDDEN")
            departments = {wanted}
        doc = await export_document(self.identity.engine, departments)
        as_json = "application/json" in request.headers.get("accept", "")
        text = dump(doc, as_json=as_json)
        media = "application/json" if as_json else YAML_MEDIA
        target = ",".join(sorted(departments)) if departments is not None else "*"
        detail = {"datasets": len(doc.datasets), "format": "json" if as_json else "yaml"}
        return Response(text, media_type=media, headers=NO_STORE), target, detail


def _filename(request: Request) -> str:
    """The name the errors give the document: the upload's own (its last part, printable), or
    "request body"."""
    name = request.query_params.get("filename", "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable())[:120]
    return name or "request body"


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true", "yes")


def _with_detail(problem: Problem, detail: dict[str, Any]) -> Problem:
    problem.audit_detail = detail  # type: ignore[attr-defined]
    return problem


def catalogue_routes(identity: Identity, check: Check | None = None) -> list[Route]:
    """Under `Mount("/admin/catalogue")`; `check`: see CatalogueAPI."""
    return CatalogueAPI(identity, check=check).routes()
