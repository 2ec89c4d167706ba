"""Downloads of open data: `GET /open/download/{code}.{csv|json|jsonl|xlsx}` (canonical) and the same
at `/explore/datasets/{code}/download.{fmt}` (the explorer's link), docs/portal.md §Downloads.

Every row goes through the open tier's own executor (resolvers.execute.run) with a generated query
over the fields of the *caller's* open schema: anonymous → the anonymous open schema; an API key →
its enterprise's schema and grants. So a field absent from that schema cannot be downloaded, a
masked field arrives masked, a 有条件开放 dataset without a grant is refused (403) — exactly as
`/open/graphql` would answer. Rows are read in keyset batches of `BATCH` through the executor's
`after` cursor and written out batch by batch: memory does not grow with the dataset
(bench/download_bench.py).

Parameters: `where` (JSON, the dataset's GraphQL `where` input), `orderBy` (JSON list of
`{"field": "DATE", "direction": "DESC"}`), `after` (a cursor: start after that row), `limit`
(1..`MAX_LIMIT`: one bounded page, with `Link: <…&after=…>; rel="next"` when more rows follow —
the resumable mode), `header=title` (Chinese 信息项 names as CSV/XLSX header instead of field names).

Limits: a download does not count against the caller's API allowance; it has its own budget per
caller (`SHUQIAO_DOWNLOAD_RATE`, per address or per API key).

Audit (fail closed, like every data answer): `download.start` is recorded before the first byte
leaves (the field decisions of the plan; no rows yet) — if it cannot be, the caller gets 503
AUDIT_UNAVAILABLE and nothing else. When the stream ends, `download.end` (same request id) records
the rows and bytes sent: status 200 when complete; 499 `DOWNLOAD_ABORTED` when the client went
away; 500/503 with the failure's code when reading failed mid-stream (the connection is then
closed without the end of the chunked body, so the client sees a broken transfer, never a short
file that looks whole). A refusal (400/401/403/404/429) is one ordinary event.
"""

from __future__ import annotations

import csv
import io
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import anyio
import orjson
from graphql import get_named_type
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway.access_log import AccessEvent, answer_once_recorded, query_digest
from gateway.client_address import client_address
from gateway.graphql_http import GraphQLEndpoint
from gateway.identity.limits_hook import restrict_grants
from gateway.outages import classify
from gateway.problems import Problem, problem_response
from gateway.registry import BuiltSchema
from gateway.state import GatewayState
from policies.model import Tier
from resolvers.context import ANONYMOUS, ExecutionContext, Principal, PrincipalKind
from resolvers.errors import FORBIDDEN, FORBIDDEN_FIELD
from resolvers.execute import Outcome, run

log = logging.getLogger("shuqiao")

BATCH = 1000  # rows per executor call in a whole-dataset download
MAX_LIMIT = 10_000  # a bounded page (`limit=`) is read whole before its headers: its Link needs the cursor
XLSX_MAX_ROWS = 1_048_575  # a worksheet holds 1,048,576 rows, one of them the header
MEDIA = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "jsonl": "application/jsonl",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
CANONICAL = "/open/download/{code}.{fmt}"
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection, OWASP).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class Column:
    name: str  # the GraphQL field name (JSON keys, default header)
    title: str  # the 信息项 name


@dataclass
class Job:
    """One download as it goes: what the closing audit event records."""

    code: str
    fmt: str
    principal: Principal
    built: BuiltSchema
    root: str
    query: str
    variables: dict[str, Any]
    limit: int | None
    columns: list[Column] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    read: dict[str, Any] = field(default_factory=dict)
    rows: int = 0
    bytes: int = 0
    done: bool = False
    failure: Problem | None = None
    truncated: bool = False


