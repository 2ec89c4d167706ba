"""`POST /admin/data/{dataset}/load`: the machine twin of `shuqiao data load`; and
`GET /admin/data/datasets[?department=CODE]`, that of `shuqiao catalog list --department CODE`: the
datasets a caller may load, each with its columns, size and freshness.

The body is the file (`Content-Type: text/csv`, `application/x-ndjson` / `application/jsonl`,
or the XLSX type); query parameters `mode`, `encoding`, `key`, `max_rejects`. Behind
`SessionOrBearer` (a machine's bearer token, or a signed-in person's session with its CSRF token
on POST: the console's "目录与数据" section), scope `catalog:write` or `admin`: a steward loads and
lists only their own department's datasets (the token's department claim), `admin` any.

CSV and JSON Lines stream from the request into the loader (a bounded queue between the two):
the upload is never written to disk, where its clear L4 values would sit. XLSX is a zip archive
that must be seekable, so it is held in memory, at most `XLSX_MAX_BYTES`.

Errors are the one problem shape; a load with rejected rows is 422 `ROWS_REJECTED` with the
counts and the rejects (row, column, reason — never a protected value; the first `REJECTS_KEPT`,
`rejects_complete` says whether that is all) in `extensions`; a load that skipped rejects within
`max_rejects` lists them the same way in its answer. There is no rejects file over HTTP: the
answer is it. Every call, refused or not, is one audit event (`data.load`, `data.status`)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import queue
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from cryptography.hazmat.primitives import hashes
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from catalogue.freshness import listing, load_statuses
from catalogue.service import load_catalogue
from gateway.catalogue_admin import catalogue_protector, principal_of
from gateway.identity.audit import AuditUnavailable, record_admin_event
from gateway.loading.readers import CountingReader, Encoding, Format, LoadError, read_rows
from gateway.loading.service import Audited, LoadRequest, cipher_for, dataset_spec
from gateway.loading.writer import LoadRejected, LoadResult, Mode, RejectsFile, load_rows
from gateway.problems import AUDIT_UNAVAILABLE, Problem, problem_response

if TYPE_CHECKING:
    from gateway.identity.tokens import TokenClaims
    from gateway.state import GatewayState

log = logging.getLogger("shuqiao")
XLSX_MAX_BYTES = 64 << 20
REJECTS_KEPT = 1000  # rejects an answer lists (each rejected row gives one or more)
FORMATS = {
    "text/csv": Format.csv,
    "application/csv": Format.csv,
    "application/x-ndjson": Format.jsonl,
    "application/jsonl": Format.jsonl,
    "application/json-seq": Format.jsonl,
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": Format.xlsx,
}
_END = b""


class _BodyReader(io.RawIOBase):
    """The request body as a blocking file for the loader's thread, fed chunk by chunk."""

    def __init__(self) -> None:
        self.chunks: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=16)
        self._buffer = b""
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._buffer and not self._done:
            item = self.chunks.get()
            if isinstance(item, BaseException):
                raise LoadError("the upload was interrupted")
            if item == _END:
                self._done = True
            self._buffer = item
        n = min(len(buffer), len(self._buffer))
        buffer[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


class DataLoadAPI:
    """`check`: how a caller is authenticated — the app gives SessionOrBearer over
    `catalogue_protector`; without it, bearer tokens only."""

    def __init__(
        self, state: GatewayState, check: Callable[[Request], Awaitable[TokenClaims]] | None = None
    ) -> None:
        self.state = state
        self.bearer = catalogue_protector(state.identity)
        self.check = check or self.bearer.validate_request

    def routes(self) -> list[Route]:
        """Under `Mount("/admin/data")`."""
        return [
            Route("/datasets", self.status, methods=["GET"]),
            Route("/{dataset}/load", self.load, methods=["POST"]),
        ]

    async def _claims(self, request: Request) -> TokenClaims:
        try:
            return await self.check(request)
        except Problem as refused:
            # a valid token without the scope, or a session's request without its CSRF token: who asked
            request.state.load_claims = getattr(refused, "claims", None)
            raise

    async def status(self, request: Request) -> Response:
        """The datasets the caller may load (a steward: their department's), with freshness."""
        started = time.perf_counter()
        claims: TokenClaims | None = None
        detail: dict[str, Any] = {}
        error: str | None = None
        try:
            claims = await self._claims(request)
            wanted = request.query_params.get("department") or None
            if "admin" not in claims.scopes:
                if not claims.department:
                    raise Problem(403, "A catalog:write token must name its department.", "FORBIDDEN")
                if wanted not in (None, claims.department):
                    raise Problem(403, f"You may list only department {claims.department}.", "FORBIDDEN")
                wanted = claims.department
            catalogue, statuses = (
                await load_catalogue(self.state.engine),
                await load_statuses(self.state.engine),
            )
            rows = [
                listing(spec, statuses.get(spec.code))
                for spec in catalogue.datasets.values()
                if wanted is None or spec.department == wanted
            ]
            detail = {"department": wanted or "*", "datasets": len(rows)}
            response = Response(
                orjson.dumps({"department": wanted, "datasets": rows}),
                media_type="application/json",
                headers={"Cache-Control": "no-store"},
            )
        except Problem as problem:
            claims = claims or getattr(request.state, "load_claims", None)
            response, error = problem_response(problem), problem.code
        try:
            await self._record(request, claims, response.status_code, detail, error, started, "data.status")
        except AuditUnavailable:
            log.exception("data.status audit write failed")
            return problem_response(AUDIT_UNAVAILABLE)
        return response

    async def load(self, request: Request) -> Response:
        started = time.perf_counter()
        claims: TokenClaims | None = None
        detail: dict[str, Any] = {}
        rejects = RejectsFile(None, keep=REJECTS_KEPT)
        try:
            try:
                claims = await self._claims(request)
            except Problem:
                claims = getattr(request.state, "load_claims", None)
                raise
            result = await self._load(request, claims, detail, started, rejects)
            body = {**result.summary(), "rejects_complete": rejects.count <= len(rejects.sample)}
            return Response(orjson.dumps(body), status_code=200, media_type="application/json")
        except AuditUnavailable:
            log.exception("data.load audit write failed; nothing loaded")
            return problem_response(AUDIT_UNAVAILABLE)
        except Problem as problem:
            response, error = problem_response(problem), problem.code
        except LoadRejected as err:
            rejected = Problem(
                422, str(err), "ROWS_REJECTED", extensions=_rejects_extension(err.result, rejects)
            )
            response, error = problem_response(rejected), rejected.code
            detail.update(read=err.result.read, loaded=0, rejected=err.result.rejected)
        except LoadError as err:
            response, error = problem_response(Problem(400, str(err), "BAD_INPUT")), "BAD_INPUT"
        try:
            await self._record(request, claims, response.status_code, detail, error, started)
        except AuditUnavailable:
            log.exception("data.load audit write failed")
            return problem_response(AUDIT_UNAVAILABLE)
        return response

    async def _record(
        self,
        request: Request,
        claims: TokenClaims | None,
        status: int,
        detail: dict[str, Any],
        error: str | None,
        started: float,
        operation: str = "data.load",
    ) -> None:
        await record_admin_event(
            self.state.identity.audit,
            operation,
            status=status,
            **principal_of(request, claims),
            subject=claims.subject if claims is not None and claims.subject != claims.client_id else None,
            consumer=claims.department if claims is not None else None,
            target=detail.get("dataset") or request.path_params.get("dataset") or detail.get("department"),
            detail={k: v for k, v in detail.items() if k != "dataset"},
            error=error,
            request=request,
            started=started,
        )

    async def _load(
        self,
        request: Request,
        claims: TokenClaims,
        detail: dict[str, Any],
        started: float,
        rejects: RejectsFile,
    ) -> LoadResult:
        engine = self.state.engine
        try:
            spec = await dataset_spec(engine, request.path_params["dataset"])
        except LoadError as err:
            raise Problem(404, str(err), "NOT_FOUND") from None
        if "admin" not in claims.scopes and claims.department != spec.department:
            raise Problem(
                403,
                f"A steward loads only their own department's datasets; {spec.code} is {spec.department}'s.",
                "FORBIDDEN",
            )
        params = request.query_params
        try:
            mode = Mode(params.get("mode", "append"))
            encoding = Encoding(params.get("encoding", "auto"))
            max_rejects = max(0, int(params.get("max_rejects", "0")))
        except ValueError:
            raise Problem(
                400,
                "mode is append, upsert or replace; encoding utf-8, gb18030 or auto; max_rejects a number.",
                "BAD_REQUEST",
            ) from None
        key = [k for k in params.get("key", "").split(",") if k] or None
        detail.update(dataset=spec.code, mode=mode.value)
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        fmt = FORMATS.get(media)
        if fmt is None:
            raise Problem(
                415, f"Send the file as one of: {', '.join(sorted(FORMATS))}.", "UNSUPPORTED_MEDIA_TYPE"
            )
        cipher = await cipher_for(engine, spec, self._master_key())
        digest = hashes.Hash(hashes.SM3())
        feeder: asyncio.Task[None] | None = None
        body: _BodyReader | None = None
        if fmt is Format.xlsx:
            data = bytearray()
            async for chunk in request.stream():
                data += chunk
                if len(data) > XLSX_MAX_BYTES:
                    raise Problem(
                        413,
                        f"An XLSX upload is held in memory: at most {XLSX_MAX_BYTES >> 20} MiB; "
                        "send CSV instead.",
                        "PAYLOAD_TOO_LARGE",
                    )
            digest.update(bytes(data))
            source = CountingReader(io.BytesIO(bytes(data)))
        else:
            body = _BodyReader()
            source = CountingReader(body)  # type: ignore[arg-type]
            feeder = asyncio.create_task(self._feed(request, body, digest))

        def finish() -> str:
            # Called once every row has been read, so every chunk has been hashed.
            return "sm3:" + digest.finalize().hex()

        async def auditor(operation: str, status: int, event: dict[str, Any], error: str | None) -> None:
            await self._record(request, claims, status, event, error, started, operation)

        audited = Audited(
            engine,
            auditor,
            "data.load",
            LoadRequest(spec.code, Path("-"), fmt, encoding, mode, key, max_rejects),
        )
        await audited.start()

        try:
            rows = await asyncio.to_thread(read_rows, source, fmt, encoding)
            result = await load_rows(
                engine,
                spec,
                rows.header,
                rows.rows,
                mode=mode,
                key=key,
                cipher=cipher,
                max_rejects=max_rejects,
                rejects=rejects,
                digest=finish,
                before_commit=audited.before_commit,
            )
        finally:
            if feeder is not None and body is not None and not feeder.done():
                # The load stopped before the body's end: stop feeding, and empty the queue so a
                # put blocked on it (in a worker thread) returns rather than waiting for ever.
                feeder.cancel()
                await asyncio.gather(feeder, return_exceptions=True)
                with contextlib.suppress(queue.Empty):
                    while True:
                        body.chunks.get_nowait()
        return await audited.finish(result)

    async def _feed(self, request: Request, body: _BodyReader, digest: Any) -> None:
        try:
            async for chunk in request.stream():
                if chunk:
                    digest.update(chunk)
                    await asyncio.to_thread(body.chunks.put, chunk)
            await asyncio.to_thread(body.chunks.put, _END)
        except Exception as err:  # a client that went away: the reader stops with an error
            await asyncio.to_thread(body.chunks.put, err)

    def _master_key(self) -> bytes:
        from gateway.secrets import load_master_key

        return load_master_key(self.state.settings.master_key_file)


def _rejects_extension(result: LoadResult, rejects: RejectsFile) -> dict[str, Any]:
    return {
        "read": result.read,
        "rejected": result.rejected,
        "rejects": [{"row": r.row, "column": r.column, "reason": r.reason} for r in result.sample],
        "rejects_complete": rejects.count <= len(rejects.sample),
    }
