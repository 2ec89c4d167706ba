"""Department public keys: register, list, retire — and the per-worker directory the
encrypt action reads on every request.

A department has at most one *active* key: registering a new one retires the previous
active key (the department keeps that private key to read values it already received).
Keys are identified like the gateway's own (`keys.keystore.key_id`): the first 16 hex of
the SM3 fingerprint of the public key, so the department can recompute the kid itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import CompoundSelect, null, select, union_all, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col
from sqlmodel import select as model_select  # typed rows from session.exec; Core queries use select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.types import ASGIApp, Receive, Scope, Send

from catalogue.models import Department
from gateway.crypto.models import DepartmentKey, SignedRequestPolicy
from gateway.db import utc_aware
from keys import sm2
from keys.errors import InvalidKeyError
from keys.keystore import key_id
from keys.sm2 import SM2PublicKey

log = logging.getLogger("shuqiao.crypto")

DEFAULT_VALIDITY_DAYS = 365


class KeyRegistrationError(ValueError):
    """A department key cannot be registered (unknown department, bad PEM, duplicate)."""


@dataclass(frozen=True, slots=True)
class DepartmentKeyInfo:
    department: str
    kid: str
    public_pem: str
    not_before: datetime
    not_after: datetime
    status: str

    def to_json(self) -> dict[str, str]:
        return {
            "department": self.department,
            "kid": self.kid,
            "alg": "SM2",
            "use": "enc",
            "pem": self.public_pem,
            "not_before": _iso(self.not_before),
            "not_after": _iso(self.not_after),
            "status": self.status,
        }


def _iso(when: datetime) -> str:
    return utc_aware(when).strftime("%Y-%m-%dT%H:%M:%SZ")


def _info(row: DepartmentKey) -> DepartmentKeyInfo:
    return DepartmentKeyInfo(
        row.department_code,
        row.kid,
        row.public_pem,
        utc_aware(row.not_before),
        utc_aware(row.not_after),
        row.status,
    )


def parse_public_pem(pem: str | bytes) -> SM2PublicKey:
    """A department's SM2 public key (SubjectPublicKeyInfo PEM); raise KeyRegistrationError."""
    text = pem.decode("ascii", "replace") if isinstance(pem, bytes) else pem
    if "PRIVATE KEY" in text:
        raise KeyRegistrationError("that is a private key; register the public key (openssl pkey -pubout)")
    try:
        return sm2.load_pem_public_key(text)
    except (InvalidKeyError, ValueError) as err:
        raise KeyRegistrationError(f"not an SM2 public key PEM: {err}") from None


async def register_department_key(
    engine: AsyncEngine,
    department: str,
    public_pem: str | bytes,
    *,
    validity_days: int = DEFAULT_VALIDITY_DAYS,
    now: datetime | None = None,
) -> DepartmentKeyInfo:
    """Register `public_pem` as `department`'s active key; retire its previous active key.
    Registering the key that is already active is a no-op that returns it."""
    if validity_days <= 0:
        raise KeyRegistrationError("validity must be positive")
    public = parse_public_pem(public_pem)
    kid = key_id(public)
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    async with AsyncSession(engine) as session:
        if await session.get(Department, department) is None:
            raise KeyRegistrationError(f"unknown department {department!r}")
        existing = (
            await session.exec(model_select(DepartmentKey).where(col(DepartmentKey.kid) == kid))
        ).first()
        if existing is not None:
            if existing.department_code == department and existing.status == "active":
                return _info(existing)
            raise KeyRegistrationError(
                f"key {kid} is already registered ({existing.department_code}, {existing.status}); "
                "a retired or revoked key cannot be registered again — generate a new key pair"
            )
        await session.exec(
            update(DepartmentKey)
            .where(col(DepartmentKey.department_code) == department, col(DepartmentKey.status) == "active")
            .values(status="retired")
        )
        row = DepartmentKey(
            department_code=department,
            kid=kid,
            public_pem=public.to_pem(),
            not_before=now,
            not_after=now + timedelta(days=validity_days),
            status="active",
        )
        session.add(row)
        try:
            await session.commit()
        except IntegrityError:
            raise KeyRegistrationError(f"key {kid} was registered concurrently") from None
        await session.refresh(row)
        log.info("registered department key department=%s kid=%s", department, kid)
        return _info(row)


async def set_department_key_status(engine: AsyncEngine, kid: str, status: str) -> DepartmentKeyInfo:
    """Retire or revoke a department key (no key is ever deleted: the audit log names kids)."""
    if status not in ("retired", "revoked"):
        raise KeyRegistrationError("status must be retired or revoked")
    async with AsyncSession(engine) as session:
        row = (await session.exec(model_select(DepartmentKey).where(col(DepartmentKey.kid) == kid))).first()
        if row is None:
            raise KeyRegistrationError(f"no department key {kid!r}")
        row.status = status
        session.add(row)
        await session.commit()
        await session.refresh(row)
        return _info(row)


