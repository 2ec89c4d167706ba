"""`shuqiao data load|sync|source`: rows into a dataset already in the catalogue.

Each load or sync is one transaction and one audit event (`data.load`, `data.sync`: counts,
mode and the file's SM3 digest; operator `cli:<login>`). Exit status: 0 loaded, 2 refused (bad
input or too many rejected rows: nothing written), 3 the audit log is unavailable (nothing
written), 130 interrupted (nothing written)."""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from gateway.cli_support import emit, run_with_engine, settings
from gateway.loading.readers import Encoding, Format, LoadError
from gateway.loading.writer import LoadRejected, LoadResult, Mode

data_app = typer.Typer(
    help="Rows into the datasets of the catalogue: load files, sync from sources.", no_args_is_help=True
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document for scripts.")]
PROGRESS_SECONDS = 10.0  # a progress line this often when there is no bar (not a TTY, --json)
T = TypeVar("T")


def _master_key() -> bytes:
    from gateway.secrets import load_master_key

    return load_master_key(settings().master_key_file)


def _run(job: Callable[[Any], Awaitable[T]], as_json: bool) -> T:
    from catalogue.service import CatalogueError
    from gateway.identity.audit import AuditUnavailable

    try:
        return run_with_engine(job, expected=(CatalogueError,))
    except LoadRejected as err:
        _fail(as_json, str(err), 2, err.result.summary())
    except LoadError as err:
        _fail(as_json, str(err), 2)
    except AuditUnavailable:
        _fail(as_json, "the audit log is unavailable: nothing was loaded", 3)
    except KeyboardInterrupt:
        _fail(as_json, "interrupted: nothing was loaded", 130)


def _fail(as_json: bool, message: str, status: int, detail: dict[str, Any] | None = None) -> NoReturn:
    if as_json:
        typer.echo(emit_text({"error": message, **({"result": detail} if detail else {})}))
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(status)


def emit_text(data: Any) -> str:
    import json

    return json.dumps(data, ensure_ascii=False, default=str)


def _auditor(engine: Any) -> Any:
    from gateway.identity.audit import cli_audit, cli_operator, record_admin_event

    audit = cli_audit(settings(), engine)

    async def record(operation: str, status: int, detail: dict[str, Any], error: str | None) -> None:
        await record_admin_event(
            audit,
            operation,
            status=status,
            principal_kind="operator",
            principal_id=cli_operator(),
            target=detail.get("dataset"),
            detail=detail,
            error=error,
        )

    return record


@contextmanager
def progress_reporter(label: str, quiet: bool) -> Iterator[Callable[[int, int], None]]:
    """A bar with rows/s on a terminal; otherwise a line on stderr every PROGRESS_SECONDS."""
    started = time.perf_counter()
    if not quiet and sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TextColumn("{task.fields[rows]:>12,} rows"),
            TextColumn("{task.fields[rate]:>14}"),
            TextColumn("{task.fields[rejected]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        with bar:
            task = bar.add_task(label, rows=0, rate="", rejected="")

            def update(read: int, rejected: int) -> None:
                seconds = time.perf_counter() - started
                bar.update(
                    task,
                    rows=read,
                    rate=f"{read / seconds:,.0f} rows/s" if seconds > 0 else "",
                    rejected=f"{rejected:,} rejected" if rejected else "",
                )

            yield update
        return
    last = started

    def line(read: int, rejected: int) -> None:
        nonlocal last
        now = time.perf_counter()
        if now - last >= PROGRESS_SECONDS:
            last = now
            rate = read / (now - started)
            typer.echo(f"{label}: {read:,} rows read, {rejected:,} rejected, {rate:,.0f} rows/s", err=True)

    yield line


def _human(result: LoadResult) -> str:
    parts = [f"{result.dataset}: {result.loaded:,} of {result.read:,} rows loaded ({result.mode})"]
    if result.inserted or result.updated or result.deleted:
        parts.append(f"{result.inserted:,} inserted, {result.updated:,} updated, {result.deleted:,} deleted")
    if result.rejected:
        parts.append(f"{result.rejected:,} rejected, skipped (see {result.rejects_file})")
    parts.append(f"{result.row_count:,} rows in the dataset")
    return "; ".join(parts)


@data_app.command("load")
def data_load(
    dataset: Annotated[str, typer.Argument(help="Dataset code or 资源代码.")],
    file: Annotated[Path | None, typer.Argument(help="CSV, XLSX or JSON Lines file.", dir_okay=False)] = None,
    fmt: Annotated[Format | None, typer.Option("--format", help="Default: from the file's suffix.")] = None,
    encoding: Annotated[Encoding, typer.Option(help="CSV/JSON Lines text encoding.")] = Encoding.auto,
    mode: Annotated[Mode, typer.Option(help="append, upsert (on --key) or replace (atomic).")] = Mode.append,
    key: Annotated[
        str | None, typer.Option(help="Key columns, comma-separated (default: the entity key).")
    ] = None,
    max_rejects: Annotated[
        int, typer.Option(min=0, help="Rows that may be rejected and skipped (default 0: all or nothing).")
    ] = 0,
    rejects: Annotated[
        Path | None, typer.Option(help="Rejected rows as CSV (default FILE.rejects.csv).")
    ] = None,
    from_sql: Annotated[
        str | None, typer.Option("--from-sql", help="Copy the rows of this PostgreSQL query.")
    ] = None,
    from_table: Annotated[
        str | None, typer.Option("--from-table", help="Copy a PostgreSQL table or view.")
    ] = None,
    source_url: Annotated[
        str | None, typer.Option("--source-url", help="postgresql://user@host/db (no password)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Load rows into a dataset: validated, sealed where protected, in one transaction."""
    from gateway.loading.service import LoadRequest, load_file, load_sql, text_digest
    from gateway.loading.source import SqlRows, check_source_url, source_query

    keys = [k.strip() for k in key.split(",") if k.strip()] if key else None
    master_key = _master_key()
    if from_sql or from_table:
        if file is not None or not source_url:
            _fail(as_json, "--from-sql/--from-table take --source-url and no FILE", 2)
        assert source_url is not None
        try:
            query = source_query(from_sql, from_table)
            check_source_url(source_url)
        except LoadError as err:
            _fail(as_json, str(err), 2)
        request = LoadRequest(
            dataset, Path("-"), mode=mode, key=keys, max_rejects=max_rejects, rejects_path=rejects
        )

        async def job(engine: Any) -> LoadResult:
            import asyncio

            audit = _auditor(engine)
            source = await asyncio.to_thread(SqlRows, source_url, query)
            with progress_reporter(dataset, as_json) as progress:
                return await load_sql(
                    engine,
                    request,
                    source,
                    master_key=master_key,
                    audit=audit,
                    progress=progress,
                    digest=text_digest(query),
                )

    else:
        if file is None:
            _fail(as_json, "give a FILE, or --from-sql/--from-table with --source-url", 2)
        assert file is not None
        if not file.is_file():
            _fail(as_json, f"no such file: {file}", 2)
        request = LoadRequest(
            dataset,
            file,
            fmt,
            encoding,
            mode,
            keys,
            max_rejects,
            rejects or file.with_name(file.name + ".rejects.csv"),
        )

        async def job(engine: Any) -> LoadResult:
            audit = _auditor(engine)
            with progress_reporter(dataset, as_json) as progress:
                return await load_file(engine, request, master_key=master_key, audit=audit, progress=progress)

    result = _run(job, as_json)
    emit(as_json, result.summary(), _human(result))


@data_app.command("source")
def data_source(
    dataset: str,
    source_url: Annotated[str, typer.Option("--source-url", help="postgresql://user@host/db (no password)")],
    updated_column: Annotated[
        str, typer.Option("--updated-column", help="The source's last-modified column.")
    ],
    from_sql: Annotated[str | None, typer.Option("--from-sql")] = None,
    from_table: Annotated[str | None, typer.Option("--from-table")] = None,
    key: Annotated[
        str | None, typer.Option(help="Key columns to upsert on (default: the entity key).")
    ] = None,
    snapshot: Annotated[
        bool,
        typer.Option(
            "--snapshot",
            help="The source always holds every row (a full snapshot): rows gone from it are "
            "deleted on the next sync. Without it a sync never deletes.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Declare the PostgreSQL table, view or query a dataset is synced from."""
    from gateway.loading.service import set_source

    keys = [k.strip() for k in key.split(",") if k.strip()] if key else None
    out = _run(
        lambda e: set_source(
            e,
            dataset,
            url=source_url,
            sql=from_sql,
            table=from_table,
            updated_column=updated_column,
            key=keys,
            snapshot=snapshot,
        ),
        as_json,
    )
    emit(
        as_json,
        out,
        f"{out['dataset']}: synced from {from_table or 'a query'} on {updated_column}, "
        f"key {out['source_key']}" + ("; a full snapshot: deletes follow the source" if snapshot else ""),
    )


@data_app.command("sync")
def data_sync(
    dataset: Annotated[str | None, typer.Argument(help="Dataset code; or --all.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every dataset that has a source.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Copy the rows changed at each source since its last sync (upsert), and record the outcome."""
    from catalogue.freshness import load_statuses
    from gateway.loading.service import sync_dataset

    if bool(dataset) == all_:
        _fail(as_json, "give a DATASET or --all", 2)
    master_key = _master_key()

    async def job(engine: Any) -> dict[str, Any]:
        audit = _auditor(engine)
        codes = (
            [dataset] if dataset else [c for c, s in (await load_statuses(engine)).items() if s.source_url]
        )
        out: dict[str, Any] = {}
        for code in codes:
            try:
                with progress_reporter(code, as_json) as progress:
                    result = await sync_dataset(
                        engine, code, master_key=master_key, audit=audit, progress=progress
                    )
                out[code] = result.summary()
            except LoadError as err:
                if dataset:
                    raise
                out[code] = {"error": str(err)}
        return out

    out = _run(job, as_json)
    emit(
        as_json,
        out,
        "\n".join(
            f"{code}: {r['error']}"
            if "error" in r
            else f"{code}: {r['inserted']:,} inserted, {r['updated']:,} updated, {r['deleted']:,} deleted"
            for code, r in out.items()
        )
        or "no dataset has a source",
    )
    if any("error" in r for r in out.values()):
        raise typer.Exit(2)