def _neutralise(value: Any) -> Any:
    """Text a spreadsheet would evaluate gets a leading apostrophe; numbers written as text
    (a negative amount) stay as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        try:
            float(value)
        except ValueError:
            return "'" + value
    return value


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return _neutralise(value)


class CsvWriter:
    def __init__(self, columns: list[Column], header: list[str]) -> None:
        self.names = [c.name for c in columns]
        self.header = header

    def start(self) -> bytes:
        out = io.StringIO()
        csv.writer(out, lineterminator="\r\n").writerow(self.header)
        return ("\ufeff" + out.getvalue()).encode()  # the BOM: Excel then reads the file as UTF-8

    def rows(self, nodes: list[dict[str, Any]]) -> bytes:
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\r\n")
        for node in nodes:
            w.writerow([_cell(node.get(n)) for n in self.names])
        return out.getvalue().encode()

    def finish(self) -> Iterator[bytes]:
        return iter(())


class JsonLinesWriter:
    def __init__(self, columns: list[Column], header: list[str]) -> None:
        pass

    def start(self) -> bytes:
        return b""

    def rows(self, nodes: list[dict[str, Any]]) -> bytes:
        return b"".join(orjson.dumps(n) + b"\n" for n in nodes)

    def finish(self) -> Iterator[bytes]:
        return iter(())


class JsonWriter:
    """One JSON array; it is valid JSON only once its closing bracket arrived."""

    def __init__(self, columns: list[Column], header: list[str]) -> None:
        self.first = True

    def start(self) -> bytes:
        return b"["

    def rows(self, nodes: list[dict[str, Any]]) -> bytes:
        if not nodes:
            return b""
        lead = b"\n" if self.first else b",\n"
        self.first = False
        return lead + b",\n".join(orjson.dumps(n) for n in nodes)

    def finish(self) -> Iterator[bytes]:
        return iter((b"\n]\n",))


class XlsxWriter:
    """openpyxl's write-only workbook: appended rows go to a temporary file, not to memory; the
    zip is assembled at the end into another temporary file and streamed from it in chunks."""

    def __init__(self, columns: list[Column], header: list[str]) -> None:
        from openpyxl import Workbook

        self.names = [c.name for c in columns]
        self.workbook = Workbook(write_only=True)
        self.sheet = self.workbook.create_sheet("data")
        self.sheet.append(header)

    def start(self) -> bytes:
        return b""

    def rows(self, nodes: list[dict[str, Any]]) -> bytes:
        for node in nodes:
            self.sheet.append([self._value(node.get(n)) for n in self.names])
        return b""

    def _value(self, value: Any) -> Any:
        from openpyxl.cell import WriteOnlyCell
        from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

        if not isinstance(value, str):
            return value
        value = ILLEGAL_CHARACTERS_RE.sub("", value)
        if value.startswith("="):  # openpyxl would store it as a formula: keep it text
            cell = WriteOnlyCell(self.sheet, value)
            cell.data_type = "s"
            return cell
        return value

    def note(self, text: str) -> None:
        self.sheet.append([text])

    def finish(self) -> Iterator[bytes]:
        spool = tempfile.TemporaryFile()  # noqa: SIM115 (closed when the last chunk is read)
        self.workbook.save(spool)
        spool.seek(0)

        def chunks() -> Iterator[bytes]:
            with spool:
                while chunk := spool.read(64 * 1024):
                    yield chunk

        return chunks()


WRITERS: dict[str, type[CsvWriter | JsonLinesWriter | JsonWriter | XlsxWriter]] = {
    "csv": CsvWriter,
    "json": JsonWriter,
    "jsonl": JsonLinesWriter,
    "xlsx": XlsxWriter,
}


class DownloadResponse(StreamingResponse):
    """A streaming answer that records its closing event however the stream ends."""

    def __init__(self, body: AsyncIterator[bytes], close: Any, **kwargs: Any) -> None:
        super().__init__(body, **kwargs)
        self._body = body
        self._close = close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):  # a client that went away still gets its event
                aclose = getattr(self._body, "aclose", None)
                if aclose is not None:
                    await aclose()
                await self._close()


def _json_param(request: Request, name: str, kind: type) -> Any:
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Problem(400, f"`{name}` is not valid JSON.", "BAD_REQUEST") from None
    if kind is list and isinstance(value, dict):
        value = [value]
    if not isinstance(value, kind):
        raise Problem(400, f"`{name}` must be a JSON {kind.__name__}.", "BAD_REQUEST")
    return value


def _limit(request: Request) -> int | None:
    raw = request.query_params.get("limit")
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise Problem(400, f"`limit` must be a whole number from 1 to {MAX_LIMIT}.", "BAD_REQUEST")
    return int(raw)


def dataset_columns(built: BuiltSchema, code: str) -> tuple[str, list[Column], str | None, str | None]:
    """(root field, columns, where type, orderBy type) of dataset `code` in this schema: the
    node's fields that are columns (entity links are objects, not columns). A Problem 404 when the
    schema has no such dataset (不予开放 datasets are not in any open schema)."""
    bindings = built.tier.bindings
    query = built.tier.graphql.query_type
    assert query is not None
    for root, ds in bindings.root_datasets.items():
        if ds.code != code:
            continue
        binding = bindings.nodes_by_dataset[code]
        gfield = query.fields[root]
        connection = get_named_type(gfield.type)
        node = get_named_type(get_named_type(connection.fields["edges"].type).fields["node"].type)
        columns = [Column(name, binding.fields[name].title) for name in node.fields if name in binding.fields]
        where, order = gfield.args.get("where"), gfield.args.get("orderBy")
        return (
            root,
            columns,
            str(where.type) if where is not None else None,
            str(order.type) if order is not None else None,
        )
    raise Problem(404, f"No open dataset {code!r}.", "NOT_FOUND")


def download_query(root: str, columns: list[Column], where_type: str | None, order_type: str | None) -> str:
    defs = ["$first: Int", "$after: String"]
    args = ["first: $first", "after: $after"]
    if where_type:
        defs.append(f"$where: {where_type}")
        args.append("where: $where")
    if order_type:
        defs.append(f"$orderBy: {order_type}")
        args.append("orderBy: $orderBy")
    fields = " ".join(c.name for c in columns)
    return (
        f"query Download({', '.join(defs)}) {{ {root}({', '.join(args)}) "
        f"{{ edges {{ node {{ {fields} }} }} pageInfo {{ hasNextPage endCursor }} }} }}"
    )


class Downloads:
    def __init__(self, state: GatewayState) -> None:
        self.state = state
        # the open tier's own identification (API key, failed-authentication limit)
        self._open = GraphQLEndpoint(Tier.OPEN, state)

    def routes(self) -> list[Route]:
        return [
            Route("/open/download/{code}.{fmt}", self.handle, methods=["GET"]),
            Route("/explore/datasets/{code}/download.{fmt}", self.handle, methods=["GET"]),
        ]

    # ------------------------------------------------------------------ the request
    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        code, fmt = request.path_params["code"], request.path_params["fmt"]
        principal: Principal = ANONYMOUS
        job: Job | None = None
        try:
            if fmt not in WRITERS:
                raise Problem(404, f"Formats: {', '.join(WRITERS)}.", "NOT_FOUND")
            principal = await self._open._identify_limited(request)
            await self._budget(request, principal)
            job, first = await self._prepare(request, principal, code, fmt)
        except Problem as problem:
            response = problem_response(problem)
            if getattr(request.state, "quiet_refusal", False):
                return response  # one event per refused burst (gateway.identity.limits_hook)
            event = self._event(request, principal, None, "download", problem.status, [problem.code], started)
            return await answer_once_recorded(self.state.access_log, event, response)
        start = self._event(request, principal, job, "download.start", 200, [], started, fields=first)
        headers = {
            "Content-Disposition": f'attachment; filename="{code}.{fmt}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Link": f'<{CANONICAL.format(code=code, fmt=fmt)}>; rel="canonical"',
        }
        outcome: Outcome = first.pop("outcome")
        nodes, has_next, end_cursor = self._page(job, outcome)
        if job.limit is not None and has_next and end_cursor:
            params = {k: v for k, v in request.query_params.items() if k != "after"}
            params["after"] = end_cursor
            nxt = f"{request.url.path}?{urlencode(params)}"
            headers["Link"] += f', <{nxt}>; rel="next"'

        if request.method == "HEAD":
            # The headers a GET would get, after the same checks; nothing is sent, so the event is
            # its own and the usage statistics do not count it as a download.
            job.done = True
            head = self._event(request, principal, job, "download.head", 200, [], started, fields=first)
            return await answer_once_recorded(
                self.state.access_log, head, Response(media_type=MEDIA[fmt], headers=headers)
            )

        async def close() -> None:
            await self._finish(request, job, started)

        response = DownloadResponse(
            self._stream(job, nodes, has_next, end_cursor),
            close,
            media_type=MEDIA[fmt],
            headers=headers,
        )
        recorded = await answer_once_recorded(self.state.access_log, start, response)
        if recorded is not response:
            job.done = True  # nothing was sent; the refusal is the 503 itself
            job.failure = None
            return recorded
        return response

    async def _budget(self, request: Request, principal: Principal) -> None:
        ident = (
            f"key:{principal.id}"
            if principal.kind is PrincipalKind.ENTERPRISE
            else f"addr:{client_address(request) or 'unknown'}"
        )
        decision = await self.state.identity.limiter.for_budget(
            "download", self.state.settings.download_rate, ident
        )
        if not decision.allowed:
            raise Problem(
                429,
                f"Download limit exceeded ({self.state.settings.download_rate}); "
                f"retry after {decision.retry_after} s.",
                "RATE_LIMITED",
                decision.headers,
            )

    async def _prepare(
        self, request: Request, principal: Principal, code: str, fmt: str
    ) -> tuple[Job, dict[str, Any]]:
        """Plan and run the first batch before anything is sent, so a bad filter or a refused
        dataset is an ordinary 4xx answer, not a broken stream."""
        where = _json_param(request, "where", dict)
        order = _json_param(request, "orderBy", list)
        after = request.query_params.get("after") or None
        limit = _limit(request)
        built = await self.state.registry.schema(Tier.OPEN, principal.consumer)
        root, columns, where_type, order_type = dataset_columns(built, code)
        if (where and not where_type) or (order and not order_type):
            raise Problem(400, "This dataset cannot be filtered or ordered.", "BAD_REQUEST")
        variables: dict[str, Any] = {"first": limit or BATCH}
        if where:
            variables["where"] = where
        if order:
            variables["orderBy"] = order
        for _ in range(2):  # at most once more, without fields the caller turned out not to read
            query = download_query(root, columns, where_type, order_type)
            job = Job(code, fmt, principal, built, root, query, variables, limit)
            outcome, ctx = await self._run(job, after)
            if outcome.request_error:
                first = outcome.errors[0] if outcome.errors else {}
                code_ = first.get("extensions", {}).get("code", "BAD_USER_INPUT")
                raise Problem(400, first.get("message", "The request is not valid."), code_)
            forbidden = [e for e in outcome.errors if e.get("extensions", {}).get("code") == FORBIDDEN]
            if forbidden:
                raise Problem(403, forbidden[0]["message"], FORBIDDEN)
            denied = {
                e["path"][-1]
                for e in outcome.errors
                if e.get("extensions", {}).get("code") == FORBIDDEN_FIELD and e.get("path")
            }
            if not denied:
                break
            columns = [c for c in columns if c.name not in denied]
        else:
            raise Problem(403, "No field of this dataset may be downloaded.", FORBIDDEN)
        job.read = ctx.reads[0].as_dict() if ctx.reads else {"dataset": code}
        header = [c.title for c in columns] if request.query_params.get("header") == "title" else None
        job.columns = columns
        job.header = header or [c.name for c in columns]
        return job, {"outcome": outcome, "fields": [a.as_dict() for a in ctx.accesses.values()]}

    async def _run(self, job: Job, after: str | None) -> tuple[Outcome, ExecutionContext]:
        registry = self.state.registry
        principal = job.principal
        # The caller's policies, unchanged; only the page ceiling is the download's batch size.
        limits = replace(
            self.state.settings.limits,
            max_page_size=max(BATCH, MAX_LIMIT),
            max_cost=max(self.state.settings.limits.max_cost, 10**9),
        )
        ctx = ExecutionContext(
            Tier.OPEN,
            principal,
            restrict_grants(principal, await registry.grants()),
            datetime.now(UTC),
            limits,
            encryptor=self.state.encryptor_for(principal),
            pool=registry.keyring,
        )
        variables = {**job.variables, **({"after": after} if after else {})}
        async with self.state.engine.connect() as conn:
            # plans=None: each batch's `after` differs, so caching them would only evict the API's plans
            outcome = await run(
                job.built.tier, job.query, variables, None, ctx, conn, cache=job.built.documents, plans=None
            )
        return outcome, ctx

    def _page(self, job: Job, outcome: Outcome) -> tuple[list[dict[str, Any]], bool, str | None]:
        conn = (outcome.data or {}).get(job.root)
        if conn is None:
            raise Problem(403, "The dataset could not be read.", FORBIDDEN)
        info = conn["pageInfo"]
        return [e["node"] for e in conn["edges"]], bool(info["hasNextPage"]), info["endCursor"]

    # ------------------------------------------------------------------ the stream
    async def _stream(
        self, job: Job, nodes: list[dict[str, Any]], has_next: bool, end_cursor: str | None
    ) -> AsyncIterator[bytes]:
        writer = WRITERS[job.fmt](job.columns, job.header)
        is_xlsx = isinstance(writer, XlsxWriter)
        chunk = writer.start()
        if chunk:
            job.bytes += len(chunk)
            yield chunk
        try:
            while True:
                if is_xlsx and job.rows + len(nodes) > XLSX_MAX_ROWS:
                    nodes = nodes[: XLSX_MAX_ROWS - job.rows]
                    job.truncated = True
                if is_xlsx:  # openpyxl is synchronous and CPU-bound: off the event loop
                    await anyio.to_thread.run_sync(writer.rows, nodes)
                    chunk = b""
                else:
                    chunk = writer.rows(nodes)
                job.rows += len(nodes)
                if chunk:
                    job.bytes += len(chunk)
                    yield chunk
                if job.truncated or job.limit is not None or not has_next or not end_cursor:
                    break
                outcome, _ = await self._run(job, end_cursor)
                if outcome.request_error or (outcome.data or {}).get(job.root) is None:
                    raise Problem(500, "The download stopped: a batch could not be read.", "DOWNLOAD_FAILED")
                nodes, has_next, end_cursor = self._page(job, outcome)
            if job.truncated and isinstance(writer, XlsxWriter):
                writer.note(f"已截断：XLSX 最多 {XLSX_MAX_ROWS} 行，完整数据请下载 CSV 或 JSON Lines。")
            parts = await anyio.to_thread.run_sync(writer.finish) if is_xlsx else writer.finish()
            for chunk in parts:
                job.bytes += len(chunk)
                yield chunk
            job.done = True
        except Problem as problem:
            job.failure = problem
            raise
        except Exception as err:
            job.failure = classify(err) or Problem(500, "The download failed.", "DOWNLOAD_FAILED")
            raise

    async def _finish(self, request: Request, job: Job, started: float) -> None:
        if job.done and job.failure is None:
            status, codes = 200, (["XLSX_ROW_LIMIT"] if job.truncated else [])
        elif job.failure is not None:
            status, codes = job.failure.status, [job.failure.code]
        else:
            status, codes = 499, ["DOWNLOAD_ABORTED"]  # the client went away
        event = self._event(request, job.principal, job, "download.end", status, codes, started)
        try:
            await self.state.access_log.record(event)
        except Exception:  # the data is out; the start event stands, and this is an operator's alarm
            log.exception("request %s: download.end could not be recorded", event.request_id)

    def _event(
        self,
        request: Request,
        principal: Principal,
        job: Job | None,
        operation: str,
        status: int,
        codes: list[str],
        started: float,
        fields: dict[str, Any] | None = None,
    ) -> AccessEvent:
        reads: list[dict[str, Any]] = []
        if job is not None and operation == "download.end":
            reads = [{**job.read, "rows": job.rows, "bytes": job.bytes, "format": job.fmt}]
        params = {k: v for k, v in request.query_params.items()}
        return AccessEvent(
            request_id=getattr(request.state, "request_id", ""),
            tier=Tier.OPEN.value,
            principal_kind=principal.kind.value,
            principal_id=principal.id,
            consumer=principal.consumer,
            client_address=client_address(request),
            operation_name=operation,
            operation_type="query",
            query_digest=query_digest(job.query, job.variables) if job is not None else None,
            status=status,
            error_codes=codes,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            fields=(fields or {}).get("fields", []),
            reads=reads,
            variables={"dataset": request.path_params.get("code"), **params},
        )