async def list_department_keys(engine: AsyncEngine, department: str | None = None) -> list[DepartmentKeyInfo]:
    stmt = model_select(DepartmentKey).order_by(col(DepartmentKey.department_code), col(DepartmentKey.id))
    if department is not None:
        stmt = stmt.where(col(DepartmentKey.department_code) == department)
    async with AsyncSession(engine) as session:
        return [_info(r) for r in (await session.exec(stmt)).all()]


@dataclass(frozen=True, slots=True)
class RecipientKey:
    """A department's active key, parsed once: what the encryptor seals to."""

    department: str
    kid: str
    public_key: SM2PublicKey
    not_before: datetime
    not_after: datetime

    def valid_at(self, when: datetime) -> bool:
        return self.not_before <= when < self.not_after


# What a directory refresh reads, in one round trip: the active keys, then (kid NULL, which no key
# row has) the departments whose share-tier requests must be signed.
_ACTIVE_KEYS_AND_SIGNED_REQUESTS: CompoundSelect = union_all(
    select(
        col(DepartmentKey.department_code),
        col(DepartmentKey.kid),
        col(DepartmentKey.public_pem),
        col(DepartmentKey.not_before),
        col(DepartmentKey.not_after),
    ).where(col(DepartmentKey.status) == "active"),
    select(col(SignedRequestPolicy.department_code), null(), null(), null(), null()).where(
        col(SignedRequestPolicy.required) == True  # noqa: E712
    ),
)


class DepartmentKeyDirectory:
    """Each worker's view of the active department keys.

    `refresh()` reads the (small) table at most once per `poll_seconds`, like the schema
    registry reads the catalogue version, so a key registered with the CLI is used by every
    worker within that time without a restart. Parsed public keys are kept by kid, so a
    reload that finds the same keys parses nothing. `active()` is synchronous and never
    touches the database: the per-request encryptor is chosen from memory.
    """

    def __init__(self, engine: AsyncEngine, poll_seconds: float = 1.0) -> None:
        self.engine = engine
        self.poll_seconds = poll_seconds
        self._keys: dict[str, RecipientKey] = {}
        self._parsed: dict[str, SM2PublicKey] = {}
        self._by_kid: dict[str, RecipientKey] = {}
        self._signed_requests: frozenset[str] = frozenset()
        self._checked: float | None = None
        self._lock = asyncio.Lock()

    async def refresh(self, *, force: bool = False) -> None:
        if not force and self._fresh():
            return
        async with self._lock:
            if not force and self._fresh():
                return
            async with self.engine.connect() as conn:
                rows = (await conn.execute(_ACTIVE_KEYS_AND_SIGNED_REQUESTS)).all()
            keys: dict[str, RecipientKey] = {}
            parsed: dict[str, SM2PublicKey] = {}
            signed_requests = frozenset(dept for dept, kid, *_ in rows if kid is None)
            for dept, kid, pem, nb, na in rows:
                if kid is None:  # a department whose requests must be signed, not a key
                    continue
                public = self._parsed.get(kid)
                if public is None:
                    try:
                        public = sm2.load_pem_public_key(pem)
                    except (InvalidKeyError, ValueError):
                        log.error("department key %s of %s does not parse; not used", kid, dept)
                        continue
                parsed[kid] = public
                candidate = RecipientKey(dept, kid, public, utc_aware(nb), utc_aware(na))
                current = keys.get(dept)
                if current is None or candidate.not_before > current.not_before:
                    keys[dept] = candidate
            self._keys, self._parsed = keys, parsed
            self._by_kid = {k.kid: k for k in keys.values()}
            self._signed_requests = signed_requests
            self._checked = time.monotonic()

    def _fresh(self) -> bool:
        return self._checked is not None and time.monotonic() - self._checked < self.poll_seconds

    @property
    def loaded(self) -> bool:
        return self._checked is not None

    def by_kid(self, kid: str) -> RecipientKey | None:
        """The active key `kid` (any department), for checking request signatures."""
        return self._by_kid.get(kid)

    def requires_signed_requests(self, department: str) -> bool:
        return department in self._signed_requests

    def active(self, department: str, now: datetime | None = None) -> RecipientKey | None:
        key = self._keys.get(department)
        if key is None or not key.valid_at(now or datetime.now(UTC)):
            return None
        return key


class DepartmentKeyRefresh:
    """Pure ASGI middleware: before a share-tier request runs, bring the department key
    directory up to date (a no-op within `poll_seconds`). `GatewayState.encryptor_for` is
    synchronous, so the asynchronous read happens here, ahead of it. A failed read keeps
    the last good view (and with none, encryption is unavailable: the policy denies)."""

    def __init__(
        self,
        app: ASGIApp,
        directory: DepartmentKeyDirectory,
        paths: tuple[str, ...] = ("/share/graphql",),
        under: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.directory = directory
        self.paths = paths
        self.under = under  # path prefixes (the department subgraphs run the share tier too)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path in self.paths or path.startswith(self.under)):
            try:
                await self.directory.refresh()
            except Exception:
                log.exception("department keys could not be read; using the last good view")
        await self.app(scope, receive, send)
