"""People: accounts with roles, passwords under scrypt, throttling and lock-out.

After MAX_FAILURES consecutive wrong passwords an account is locked for LOCK_MINUTES;
while locked no password is even checked, so an attacker hammering one account costs a
row read per try and nobody else slows down (the KDF runs off the event loop)."""

from __future__ import annotations

import builtins
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio.to_thread
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from catalogue.models import Department
from gateway.db import utc_aware
from gateway.identity.models import Enterprise, User, end_credentials_of
from gateway.identity.passwords import DUMMY_HASH, check_strength, hash_password, verify_password
from gateway.identity.roles import check_roles

MAX_FAILURES = 10
LOCK_MINUTES = 15


class UserError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class LoginResult:
    user: User | None
    locked: bool = False


def describe(u: User) -> dict[str, Any]:
    locked = utc_aware(u.locked_until)
    return {
        "id": u.id,
        "username": u.username,
        "display_name": u.display_name,
        "department": u.department_code,
        "enterprise": u.enterprise_code,
        "roles": u.roles.split(),
        "disabled": u.disabled,
        "locked_until": locked.isoformat() if locked and locked > datetime.now(UTC) else None,
    }


class UserService:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(
        self,
        username: str,
        password: str,
        *,
        roles: list[str],
        department: str | None = None,
        enterprise: str | None = None,
        display_name: str = "",
    ) -> User:
        check_strength(password)
        roles = check_roles(roles)
        pw = await anyio.to_thread.run_sync(hash_password, password)
        async with AsyncSession(self.engine) as s:
            if (await s.exec(select(User).where(col(User.username) == username))).first() is not None:
                raise UserError(f"user {username!r} exists")
            if department and await s.get(Department, department) is None:
                raise UserError(f"no department {department!r}")
            if enterprise and await s.get(Enterprise, enterprise) is None:
                raise UserError(f"no enterprise {enterprise!r}")
            user = User(
                id=f"u_{secrets.token_hex(8)}",
                username=username,
                display_name=display_name,
                password_hash=pw,
                department_code=department,
                enterprise_code=enterprise,
                roles=" ".join(roles),
            )
            s.add(user)
            await s.commit()
            await s.refresh(user)
            return user

    async def get(self, username: str) -> User | None:
        async with AsyncSession(self.engine) as s:
            return (await s.exec(select(User).where(col(User.username) == username))).one_or_none()

    async def list(self) -> builtins.list[User]:  # the method's name hides the builtin here
        async with AsyncSession(self.engine) as s:
            return list((await s.exec(select(User).order_by(col(User.username)))).all())

    async def update(
        self,
        username: str,
        *,
        roles: builtins.list[str] | None = None,
        disabled: bool | None = None,
        password: str | None = None,
        unlock: bool = False,
    ) -> User:
        async with AsyncSession(self.engine) as s:
            user = (await s.exec(select(User).where(col(User.username) == username))).one_or_none()
            if user is None:
                raise UserError(f"no user {username!r}")
            if roles is not None:
                user.roles = " ".join(check_roles(roles))
            if disabled is not None:
                user.disabled = disabled
                if disabled:
                    user.tokens_not_before = datetime.now(UTC)
                    await s.exec(end_credentials_of(user_id=user.id))
            if password is not None:
                check_strength(password)
                user.password_hash = await anyio.to_thread.run_sync(hash_password, password)
            if unlock or password is not None:
                user.failed_logins, user.locked_until = 0, None
            s.add(user)
            await s.commit()
            await s.refresh(user)
            return user

    async def authenticate(self, username: str, password: str) -> LoginResult:
        user = await self.get(username)
        now = datetime.now(UTC)
        if user is not None and (utc_aware(user.locked_until) or now) > now:
            return LoginResult(None, locked=True)
        encoded = user.password_hash if user is not None else DUMMY_HASH
        ok = await anyio.to_thread.run_sync(verify_password, password, encoded)
        if user is None:
            return LoginResult(None)
        async with AsyncSession(self.engine) as s:
            if ok and not user.disabled:
                await s.exec(
                    update(User).where(col(User.id) == user.id).values(failed_logins=0, locked_until=None)
                )
                await s.commit()
                return LoginResult(user)
            # count atomically, so concurrent guesses cannot slip past the limit
            await s.exec(
                update(User).where(col(User.id) == user.id).values(failed_logins=col(User.failed_logins) + 1)
            )
            failures = (await s.exec(select(User.failed_logins).where(col(User.id) == user.id))).one()
            locked = failures >= MAX_FAILURES
            if locked:
                await s.exec(
                    update(User)
                    .where(col(User.id) == user.id)
                    .values(locked_until=now + timedelta(minutes=LOCK_MINUTES), failed_logins=0)
                )
            await s.commit()
        return LoginResult(None, locked=locked)
