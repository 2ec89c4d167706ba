"""The bundled GraphiQL's files (gateway/static/graphiql), served from memory: each file read once,
with a strong ETag (its SHA-256) so a browser revalidates with `If-None-Match` and gets 304, and
gzip-compressed once for clients that accept it — the bundle is about 7 MB as built and about
2 MB compressed. Only files present in the directory at start are served: no path is ever joined
from the request."""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

import anyio
from starlette.requests import Request
from starlette.responses import Response

from gateway.problems import Problem, problem_response

COMPRESSIBLE = (".js", ".css", ".json", ".txt", ".md", ".ttf")
MEDIA = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".ttf": "font/ttf",
    ".json": "application/json",
}
HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}


def media_type(name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix in MEDIA:
        return MEDIA[suffix]
    guessed, _ = mimetypes.guess_type(name)
    # licence files (LICENSE, NOTICE, *.md, *.txt) and anything unknown: shown as text, never run
    return "text/plain; charset=utf-8" if guessed in (None, "text/markdown") else guessed


@dataclass(frozen=True)
class Loaded:
    body: bytes
    gzipped: bytes | None
    etag: str


def _load(path: Path) -> Loaded:
    body = path.read_bytes()
    gzipped = gzip.compress(body, compresslevel=6, mtime=0) if path.suffix in COMPRESSIBLE else None
    if gzipped is not None and len(gzipped) >= len(body):
        gzipped = None
    return Loaded(body, gzipped, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


class VendorAssets:
    def __init__(self, root: Path) -> None:
        self.files = {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}
        self._loaded: dict[str, Loaded] = {}

    async def _get(self, name: str) -> Loaded:
        loaded = self._loaded.get(name)
        if loaded is None:  # read and compress off the event loop, once per file and process
            loaded = await anyio.to_thread.run_sync(_load, self.files[name])
            self._loaded[name] = loaded
        return loaded

    async def handle(self, request: Request) -> Response:
        name = request.path_params["path"]
        if name not in self.files:
            return problem_response(Problem(404, "No such file.", "NOT_FOUND"))
        loaded = await self._get(name)
        headers = {**HEADERS, "ETag": loaded.etag, "Vary": "Accept-Encoding"}
        if loaded.etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=headers)
        accepts = request.headers.get("accept-encoding", "")
        if loaded.gzipped is not None and "gzip" in [a.split(";")[0].strip() for a in accepts.split(",")]:
            return Response(
                loaded.gzipped,
                media_type=media_type(name),
                headers={**headers, "Content-Encoding": "gzip"},
            )
        return Response(loaded.body, media_type=media_type(name), headers=headers)
