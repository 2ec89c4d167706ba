"""The naive baseline for bench/run_gateway_bench.py: bare Strawberry + SQLModel over the pool table.

What a developer would write in an afternoon, with nothing Shuqiao does (no identity, no
policies, no masking, no audit, no compiled plans):

- a SQLModel class mapped onto the same `pool_enterprise_registration` table Shuqiao reads
  (every column, as a table model normally maps them);
- a Strawberry type with the 10 fields the benchmark asks for;
- resolvers doing `session.exec(select(Model).offset(..).limit(..))` and returning the ORM
  objects, which Strawberry's default resolvers read attribute by attribute;
- Strawberry's own ASGI app (`strawberry.asgi.GraphQL`, stdlib `json` for responses) under
  uvicorn, one worker.

It uses the same driver (asyncpg) and the same pool size (10) as Shuqiao's engine, so the
comparison measures the GraphQL layers, not the database client.

Run: BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1/shuqiao_bench \
     uvicorn --app-dir bench bare_strawberry_app:app --port 8102 --no-access-log
"""

from __future__ import annotations

import os
from datetime import date
from decimal import Decimal

import strawberry
from sqlalchemy import BigInteger, Column
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession
from strawberry.asgi import GraphQL


def _async_url(url: str) -> str:
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    return url


DATABASE_URL = _async_url(
    os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1/shuqiao_bench")
)
engine = create_async_engine(DATABASE_URL, pool_size=10, max_overflow=10)


class PoolEnterpriseRegistration(SQLModel, table=True):
    __tablename__ = "pool_enterprise_registration"

    row_id: int | None = Field(default=None, sa_column=Column("_id", BigInteger, primary_key=True))
    credit_code: str
    name: str
    legal_representative: str | None = None
    legal_rep_id_number: str | None = None
    contact_phone: str | None = None
    registered_capital: Decimal | None = None
    establishment_date: date | None = None
    enterprise_type: str | None = None
    industry: str | None = None
    registered_address: str | None = None
    district_code: str | None = None
    district: str | None = None
    status: str | None = None


@strawberry.type
class EnterpriseRegistration:
    credit_code: str
    name: str
    contact_phone: str | None
    registered_capital: Decimal | None
    establishment_date: date | None
    enterprise_type: str | None
    industry: str | None
    registered_address: str | None
    district: str | None
    status: str | None


@strawberry.type
class Query:
    @strawberry.field
    async def enterprise_registrations(
        self, offset: int = 0, limit: int = 100
    ) -> list[EnterpriseRegistration]:
        async with AsyncSession(engine) as session:
            stmt = (
                select(PoolEnterpriseRegistration)
                .order_by(PoolEnterpriseRegistration.row_id)
                .offset(offset)
                .limit(limit)
            )
            return list((await session.exec(stmt)).all())  # type: ignore[arg-type]

    @strawberry.field
    async def enterprise_registration(self, credit_code: str) -> EnterpriseRegistration | None:
        async with AsyncSession(engine) as session:
            stmt = select(PoolEnterpriseRegistration).where(
                PoolEnterpriseRegistration.credit_code == credit_code
            )
            return (await session.exec(stmt)).first()  # type: ignore[return-value]


schema = strawberry.Schema(query=Query)
app = GraphQL(schema, graphql_ide=None)
