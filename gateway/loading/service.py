"""One load, end to end: the dataset from the catalogue, its data key, the file read and checked,
the rows written (gateway.loading.writer) and the audit event — shared by `shuqiao data load`
and `POST /admin/data/{dataset}/load`.

The audit event (`data.load`: dataset, mode, counts read/loaded/rejected/inserted/updated/deleted,
the file's SM3 digest, never a row value) is fail closed. On PostgreSQL it is recorded inside the
load's transaction, just before it commits: if it cannot be written, nothing is loaded. SQLite has
one write lock per database, which the load holds until it commits and the audit chain needs: there
a `data.load.start` event (dataset, mode) is recorded before the load begins — no event, no load —
and `data.load` with the counts right after the commit. A refused load is an event too."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from catalogue import service as catalogue_service
from catalogue.freshness import load_statuses
from catalogue.protection import load_keyring, protected_fields
from catalogue.spec import DatasetSpec
from gateway.loading.readers import Encoding, Format, LoadError, file_digest, guess_format, open_rows
from gateway.loading.source import SqlRows, check_source_url, quote_ident, source_query
from gateway.loading.writer import (
    BATCH_ROWS,
    KeyRows,
    LoadRejected,
    LoadResult,
    Mode,
    Progress,
    RejectsFile,
    load_rows,
    resolve_key,
    upsert_status,
)

# (operation, status, detail, error code) → recorded, or raises (fail closed)
Auditor = Callable[[str, int, dict[str, Any], str | None], Awaitable[None]]


@dataclass
class LoadRequest:
    dataset: str
    path: Path
    format: Format | None = None
    encoding: Encoding = Encoding.auto
    mode: Mode = Mode.append
    key: Sequence[str] | None = None
    max_rejects: int = 0
    rejects_path: Path | None = None


async def dataset_spec(engine: AsyncEngine, code: str) -> DatasetSpec:
    catalogue = await catalogue_service.load_catalogue(engine)
    spec = catalogue.datasets.get(code)
    if spec is None:
        by_resource = [d for d in catalogue.datasets.values() if d.resource_code == code]
        if not by_resource:
            known = ", ".join(sorted(catalogue.datasets)) or "none"
            raise LoadError(f"no dataset {code!r} in the catalogue (datasets: {known})")
        spec = by_resource[0]
    return spec


async def cipher_for(engine: AsyncEngine, spec: DatasetSpec, master_key: bytes) -> Any:
    if not protected_fields(spec):
        return None
    await catalogue_service.sync_pool_table(engine, spec)  # blind-index columns, as `pool encrypt` would
    keyring = await load_keyring(engine, master_key, [spec])
    return keyring.cipher(spec.code)


def audit_detail(request: LoadRequest, result: LoadResult | None, digest: str | None) -> dict[str, Any]:
    detail: dict[str, Any] = {"dataset": request.dataset, "mode": request.mode.value, "digest": digest}
    if result is not None:
        detail.update(
            read=result.read,
            loaded=result.loaded if result.rejected <= request.max_rejects else 0,
            rejected=result.rejected,
            inserted=result.inserted,
            updated=result.updated,
            deleted=result.deleted,
            row_count=result.row_count or None,
        )
    return detail


class Audited:
    """Where a load's audit events go (see the module docstring)."""

    def __init__(
        self, engine: AsyncEngine, audit: Auditor | None, operation: str, request: LoadRequest
    ) -> None:
        self.audit, self.operation, self.request = audit, operation, request
        self.inside = engine.dialect.name == "postgresql"

    async def start(self) -> None:
        if self.audit is not None and not self.inside:
            await self.audit(self.operation + ".start", 202, audit_detail(self.request, None, None), None)

    async def _done(self, done: LoadResult) -> None:
        assert self.audit is not None
        await self.audit(self.operation, 200, audit_detail(self.request, done, done.digest), None)

    @property
    def before_commit(self) -> Callable[[LoadResult], Awaitable[None]] | None:
        return self._done if self.audit is not None and self.inside else None

    async def finish(self, done: LoadResult) -> LoadResult:
        if self.audit is not None and not self.inside:
            await self._done(done)
        return done

    async def refused(self, err: LoadError, digest: str | None) -> None:
        if self.audit is None:
            return
        failed = err.result if isinstance(err, LoadRejected) else None
        code = "ROWS_REJECTED" if failed is not None else "BAD_INPUT"
        status = 422 if failed is not None else 400
        await self.audit(self.operation, status, audit_detail(self.request, failed, digest), code)


async def load_file(
    engine: AsyncEngine,
    request: LoadRequest,
    *,
    master_key: bytes,
    audit: Auditor | None = None,
    progress: Progress | None = None,
    batch_rows: int = BATCH_ROWS,
) -> LoadResult:
    spec = await dataset_spec(engine, request.dataset)
    request.dataset = spec.code
    fmt = guess_format(request.path, request.format)
    cipher = await cipher_for(engine, spec, master_key)
    digest: str | None = None

    def finish_digest() -> str:
        nonlocal digest
        digest = file_digest(request.path)
        return digest

    audited = Audited(engine, audit, "data.load", request)
    await audited.start()
    rows = None
    try:
        rows = open_rows(request.path, fmt, request.encoding)
        result = await load_rows(
            engine,
            spec,
            rows.header,
            rows.rows,
            mode=request.mode,
            key=request.key,
            cipher=cipher,
            max_rejects=request.max_rejects,
            rejects=RejectsFile(request.rejects_path),
            progress=progress,
            digest=finish_digest,
            before_commit=audited.before_commit,
            batch_rows=batch_rows,
        )
    except LoadError as err:
        await audited.refused(err, digest)
        raise
    finally:
        if rows is not None:
            rows.close()
    return await audited.finish(result)


