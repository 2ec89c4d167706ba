"""The app factory: every route and middleware, in order."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from gateway import health, metrics, subgraphs, tracing
from gateway.access_log import AccessLog, LoggingAccessLog
from gateway.audit import ChainedAuditLog, VariableCipher
from gateway.audit.alerts import AlertEngine, AlertRules, AlertTask
from gateway.audit.checkpoints import CheckpointTask
from gateway.audit.field_index import FieldIndexTask
from gateway.audit.forward import Forwarder, ForwardTask, delivered_by_all, sinks_from_settings
from gateway.audit.http import EXPORT_PATH, AuditAPI
from gateway.audit.partitions import PartitionTask
from gateway.audit.retention import RetentionTask, archive_dir, prune_limit
from gateway.catalogue_admin import catalogue_protector, catalogue_routes
from gateway.client_address import ClientAddressMiddleware, parse_proxies
from gateway.crypto.routes import SigningKeysEndpoint
from gateway.crypto.service import DepartmentKeyDirectory, DepartmentKeyRefresh
from gateway.crypto.signing import ResponseSigner, ResponseSigningMiddleware, open_signing_store
from gateway.db import create_engine, pool_fits
from gateway.enterprise.pages import MOUNT as ENTERPRISE
from gateway.enterprise.pages import SCOPES as ENTERPRISE_SCOPES
from gateway.enterprise.pages import enterprise_pages
from gateway.enterprise.service import KeyDefaults
from gateway.explorer import Explorer
from gateway.graphql_http import GraphQLEndpoint
from gateway.identity import discovery
from gateway.identity.apikeys import ApiKeyVerifier
from gateway.identity.audit import record_admin_event
from gateway.identity.routes import admin_routes, identity_static, oauth_routes
from gateway.identity.service import Identity
from gateway.identity.tokens import TokenService, load_signing_key
from gateway.loading.http import DataLoadAPI
from gateway.loading.scheduler import SyncScheduler
from gateway.middleware import FailureMiddleware, RequestIdMiddleware, error_response, failure_problem
from gateway.portal import cors
from gateway.portal.ckan import CkanAPI
from gateway.portal.dcat import DcatEndpoints
from gateway.portal.downloads import Downloads
from gateway.portal.pages import PortalPages
from gateway.portal.search import SearchEndpoint
from gateway.portal.stats_http import StatsEndpoints
from gateway.portal.usage import UsageRollupTask, counted_through
from gateway.problems import Problem, problem_response
from gateway.read_connections import ReadConnections
from gateway.registry import SchemaRegistry
from gateway.request_log import RequestLogMiddleware, log_line
from gateway.secrets import SecretHasher, load_master_key
from gateway.settings import Settings
from gateway.state import GatewayState
from gateway.static_graphql import EveryMethod
from gateway.watermark_http import WatermarkTrace
from gateway.web.session import WEB_CLIENT_ID, SessionOrBearer, WebSessions
from gateway.workbench.client import CLIENT_ID as WORKBENCH_CLIENT_ID
from gateway.workbench.pages import Workbench
from gateway.workflow.admin_graphql import SCOPES as WORKFLOW_SCOPES
from gateway.workflow.admin_graphql import AdminGraphQL
from gateway.workflow.console import MOUNT as CONSOLE
from gateway.workflow.console import Console
from gateway.workflow.kpi import KpiSnapshotTask
from gateway.workflow.kpi_http import SCOPES as KPI_SCOPES
from gateway.workflow.kpi_http import KpiEndpoints
from policies.model import Tier

# Clients that are the gateway's own pages (the console and officers' pages, the workbench).
FIRST_PARTY_CLIENTS = frozenset({WEB_CLIENT_ID, WORKBENCH_CLIENT_ID})
log = logging.getLogger("shuqiao")


def build_state(settings: Settings, access_log: AccessLog | None = None) -> GatewayState:
    engine = create_engine(
        settings.database_url, pool_size=settings.db_pool_size, pool_timeout=settings.db_pool_timeout
    )
    master_key = load_master_key(settings.master_key_file)
    hasher = SecretHasher(master_key)
    tokens = TokenService(
        load_signing_key(settings.var_dir / "keys" / "token-es256.pem"),
        settings.issuer,
        settings.token_ttl_seconds,
    )
    access_log = access_log or _access_log(settings, engine, master_key)
    return GatewayState(
        settings=settings,
        engine=engine,
        registry=SchemaRegistry(engine, settings.limits, settings.catalogue_poll_seconds, master_key),
        tokens=tokens,
        hasher=hasher,
        api_keys=ApiKeyVerifier(engine, hasher),
        identity=Identity.build(
            engine,
            hasher,
            tokens,
            redis_url=settings.redis_url,
            namespace=settings.redis_namespace,
            anonymous_rate=settings.anonymous_rate,
            key_per_minute=settings.api_key_rate_per_minute,
            key_per_day=settings.api_key_daily_quota,
            client_rate=settings.share_client_rate,
            auth_failure_rate=settings.auth_failure_rate,
            audit_log=access_log,  # sign-ins and token events (gateway.identity.audit)
        ),
        access_log=access_log,
        signer=ResponseSigner(open_signing_store(settings.var_dir)),
        department_keys=DepartmentKeyDirectory(engine, settings.catalogue_poll_seconds),
        # at most half of what the audit writer leaves, so identity, the registry and requests
        # that find none of the kept ones idle always find one in the pool (a pool of 2: none kept)
        reads=ReadConnections(engine, hold=(settings.db_pool_size - 1) // 2),
    )


def _access_log(settings: Settings, engine: AsyncEngine, master_key: bytes) -> AccessLog:
    if settings.audit_store == "chain":
        return ChainedAuditLog(engine, VariableCipher.from_master_key(master_key), hold_connection=True)
    if settings.audit_store == "log":
        return LoggingAccessLog()
    raise ValueError(f"SHUQIAO_AUDIT_STORE must be chain or log, not {settings.audit_store!r}")


AuditTask = (
    CheckpointTask
    | AlertTask
    | RetentionTask
    | FieldIndexTask
    | UsageRollupTask
    | ForwardTask
    | PartitionTask
)


def _audit_background(settings: Settings, state: GatewayState) -> list[AuditTask]:
    """The search index, the portal's usage rollup, signed checkpoints, alert rules, retention and
    forwarding to the SOC, all reading the chain beside the request path; on PostgreSQL the
    monthly partitions of audit_event (gateway.audit.partitions)."""
    if settings.audit_store != "chain":
        return []
    tasks: list[AuditTask] = [
        FieldIndexTask(state.engine),
        UsageRollupTask(state.engine),  # usage per dataset and day for /stats (gateway.portal.usage)
    ]
    sink = state.access_log
    witness = sink.witness if isinstance(sink, ChainedAuditLog) else None
    if state.engine.dialect.name == "postgresql":
        tasks.append(PartitionTask(state.engine))  # at start-up, then every six hours
    if settings.audit_checkpoint_events > 0:
        tasks.append(
            CheckpointTask(
                state.engine,
                state.signer.store,
                settings.audit_checkpoint_events,
                settings.audit_checkpoint_seconds,
                witness=witness,
            )
        )
    if settings.audit_alerts:
        tasks.append(
            AlertTask(AlertEngine(state.engine, AlertRules.from_settings(settings), witness=witness))
        )
    # SHUQIAO_AUDIT_SYSLOG_TARGET, _FORWARD_JSONL, _ALERT_WEBHOOK_URL
    sinks = sinks_from_settings(settings, state.signer)
    if settings.audit_retention_days > 0:
        tasks.append(
            RetentionTask(
                state.engine,
                state.signer.store,
                archive_dir(settings.var_dir),
                settings.audit_retention_days,
                # nothing the usage rollup has yet to count or a SOC sink to deliver is pruned
                held=lambda: prune_limit(
                    state.engine, [counted_through, lambda e: delivered_by_all(e, sinks)]
                ),
            )
        )
    if sinks:
        tasks.append(ForwardTask([Forwarder(state.engine, sink) for sink in sinks]))
    return tasks


def _sync_scheduler(settings: Settings, state: GatewayState) -> SyncScheduler | None:
    if not settings.sync:
        return None

    async def audit(operation: str, status: int, detail: dict[str, Any], error: str | None) -> None:
        await record_admin_event(
            state.identity.audit,
            operation,
            status=status,
            principal_kind="operator",
            principal_id="scheduler",
            target=detail.get("dataset"),
            detail=detail,
            error=error,
        )

    return SyncScheduler(state.engine, load_master_key(settings.master_key_file), audit)


_STATUS_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such path, method not allowed) in the one problem shape."""
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    code = _STATUS_CODES.get(status, "BAD_REQUEST" if status < 500 else "INTERNAL_SERVER_ERROR")
    return problem_response(Problem(status, str(exc.detail), code, dict(exc.headers or {})))


