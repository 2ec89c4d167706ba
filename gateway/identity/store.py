"""Database operations behind the authorization server (async; the server's synchronous
Authlib hooks reach them through `anyio.from_thread`)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.db import table_of, utc_aware
from gateway.identity.models import AuthorizationCode, OAuthClient, RefreshToken, RevokedToken, User
from gateway.identity.tokens import TokenClaims
from gateway.secrets import SecretHasher

CODE_TTL = timedelta(minutes=5)
REFRESH_TTL = timedelta(days=14)


def _epoch(dt: datetime) -> int:
    return int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp())


@dataclass(frozen=True, slots=True)
class Polled:
    revoked: list[tuple[int, str, int]]  # (seq, jti, expires at) revoked after the last poll
    clients: frozenset[str]  # disabled now
    users: frozenset[str]
    client_cutoffs: dict[str, int]  # tokens issued up to these (epoch seconds) are dead
    user_cutoffs: dict[str, int]


class IdentityStore:
    def __init__(self, engine: AsyncEngine, hasher: SecretHasher) -> None:
        self.engine = engine
        self.hasher = hasher

    async def client(self, client_id: str) -> OAuthClient | None:
        async with AsyncSession(self.engine, expire_on_commit=False) as s:
            return await s.get(OAuthClient, client_id)

    async def user(self, user_id: str) -> User | None:
        async with AsyncSession(self.engine, expire_on_commit=False) as s:
            return await s.get(User, user_id)

    # -- authorization codes: stored hashed, single use, five minutes
    async def save_code(self, code: str, row: AuthorizationCode) -> None:
        row.code_hash = self.hasher.hash(code)
        row.expires_at = datetime.now(UTC) + CODE_TTL
        async with AsyncSession(self.engine, expire_on_commit=False) as s:
            s.add(row)
            await s.commit()

    async def take_code(self, code: str, client_id: str) -> AuthorizationCode | None:
        """Consume a code atomically: a second redemption finds nothing."""
        h = self.hasher.hash(code)
        async with AsyncSession(self.engine, expire_on_commit=False) as s:
            row = await s.get(AuthorizationCode, h)
            if row is None or row.client_id != client_id:
                return None
            res = await s.exec(
                table_of(AuthorizationCode).delete().where(col(AuthorizationCode.code_hash) == h)
            )
            await s.commit()
            if res.rowcount != 1 or utc_aware(row.expires_at) < datetime.now(UTC):
                return None
            return row

    # -- refresh tokens: rotated on use; reuse revokes the family
    async def save_refresh(
        self,
        token: str,
        *,
        family: str | None,
        client_id: str,
        user_id: str,
        scope: str,
        access_jti: str | None,
        access_exp: int | None,
    ) -> None:
        now = datetime.now(UTC)
        async with AsyncSession(self.engine, expire_on_commit=False) as s:
            s.add(
                RefreshToken(
                    token_hash=self.hasher.hash(token),
                    family_id=family or secrets.token_hex(16),
                    client_id=client_id,
                    user_id=user_id,
                    scope=scope,
                    access_jti=access_jti,
                    access_expires_at=access_exp,
                    issued_at=now,
                    expires_at=now + REFRESH_TTL,
                )
            )
            await s.commit()

    async def find_refresh(self, token: str) -> RefreshToken | None:
        async with AsyncSession(self.engine, expire_on_commit=False) as s:
            return (
                await s.exec(
                    select(RefreshToken).where(col(RefreshToken.token_hash) == self.hasher.hash(token))
                )
            ).one_or_none()

    async def use_refresh(self, row: RefreshToken) -> bool:
        """Mark a refresh token used; False if it already was (then the family is revoked)."""
        async with AsyncSession(self.engine, expire_on_commit=False) as s:
            res = await s.exec(
                update(RefreshToken)
                .where(col(RefreshToken.id) == row.id, col(RefreshToken.used_at).is_(None))
                .values(used_at=datetime.now(UTC))
            )
            await s.commit()
        if res.rowcount == 1:
            return True
        await self.revoke_family(row.family_id)
        return False

    async def revoke_family(self, family_id: str) -> None:
        async with AsyncSession(self.engine, expire_on_commit=False) as s:
            rows = await s.exec(select(RefreshToken).where(col(RefreshToken.family_id) == family_id))
            jtis = [(r.access_jti, r.access_expires_at) for r in rows if r.access_jti]
            await s.exec(
                update(RefreshToken)
                .where(col(RefreshToken.family_id) == family_id, col(RefreshToken.revoked_at).is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
            await s.commit()
        for jti, exp in jtis:
            await self.revoke_jti(jti, exp or int(time.time()) + 3600)

    async def revoke_jti(self, jti: str, expires_at: int) -> None:
        async with AsyncSession(self.engine, expire_on_commit=False) as s:
            if (await s.exec(select(RevokedToken).where(col(RevokedToken.jti) == jti))).first() is None:
                s.add(RevokedToken(jti=jti, expires_at=expires_at))
                await s.commit()

    async def poll(self, seq: int) -> Polled:
        """Access-token ids revoked after `seq`, the clients and people now disabled, and when
        each that was ever disabled last was (few: both tables are small and this runs once a
        second per worker)."""
        async with AsyncSession(self.engine, expire_on_commit=False) as s:
            rows = await s.exec(
                select(RevokedToken.seq, RevokedToken.jti, RevokedToken.expires_at)
                .where(col(RevokedToken.seq) > seq)
                .order_by(col(RevokedToken.seq))
            )
            # seq is the primary key: None only on an object not yet stored, never in a row read back
            revoked = [(int(cast(int, a)), str(b), int(c)) for a, b, c in rows]
            clients = (
                await s.exec(
                    select(OAuthClient.client_id, OAuthClient.disabled, OAuthClient.tokens_not_before).where(
                        col(OAuthClient.disabled) | col(OAuthClient.tokens_not_before).is_not(None)
                    )
                )
            ).all()
            users = (
                await s.exec(
                    select(User.id, User.disabled, User.tokens_not_before).where(
                        col(User.disabled) | col(User.tokens_not_before).is_not(None)
                    )
                )
            ).all()
            return Polled(
                revoked,
                frozenset(str(c) for c, off, _ in clients if off),
                frozenset(str(u) for u, off, _ in users if off),
                {str(c): _epoch(t) for c, _, t in clients if t is not None},
                {str(u): _epoch(t) for u, _, t in users if t is not None},
            )


class RevocationList:
    """What makes a well-signed access token dead before it expires: its jti revoked, its client
    disabled, its person disabled. Polled from the database at most once per `interval` (one
    second), so every worker process, whichever process made the change (the admin API, the CLI,
    another worker), refuses such a token within that interval of the commit."""

    def __init__(self, store: IdentityStore, interval: float = 1.0) -> None:
        self.store = store
        self.interval = interval
        self._seq = 0
        self._jtis: dict[str, int] = {}
        self._clients: frozenset[str] = frozenset()
        self._users: frozenset[str] = frozenset()
        self._client_cutoffs: dict[str, int] = {}
        self._user_cutoffs: dict[str, int] = {}
        self._next = 0.0
        self.polls = 0  # database polls, for tests

    def add(self, jti: str, exp: int) -> None:
        self._jtis[jti] = exp

    async def refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._next:
            return
        # Concurrent requests meanwhile use the last poll's answer (at most a poll's time older).
        self._next = now + self.interval
        try:
            polled = await self.store.poll(self._seq)
        except BaseException:
            self._next = 0.0  # fail closed: the next request polls again rather than trust this one
            raise
        self.polls += 1
        for seq, jti, exp in polled.revoked:
            self._seq = max(self._seq, seq)
            self._jtis[jti] = exp
        self._clients, self._users = polled.clients, polled.users
        self._client_cutoffs, self._user_cutoffs = polled.client_cutoffs, polled.user_cutoffs
        if len(self._jtis) > 50_000:
            cut = time.time()
            self._jtis = {j: e for j, e in self._jtis.items() if e > cut}

    async def refusal(self, claims: TokenClaims) -> str | None:
        """Why this token is dead (for logs), or None if it is live."""
        await self.refresh()
        if claims.jti and claims.jti in self._jtis:
            return "revoked"
        if claims.parent_jti and claims.parent_jti in self._jtis:
            return "the token it was exchanged for is revoked"
        if claims.actor is not None and claims.actor in self._clients:
            return "the router it was delegated to is disabled"
        if claims.client_id in self._clients:
            return "client disabled"
        if claims.subject in self._users:
            return "user disabled"
        # `iat` is in whole seconds: a token of the second the cutoff fell in counts as before it
        if claims.issued_at <= self._client_cutoffs.get(claims.client_id, -1):
            return "issued before its client was last disabled"
        if claims.issued_at <= self._user_cutoffs.get(claims.subject, -1):
            return "issued before its person was last disabled"
        return None
