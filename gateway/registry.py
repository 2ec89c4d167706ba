"""Built schemas and active grants, kept in step with the catalogue version.

Any catalogue or grant change bumps one version number in the database; each worker
checks it at most once per `poll_seconds` and rebuilds lazily, so a publish takes
effect without a restart, in every worker process."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy.ext.asyncio import AsyncEngine

from catalogue.protection import PoolKeyring, load_keyring
from catalogue.service import Catalogue, catalogue_version, load_catalogue
from gateway.grants.service import load_grants
from policies.limits import Limits
from policies.model import Grant, Tier
from resolvers.documents import DocumentCache
from resolvers.execute import PlanCache
from schema.build import TierSchema, build_tier_schema
from schema.federation import build_federated_subgraph


class BuiltSchema:
    def __init__(self, tier_schema: TierSchema, limits: Limits) -> None:
        self.tier = tier_schema
        self.documents = DocumentCache(tier_schema.graphql, limits)
        self.plans = PlanCache()


class SchemaRegistry:
    def __init__(
        self, engine: AsyncEngine, limits: Limits, poll_seconds: float = 1.0, master_key: bytes | None = None
    ) -> None:
        self._master_key = master_key
        self.keyring: PoolKeyring | None = None
        self.engine = engine
        self.limits = limits
        self.poll_seconds = poll_seconds
        self._catalogue: Catalogue | None = None
        self._grants: tuple[Grant, ...] = ()
        self._schemas: dict[tuple[Tier, str | None], BuiltSchema] = {}
        self._subgraphs: dict[tuple[str, str], BuiltSchema] = {}
        self._checked = 0.0
        self._lock = asyncio.Lock()

    async def refresh(self, *, force: bool = False) -> Catalogue:
        now = time.monotonic()
        if not force and self._catalogue is not None and now - self._checked < self.poll_seconds:
            return self._catalogue
        async with self._lock:
            if (
                not force
                and self._catalogue is not None
                and time.monotonic() - self._checked < self.poll_seconds
            ):
                return self._catalogue
            async with self.engine.connect() as conn:
                version = await catalogue_version(conn)
            if force or self._catalogue is None or version != self._catalogue.version:
                catalogue = await load_catalogue(self.engine)
                self._grants = await load_grants(self.engine)
                if self._master_key is not None:
                    self.keyring = await load_keyring(self.engine, self._master_key, catalogue.published())
                self._schemas = {}
                self._subgraphs = {}
                self._catalogue = catalogue
            self._checked = time.monotonic()
            return self._catalogue

    async def grants(self) -> tuple[Grant, ...]:
        await self.refresh()
        return self._grants

    async def schema(self, tier: Tier, department: str | None = None) -> BuiltSchema:
        catalogue = await self.refresh()
        key = (tier, department if tier is Tier.SHARE else None)
        built = self._schemas.get(key)
        if built is None:
            built = BuiltSchema(build_tier_schema(catalogue, tier, key[1]), self.limits)
            self._schemas[key] = built
        return built

    async def subgraph(self, department: str, consumer: str) -> BuiltSchema | None:
        """`department`'s federated subgraph as `consumer` sees it (schema.federation); None
        when there is no such department."""
        catalogue = await self.refresh()
        if department not in catalogue.departments:
            return None
        key = (department, consumer)
        built = self._subgraphs.get(key)
        if built is None:
            built = BuiltSchema(build_federated_subgraph(catalogue, department, consumer), self.limits)
            self._subgraphs[key] = built
        return built