async def _last_resort(request: Request, exc: Exception) -> Response:
    """Starlette's outermost handler, for a failure in the middleware above FailureMiddleware:
    still the problem document (with the request id when one was assigned), never a text page."""
    response = error_response(request.scope, failure_problem(request.scope, exc))
    if request_id := request.scope.get("state", {}).get("request_id"):
        response.headers["X-Request-ID"] = request_id
    return response


def _workers() -> int:
    """uvicorn's --workers defaults to WEB_CONCURRENCY; each worker has a pool of its own."""
    try:
        return max(1, int(os.environ.get("WEB_CONCURRENCY", "1")))
    except ValueError:
        return 1


def create_app(settings: Settings | None = None, *, state: GatewayState | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    state = state or build_state(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        metrics.watch_pool(state.engine)
        await state.registry.refresh(force=True)
        if warning := await pool_fits(state.engine, settings.db_pool_size, _workers()):
            log.warning("%s", warning)
        if (start := getattr(state.access_log, "start", None)) is not None:
            try:
                await start()
            except Exception as err:  # the first append tries again; until then it fails closed
                log.error("audit writer did not start: %s", err)
        background: list[Any] = [*_audit_background(settings, state)]
        if settings.kpi_snapshots:  # the day's KPI snapshot, once (gateway.workflow.kpi)
            background.append(KpiSnapshotTask(state.engine))
        app.state.audit_tasks = background  # for tests that must not race the evaluator
        for task in background:
            task.start()
        sync = _sync_scheduler(settings, state)  # SHUQIAO_SYNC=on: sources on their update cycle
        app.state.sync = sync
        if sync is not None:
            sync.start()
        yield
        if sync is not None:
            await sync.stop()
        for task in background:
            await task.stop()
        close = getattr(state.access_log, "aclose", None)
        if close is not None:
            await close()
        if state.reads is not None:
            await state.reads.aclose()
        metrics.unwatch_pool(state.engine)
        await state.engine.dispose()

    master_key = load_master_key(settings.master_key_file)
    # people sign in once for every page of the gateway's own (gateway.web.session)
    sessions = WebSessions(
        state.identity,
        master_key,
        absolute_seconds=settings.web_session_seconds,
        idle_seconds=settings.web_session_idle_seconds,
    )
    audit = AuditAPI(
        state.engine,
        state.access_log,
        SessionOrBearer(sessions, state.identity.protector(realm="shuqiao-audit", scopes=["audit:read"])),
        VariableCipher.from_master_key(master_key),
        settings.audit_export_max_events,
        master_key=master_key,
        limits=settings.limits,
        archives=(state.signer.store, archive_dir(settings.var_dir)),  # the whole history
    )
    # the admin GraphQL endpoint and the console page: a session cookie (people) or a bearer token
    admin_protector = state.identity.protector(realm="shuqiao-admin", scopes=WORKFLOW_SCOPES)
    admin_check = SessionOrBearer(sessions, admin_protector)
    console = Console(admin_check, state.access_log)
    enterprise = enterprise_pages(
        SessionOrBearer(
            sessions, state.identity.protector(realm="shuqiao-enterprise", scopes=ENTERPRISE_SCOPES)
        ),
        state.access_log,
    )
    # catalogue as code and data loading: a steward's session (the console's 目录与数据) or a token
    steward_check = SessionOrBearer(sessions, catalogue_protector(state.identity))
    explorer = Explorer(state)
    pages = PortalPages(state, explorer.preview)
    workbench = Workbench(state)
    downloads = Downloads(state)
    ckan = CkanAPI(state)
    dcat = DcatEndpoints(state)
    stats = StatsEndpoints(state)
    kpis = KpiEndpoints(
        state.engine,
        state.identity.protector(realm="shuqiao-kpi", scopes=KPI_SCOPES),
        state.identity.limiter,
    )
    routes = [
        Route("/healthz", health.healthz),
        Route("/readyz", health.readyz),
        *metrics.routes(settings.metrics, settings.metrics_allow),  # GET /metrics (Prometheus)
        Route(
            "/open/graphql",
            EveryMethod(GraphQLEndpoint(Tier.OPEN, state).handle),
        ),
        Route(
            "/share/graphql",
            EveryMethod(GraphQLEndpoint(Tier.SHARE, state).handle),
        ),
        # RFC 6749 endpoints and sign-in pages; the gateway's own pages sign people in without consent
        Mount("/oauth", routes=oauth_routes(state.identity, first_party=FIRST_PARTY_CLIENTS)),
        Mount("/admin/identity", routes=admin_routes(state.identity)),  # clients, people, API keys
        # GET /admin/data/datasets, POST /admin/data/{dataset}/load
        Mount("/admin/data", routes=DataLoadAPI(state, steward_check).routes()),
        # applications, approvals, grants (gateway/workflow/admin_graphql.py)
        Route(
            "/admin/graphql",
            EveryMethod(
                AdminGraphQL(
                    state.engine,
                    admin_protector,
                    state.access_log,
                    state.identity.audit,
                    settings.grant_expiry_warning_days,
                    keyring=lambda: state.registry.keyring,  # quality reports keyed by 身份证号 (blind index)
                    check=admin_check,
                    hasher=state.identity.hasher,  # enterprises make their own API keys
                    key_defaults=KeyDefaults(settings.api_key_rate_per_minute, settings.api_key_daily_quota),
                    limits=settings.limits,
                ).handle
            ),
        ),
        Mount("/static/identity", identity_static(), name="identity-static"),
        Route("/.well-known/openid-configuration", discovery.openid_configuration),
        Route("/.well-known/oauth-authorization-server", discovery.openid_configuration),
        Route("/.well-known/oauth-protected-resource", discovery.protected_resource),
        Route("/.well-known/jwks.json", discovery.jwks),
        Route("/share/subgraphs/{department}.graphql", subgraphs.subgraph_sdl),
        # Apollo Federation v2 subgraphs: the caller's own token, the caller's policies
        Route(
            "/share/subgraphs/{department}/graphql",
            EveryMethod(subgraphs.SubgraphEndpoint(state).handle),
        ),
        Route("/keys/sm2", SigningKeysEndpoint(state.signer.store).handle),
        Mount("/web", routes=sessions.routes()),  # sign-in, callback, sign-out, who is signed in
        # The plan's KPIs: overall figures public, per department with a bearer (share:read or admin).
        # the workflow console (工作台): applications, approvals, grants, demands, quality reports
        Route(CONSOLE, console.page),
        Mount(CONSOLE, routes=console.routes()),
        # an enterprise's keys, grants, usage and applications (the dataset pages link to /enterprise/apply)
        Route(ENTERPRISE, enterprise.page),
        Route(f"{ENTERPRISE}/apply", enterprise.page),
        Mount(ENTERPRISE, routes=enterprise.routes()),
        Route("/kpi", kpis.page),  # the same, as a page (Chinese first, no script)
        Route("/kpi.json", kpis.json),
        Route("/kpi.csv", kpis.csv),
        Mount(
            "/admin/catalogue", routes=catalogue_routes(state.identity, steward_check)
        ),  # catalogue as code
        # The officers' watermark trace (数据水印溯源): its page and API, before the /audit mount
        *WatermarkTrace(audit, master_key, state.signer).routes(),
        # The officer page and API (audit:read): search, detail, stats, export, verify, alerts.
        Route("/audit", audit.page),
        Mount("/audit", routes=audit.routes()),
        # The public open-data page, its assets and catalogue JSON; GET / → /explore.
        Route("/", explorer.root),
        # server-rendered, Chinese first (?lang=en), working without JavaScript (gateway.portal.pages)
        Route("/explore", pages.catalogue),
        Route("/explore.json", SearchEndpoint(state).handle),  # search with facets: the page's twin
        # Downloads (docs/portal.md): /open/download/{code}.{fmt}, and the explorer's link to it;
        # listed before the /explore mount, which would otherwise take the second.
        *downloads.routes(),
        Route("/explore/datasets/{code}.json", pages.dataset_json),  # the dataset page's twin
        *dcat.routes(),  # /catalog.ttl|.jsonld and /explore/datasets/{code}.ttl|.jsonld
        Route("/explore/datasets/{code}", pages.dataset),
        Mount("/explore", routes=explorer.routes()),
        # The query workbench (docs/portal.md): GraphiQL on the open tier, and on the share tier
        # with the person's own token from the page's sign-in (gateway.workbench)
        Route("/graphiql", workbench.open_page),
        Mount("/graphiql", routes=workbench.routes()),
        # For harvesters (docs/portal.md): the CKAN Action API's read part, in CKAN's own envelope
        *ckan.routes(),
        # Public usage statistics (docs/portal.md): /stats, /stats.json, /stats/datasets/{code}.json
        *stats.routes(),
    ]
    cors_rules = cors.policies(settings.cors_open_origins, settings.cors_share_origins)
    observers = [log_line, metrics.observe_request] if settings.metrics else [log_line]
    middleware = [
        # outermost first: tracing (optional), then the access-log line and request metrics,
        # which see the answer as sent (docs/operations.md)
        *tracing.middleware(settings.otel),
        Middleware(RequestLogMiddleware, observers=observers, on_response=tracing.observers(settings.otel)),
        # CORS per tier by path prefix (gateway.portal.cors): preflights answered here, logged above
        Middleware(cors.CORSMiddleware, rules=cors_rules),
        # the signature covers X-Request-ID, so signing wraps the request id
        Middleware(
            ResponseSigningMiddleware,
            signer=state.signer,
            always=("/share/graphql", EXPORT_PATH),
            always_under=(subgraphs.PREFIX,),  # each node signs its subgraphs' answers (DESIGN §8)
        ),
        Middleware(RequestIdMiddleware),
        # who is calling, once: X-Forwarded-For only from SHUQIAO_TRUSTED_PROXIES
        Middleware(ClientAddressMiddleware, trusted_proxies=parse_proxies(settings.trusted_proxies)),
        Middleware(FailureMiddleware),  # any exception below: an audited problem document
        Middleware(DepartmentKeyRefresh, directory=state.department_keys, under=(subgraphs.PREFIX,)),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        debug=settings.debug,
        # a pool timeout reaches FailureMiddleware like any failure: 503 SERVICE_BUSY, recorded
        exception_handlers={HTTPException: _http_exception, Exception: _last_resort},
    )
    app.state.gateway = state
    return app