# ---- from PostgreSQL, and incremental sync ------------------------------------------------


async def load_sql(
    engine: AsyncEngine,
    request: LoadRequest,
    source: SqlRows,
    *,
    master_key: bytes,
    audit: Auditor | None = None,
    progress: Progress | None = None,
    operation: str = "data.load",
    digest: str,
    snapshot: Callable[[], KeyRows] | None = None,
) -> LoadResult:
    """Rows from a query (`--from-sql`/`--from-table`, `data sync`) through the same checks and
    writer as a file. The digest is that of the query text (and watermark): there is no file."""
    spec = await dataset_spec(engine, request.dataset)
    request.dataset = spec.code
    cipher = await cipher_for(engine, spec, master_key)

    audited = Audited(engine, audit, operation, request)
    await audited.start()
    try:
        result = await load_rows(
            engine,
            spec,
            source.header,
            source.rows,
            mode=request.mode,
            key=request.key,
            cipher=cipher,
            max_rejects=request.max_rejects,
            rejects=RejectsFile(request.rejects_path),
            progress=progress,
            digest=lambda: digest,
            before_commit=audited.before_commit,
            watermark=lambda: source.watermark,
            snapshot=snapshot,
        )
    except LoadError as err:
        await audited.refused(err, digest)
        raise
    finally:
        source.close()
    return await audited.finish(result)


def text_digest(*parts: str | None) -> str:
    from keys.sm3 import sm3

    return "sm3:" + sm3("\x00".join(p or "" for p in parts).encode()).hex()


async def set_source(
    engine: AsyncEngine,
    dataset: str,
    *,
    url: str,
    sql: str | None,
    table: str | None,
    updated_column: str,
    key: Sequence[str] | None,
    snapshot: bool = False,
) -> dict[str, Any]:
    """Declare where `data sync` reads a dataset from (stored with its freshness). `snapshot`:
    the source always holds every row, so a row gone from it is deleted on the next sync."""
    spec = await dataset_spec(engine, dataset)
    check_source_url(url)
    source_query(sql, table)  # exactly one of them, and a table name that is one
    key_cols = resolve_key(spec, key)
    if not key_cols:
        raise LoadError(f"{spec.code} has no entity key: pass --key COLUMN[,COLUMN] for sync to upsert on")
    values = {
        "source_url": url,
        "source_sql": sql,
        "source_table": table,
        "source_updated_column": updated_column,
        "source_key": ",".join(key_cols),
        "source_snapshot": snapshot,
        "sync_watermark": None,  # a new source starts from its first row, and is due at once
        "last_sync_at": None,
        "last_sync_outcome": None,
    }
    async with engine.begin() as conn:
        await upsert_status(conn, spec.code, values)
    return {"dataset": spec.code, **values}


async def sync_dataset(
    engine: AsyncEngine,
    dataset: str,
    *,
    master_key: bytes,
    audit: Auditor | None = None,
    progress: Progress | None = None,
) -> LoadResult:
    """Copy the rows changed at the source since the last sync (upsert on the key) and, from a
    full-snapshot source, delete the rows whose key it no longer has; record the outcome — a
    failure too — on the dataset's freshness row."""
    statuses = await load_statuses(engine)
    status = statuses.get(dataset)
    if status is None or not status.source_url or not status.source_updated_column:
        raise LoadError(f"{dataset} has no source: declare one with `shuqiao data source {dataset} …`")
    query = source_query(status.source_sql, status.source_table)
    key = [k for k in (status.source_key or "").split(",") if k]
    request = LoadRequest(dataset, Path("-"), mode=Mode.upsert, key=key or None)
    started = datetime.now(UTC)
    try:
        spec = await dataset_spec(engine, dataset)
        updated = status.source_updated_column
        drop = set() if updated in {f.name for f in spec.fields} else {updated}  # a source column only
        source = await asyncio.to_thread(
            SqlRows, status.source_url, query, (status.sync_watermark,), updated, drop, True
        )
        snapshot: Callable[[], KeyRows] | None = None
        if status.source_snapshot:  # its keys, read after the changed rows: one added meanwhile stays
            cols = ", ".join(quote_ident(k) for k in key)
            snapshot = partial(SqlRows, status.source_url, f"SELECT {cols} FROM ({query}) AS src")  # noqa: S608
        result = await load_sql(
            engine,
            request,
            source,
            master_key=master_key,
            audit=audit,
            progress=progress,
            operation="data.sync",
            digest=text_digest(query, status.sync_watermark),
            snapshot=snapshot,
        )
    except (LoadError, OSError) as err:
        async with engine.begin() as conn:
            await upsert_status(
                conn, dataset, {"last_sync_at": started, "last_sync_outcome": f"failed: {err}"[:500]}
            )
        raise
    outcome = f"ok: {result.inserted} inserted, {result.updated} updated"
    if status.source_snapshot:
        outcome += f", {result.deleted} deleted"
    async with engine.begin() as conn:
        await upsert_status(conn, dataset, {"last_sync_at": started, "last_sync_outcome": outcome})
    return result
