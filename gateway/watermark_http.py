"""The officers' watermark trace (数据水印溯源, docs/watermark.md): a page under /audit and its JSON
twin, with the same sign-in or bearer check (audit:read) and the same audit event per call as
the rest of the officers' console (gateway.audit.http.AuditAPI.guarded).

  GET  /audit/watermark                  the page (gateway/static/audit/watermark.html)
  GET  /audit/static/watermark.{js,css} its script and style
  POST /audit/api/watermark/trace        the leak as the request body — CSV, JSON, JSON Lines or
                                         pasted rows as UTF-8 text, or an XLSX workbook — with
                                         ?dataset= to trace against one dataset only; answers the
                                         report (`shuqiao watermark trace --json`'s) and, as
                                         evidence, the exact report bytes and their detached SM2
                                         signature (`shuqiao verify-response REPORT.sig --body REPORT`)

Each trace is an audit event (operation "watermark-trace") whose sealed variables hold the
upload's size and SM3 digest, the datasets matched, who was identified and the report's SM3
digest — never the leak's rows."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from gateway.audit.http import PAGE_HEADERS, AuditAPI
from gateway.problems import Problem
from gateway.watermark_service import read_rows_bytes, report_body, sign_report, trace_file
from keys.sm3 import sm3

STATIC = Path(__file__).resolve().parent / "static" / "audit"
PAGE = "/audit/watermark"
API = "/audit/api/watermark/trace"
MAX_UPLOAD_BYTES = 16 * 1024 * 1024  # a leak for tracing, not a bulk load: a few hundred thousand rows


class WatermarkTrace:
    """Given the officers' API (its check and its recorder), the engine, the master key (the
    watermark keys and the pool's data keys are wrapped under it) and the response signer."""

    def __init__(self, audit: AuditAPI, master_key: bytes, signer: Any) -> None:
        self.audit = audit
        self.master_key = master_key
        self.signer = signer

    def routes(self) -> list[Route]:
        """Full paths, listed before the /audit mount (which would otherwise take them)."""
        return [
            Route(PAGE, self.audit.guarded("watermark-page", self._page, sign_in=True)),
            Route("/audit/static/watermark.js", self._asset("watermark.js", "text/javascript")),
            Route("/audit/static/watermark.css", self._asset("watermark.css", "text/css")),
            Route(API, self.audit.guarded("watermark-trace", self._trace), methods=["POST"]),
        ]

    async def _page(self, request: Request) -> tuple[Response, int]:
        response = FileResponse(STATIC / "watermark.html", media_type="text/html; charset=utf-8")
        response.headers.update(PAGE_HEADERS)
        return response, 0

    def _asset(self, name: str, media: str) -> Any:
        async def asset(request: Request) -> Response:
            return FileResponse(STATIC / name, media_type=f"{media}; charset=utf-8")

        return asset

    async def _trace(self, request: Request) -> tuple[Response, int]:
        data = await _body(request)
        dataset = (request.query_params.get("dataset") or "").strip() or None
        request.state.audit_variables = {"upload_bytes": len(data), "upload_sm3": sm3(data).hex()}
        try:
            rows = read_rows_bytes(data)
            if not rows:
                raise ValueError("no rows could be read from the upload")
            report = await trace_file(self.audit.engine, self.master_key, rows, dataset)
        except ValueError as err:
            raise Problem(400, f"Cannot trace this upload: {err}", "BAD_USER_INPUT") from None
        body = report_body(report)
        request_id = getattr(request.state, "request_id", "") or f"watermark-{time.time_ns()}"
        signature, kid = sign_report(self.signer, body, request_id)
        identified = report["identified"]
        deliveries = identified["deliveries"] if identified else []
        request.state.audit_variables.update(
            {
                "dataset": dataset,
                "rows_read": report["rows_read"],
                "matched": [m["dataset"] for m in report["matched"] if m["columns"]],
                "identified": identified["recipient"] if identified else None,
                "report_sm3": sm3(body).hex(),
                "signature_kid": kid,
            }
        )
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        doc = {
            "report": report,
            "evidence": {
                "filename": f"watermark-trace-{stamp}.json",
                "report": body.decode(),
                "signature": signature.decode("latin-1"),
                "kid": kid,
                "verify": f"shuqiao verify-response watermark-trace-{stamp}.json.sig "
                f"--body watermark-trace-{stamp}.json --pubkey {kid}.pub.pem",
            },
        }
        response = Response(orjson.dumps(doc), media_type="application/json")
        return response, len(deliveries)


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
        raise _too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_UPLOAD_BYTES:
            raise _too_large()
        chunks.append(chunk)
    data = b"".join(chunks)
    if not data.strip():
        raise Problem(
            400, "The request body is the suspected leak (CSV, JSON or XLSX); it is empty.", "BAD_USER_INPUT"
        )
    return data


def _too_large() -> Problem:
    return Problem(
        413,
        f"A leak to trace holds at most {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB; "
        "trace a sample of its rows (a few hundred suffice), or use `shuqiao watermark trace`.",
        "PAYLOAD_TOO_LARGE",
    )
