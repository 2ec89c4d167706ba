"""Settings from the environment (prefix SHUQIAO_), with defaults for the embedded demo."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import overload

from gateway.db import DEFAULT_POOL_SIZE, DEFAULT_POOL_TIMEOUT
from policies.limits import Limits

DEFAULT_VAR_DIR = Path("var")


def _env(name: str, default: str) -> str:
    return os.environ.get(f"SHUQIAO_{name}", default)


def _int(name: str, default: int) -> int:
    return int(_env(name, str(default)))


def _path(name: str) -> Path | None:
    value = _env(name, "").strip()
    return Path(value) if value else None


@overload
def _switch(name: str, default: bool) -> bool: ...
@overload
def _switch(name: str, default: None) -> bool | None: ...
def _switch(name: str, default: bool | None) -> bool | None:
    value = _env(name, "").strip().lower()
    if not value:
        return default
    if value in ("on", "1", "true", "yes"):
        return True
    if value in ("off", "0", "false", "no"):
        return False
    raise ValueError(f"SHUQIAO_{name} must be on or off, not {value!r}")


def parse_allow(text: str) -> tuple[str, ...]:
    """SHUQIAO_METRICS_ALLOW: comma-separated networks (CIDR) or addresses, checked at start."""
    nets = tuple(p.strip() for p in text.split(",") if p.strip())
    for net in nets:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ValueError(f"SHUQIAO_METRICS_ALLOW: {net!r} is not an IP network") from None
    return nets


def _origins(text: str) -> tuple[str, ...]:
    """SHUQIAO_CORS_*_ORIGINS: comma-separated origins (scheme://host[:port]) or `*`."""
    return tuple(o.strip().rstrip("/") for o in text.split(",") if o.strip())


def default_issuer(host: str, port: int) -> str:
    """The issuer (and public base URL) of a gateway served at host:port, for when SHUQIAO_ISSUER
    is not set. A wildcard address is not an address clients use: the loopback one stands in."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def serve_environment(host: str, port: int, environ: Mapping[str, str]) -> dict[str, str]:
    """What `shuqiao serve --host --port` adds to the environment its workers read their
    settings from: the issuer follows the address served, unless SHUQIAO_ISSUER is set."""
    if environ.get("SHUQIAO_ISSUER", "").strip():
        return {}
    return {"SHUQIAO_ISSUER": default_issuer(host, port)}


def _pool_size(size: int) -> int:
    # The audit writer keeps one connection; requests need at least one more.
    if size < 2:
        raise ValueError(f"SHUQIAO_DB_POOL_SIZE must be at least 2, not {size}")
    return size


def normalise_database_url(url: str) -> str:
    """Accept the plain URLs people paste and pick the async drivers we ship."""
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.split(":///", 1)[1]
    return url


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite+aiosqlite:///var/shuqiao.db"
    var_dir: Path = DEFAULT_VAR_DIR
    issuer: str = "http://127.0.0.1:8000"
    token_ttl_seconds: int = 3600
    catalogue_poll_seconds: float = 1.0
    # Database connections per process (gateway.db.create_engine: fixed, no overflow) and how
    # long a request waits for one before a 503.
    db_pool_size: int = DEFAULT_POOL_SIZE
    db_pool_timeout: float = DEFAULT_POOL_TIMEOUT
    limits: Limits = field(default_factory=Limits)
    # Where the master key-encryption key lives; never in the database.
    master_key_file: Path = DEFAULT_VAR_DIR / "master.key"
    debug: bool = False
    # "chain": the SM3 hash-chained audit table (durable before data leaves);
    # "log": JSON lines on the shuqiao.access logger only.
    # Rate limits on the open tier (gateway.identity.ratelimit): shared through Redis by every
    # worker when redis_url is set, in-process otherwise.
    redis_url: str | None = None
    redis_namespace: str = "shuqiao"
    anonymous_rate: str = "60/minute"
    api_key_rate_per_minute: int = 120
    api_key_daily_quota: int = 10_000
    share_client_rate: str | None = None  # share-tier requests per OAuth client, e.g. "600/minute"
    # Failed authentications per client address (bad secret, token, API key, password) before
    # 429 (gateway.identity.failures); and the proxies whose X-Forwarded-For is believed
    # (gateway.client_address; IPs or CIDRs, none by default).
    auth_failure_rate: str = "20/minute"
    # The open-data portal (gateway.portal, docs/portal.md): downloads per caller (address or API
    # key), the explorer page's own budget per address (apart from the API's), and CORS allow-lists.
    download_rate: str = "10/minute"
    explorer_rate: str = "600/minute"
    cors_open_origins: tuple[str, ...] = ("*",)
    cors_share_origins: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    audit_store: str = "chain"
    # Signed checkpoints (gateway.audit.checkpoints): every N events or T seconds; 0 N = off.
    audit_checkpoint_events: int = 1000
    audit_checkpoint_seconds: float = 300.0
    # Retention (gateway.audit.retention): archive and prune sealed events older than N days; 0 = off.
    audit_retention_days: int = 0
    # Alert rules (gateway.audit.alerts); working hours/days are Asia/Shanghai, ISO weekdays.
    audit_alerts: bool = True
    # An export over HTTP is signed as one response (RFC 9421), so it is held in memory: bounded.
    audit_export_max_events: int = 200_000
    audit_alert_bulk_rows: int = 10_000
    audit_alert_bulk_window_seconds: int = 3600
    audit_alert_probe_denials: int = 20
    audit_alert_probe_window_seconds: int = 600
    audit_working_hours: str = "08:30-18:00"
    audit_working_days: str = "1-5"
    # Feeding the SOC (gateway.audit.forward): syslog RFC 5424 over TLS to host:port (None = off),
    # and/or JSON lines appended to a file (None = off).
    audit_syslog_target: str | None = None
    audit_syslog_tls: bool = True
    audit_syslog_ca_file: Path | None = None
    audit_syslog_cert_file: Path | None = None
    audit_syslog_key_file: Path | None = None
    audit_syslog_server_name: str | None = None
    audit_syslog_hostname: str | None = None
    audit_syslog_pen: int = 32473
    audit_forward_jsonl: Path | None = None
    # New alerts POSTed, SM2-signed, to this URL (gateway.audit.forward.WebhookSink); None = off.
    audit_alert_webhook_url: str | None = None
    # Operations (docs/operations.md): GET /metrics and who may scrape it (CIDRs of the direct
    # peer); OpenTelemetry tracing: True, False, or None = on when OTEL_EXPORTER_OTLP_ENDPOINT is set.
    metrics: bool = True
    metrics_allow: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    otel: bool | None = None
    sync: bool = False  # the sync scheduler inside serve (gateway.loading.scheduler)
    # `grant list --state expiring`: grants that end within this many days.
    grant_expiry_warning_days: int = 30
    # Sessions on the gateway's own pages (gateway.web.session): absolute lifetime (never past
    # the access token's expiry) and idle timeout, in seconds.
    web_session_seconds: int = 8 * 3600
    web_session_idle_seconds: int = 1800
    # The day's KPI snapshot (the trend's points) taken by every worker's background task, once a
    # day (gateway.workflow.kpi); off: `shuqiao kpi snapshot` from cron does it.
    kpi_snapshots: bool = False
    # 数据水印 (docs/watermark.md): deliveries to identified consumers carry a keyed mark within each
    # field's declared tolerance; off: every consumer gets the values exactly as stored (and tracing
    # can name no one for what is delivered meanwhile).
    watermark: bool = True

    @classmethod
    def from_env(cls) -> Settings:
        var_dir = Path(_env("VAR_DIR", str(DEFAULT_VAR_DIR)))
        return cls(
            database_url=normalise_database_url(
                _env("DATABASE_URL", f"sqlite+aiosqlite:///{var_dir / 'shuqiao.db'}")
            ),
            var_dir=var_dir,
            issuer=_env("ISSUER", "http://127.0.0.1:8000").rstrip("/"),
            token_ttl_seconds=_int("TOKEN_TTL_SECONDS", 3600),
            db_pool_size=_pool_size(_int("DB_POOL_SIZE", DEFAULT_POOL_SIZE)),
            db_pool_timeout=float(_env("DB_POOL_TIMEOUT", str(DEFAULT_POOL_TIMEOUT))),
            limits=Limits(
                max_body_bytes=_int("MAX_BODY_BYTES", Limits.max_body_bytes),
                max_depth=_int("MAX_DEPTH", Limits.max_depth),
                max_cost=_int("MAX_COST", Limits.max_cost),
                max_aliases=_int("MAX_ALIASES", Limits.max_aliases),
                max_fields=_int("MAX_FIELDS", Limits.max_fields),
                max_page_size=_int("MAX_PAGE_SIZE", Limits.max_page_size),
                max_in_list=_int("MAX_IN_LIST", Limits.max_in_list),
                max_string_operand=_int("MAX_STRING_OPERAND", Limits.max_string_operand),
            ),
            master_key_file=Path(_env("MASTER_KEY_FILE", str(var_dir / "master.key"))),
            debug=_env("DEBUG", "") == "1",
            redis_url=_env("REDIS_URL", "") or None,
            redis_namespace=_env("REDIS_NAMESPACE", "shuqiao"),
            anonymous_rate=_env("ANONYMOUS_RATE", "60/minute"),
            api_key_rate_per_minute=_int("API_KEY_RATE_PER_MINUTE", 120),
            api_key_daily_quota=_int("API_KEY_DAILY_QUOTA", 10_000),
            share_client_rate=_env("SHARE_CLIENT_RATE", "") or None,
            auth_failure_rate=_env("AUTH_FAILURE_RATE", "20/minute"),
            download_rate=_env("DOWNLOAD_RATE", "10/minute"),
            explorer_rate=_env("EXPLORER_RATE", "600/minute"),
            cors_open_origins=_origins(_env("CORS_OPEN_ORIGINS", "*")),
            cors_share_origins=_origins(_env("CORS_SHARE_ORIGINS", "")),
            trusted_proxies=tuple(p.strip() for p in _env("TRUSTED_PROXIES", "").split(",") if p.strip()),
            audit_store=_env("AUDIT_STORE", "chain"),
            audit_checkpoint_events=_int("AUDIT_CHECKPOINT_EVENTS", 1000),
            audit_checkpoint_seconds=float(_env("AUDIT_CHECKPOINT_SECONDS", "300")),
            audit_retention_days=_int("AUDIT_RETENTION_DAYS", 0),
            audit_alerts=_env("AUDIT_ALERTS", "1") != "0",
            audit_export_max_events=_int("AUDIT_EXPORT_MAX_EVENTS", 200_000),
            audit_alert_bulk_rows=_int("AUDIT_ALERT_BULK_ROWS", 10_000),
            audit_alert_bulk_window_seconds=_int("AUDIT_ALERT_BULK_WINDOW_SECONDS", 3600),
            audit_alert_probe_denials=_int("AUDIT_ALERT_PROBE_DENIALS", 20),
            audit_alert_probe_window_seconds=_int("AUDIT_ALERT_PROBE_WINDOW_SECONDS", 600),
            audit_working_hours=_env("AUDIT_WORKING_HOURS", "08:30-18:00"),
            audit_working_days=_env("AUDIT_WORKING_DAYS", "1-5"),
            audit_syslog_target=_env("AUDIT_SYSLOG_TARGET", "") or None,
            audit_syslog_tls=_switch("AUDIT_SYSLOG_TLS", True) is not False,
            audit_syslog_ca_file=_path("AUDIT_SYSLOG_CA_FILE"),
            audit_syslog_cert_file=_path("AUDIT_SYSLOG_CERT_FILE"),
            audit_syslog_key_file=_path("AUDIT_SYSLOG_KEY_FILE"),
            audit_syslog_server_name=_env("AUDIT_SYSLOG_SERVER_NAME", "") or None,
            audit_syslog_hostname=_env("AUDIT_SYSLOG_HOSTNAME", "") or None,
            audit_syslog_pen=_int("AUDIT_SYSLOG_PEN", 32473),
            audit_forward_jsonl=_path("AUDIT_FORWARD_JSONL"),
            audit_alert_webhook_url=_env("AUDIT_ALERT_WEBHOOK_URL", "") or None,
            metrics=_switch("METRICS", True),
            metrics_allow=parse_allow(_env("METRICS_ALLOW", "127.0.0.1/32,::1/128")),
            otel=_switch("OTEL", None),
            sync=bool(_switch("SYNC", False)),
            grant_expiry_warning_days=_int("GRANT_EXPIRY_WARNING_DAYS", 30),
            web_session_seconds=_int("WEB_SESSION_SECONDS", 8 * 3600),
            web_session_idle_seconds=_int("WEB_SESSION_IDLE_SECONDS", 1800),
            kpi_snapshots=_switch("KPI_SNAPSHOTS", False) is True,
            watermark=_switch("WATERMARK", True) is not False,
        )

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]
