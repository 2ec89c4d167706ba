"""SQLite's audit appends: one batch per call on a connection of their own, run in a process of
their own for the gateway.

`SqliteChainFile` is the transaction: BEGIN IMMEDIATE (the database write lock, so no other
process reads the same head before we commit), read the head, link the rows to it unless the
caller already linked them to that very head, one multi-row INSERT, move the head, COMMIT, on a
connection running synchronous=FULL (the gateway's engine runs NORMAL, which in WAL mode may lose
the last commits on power loss; an audit commit must survive that).

`WriterProcess` runs it in a child process (`gateway.audit.sqlite_writer.main`)
fed batches over a socket pair. In a worker thread the same work took 0.5–0.7 ms of the gateway
process's CPU per request and, worse, each statement handed the GIL back and forth with the busy
event loop, so every commit waited for turns of a loop that was not waiting for it; in a process
the loop only writes the batch and reads the answer, both ordinary non-blocking socket I/O. The
child ignores SIGINT and SIGTERM (the gateway finishes its last appends at shutdown) and exits
when the gateway's end of the socket closes, which includes the gateway being killed. If the
child dies, the batch in flight fails (fail closed; SQLite rolls back whatever was not
committed) and the next batch starts a new child."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import pickle
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

from gateway.audit.chain import GENESIS_HASH, LINK_COLUMNS, link

# Nothing here imports SQLAlchemy or the models: the child process starts in ~0.1 s instead of
# ~1 s. The caller passes the table's column names and the head row's id, and encodes the rows.
Head = tuple[int, str]  # (seq, hash) of the chain's last event
Batch = tuple[list[dict[str, Any]], list[tuple[Any, ...]]]  # rows (for relinking), their values

READ_HEAD = "SELECT seq, hash FROM audit_chain_head WHERE id = ?"
SEED_HEAD = "INSERT INTO audit_chain_head (id, seq, hash) VALUES (?, 0, ?) ON CONFLICT DO NOTHING"
MOVE_HEAD = "UPDATE audit_chain_head SET seq = ?, hash = ? WHERE id = ?"


@functools.lru_cache(maxsize=64)
def insert_sql(columns: tuple[str, ...], n: int) -> str:
    """One INSERT of n rows: one statement per batch instead of executemany's step per row."""
    row = f"({', '.join('?' * len(columns))})"
    return f"INSERT INTO audit_event ({', '.join(columns)}) VALUES {', '.join([row] * n)}"  # noqa: S608


class SqliteChainFile:
    """The audit writer's own connection to a SQLite database file; one caller at a time."""

    def __init__(self, path: str, columns: tuple[str, ...], head_id: int) -> None:
        self.path, self.columns, self.head_id = path, columns, head_id
        self._link_at = [columns.index(c) for c in LINK_COLUMNS]
        self._conn: sqlite3.Connection | None = None
        self.rows_per_insert = 1

    def connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            # 32766 bound parameters since SQLite 3.32 (a whole batch in one INSERT), fewer where
            # the library was built with a lower limit
            limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
            self.rows_per_insert = max(1, limit // len(self.columns))
            self._conn = conn
        return self._conn

    def append(self, batch: Batch, linked_to: Head | None) -> tuple[Head, Head]:
        """Write the batch after the chain's head in one transaction; → (head before, head after).
        `batch`: the rows and their encoded values (in `columns` order), linked to `linked_to`;
        if the head is another (a different process appended since) they are linked again here,
        rows and values alike, in place."""
        rows, params = batch
        conn = self.connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            head = conn.execute(READ_HEAD, (self.head_id,)).fetchone()
            if head is None:  # the migration seeds it; this covers tables made by create_all
                conn.execute(SEED_HEAD, (self.head_id, GENESIS_HASH))
                head = (0, GENESIS_HASH)
            before = (int(head[0]), str(head[1]))
            if linked_to != before:
                link(rows, *before)
                for i, row in enumerate(rows):  # the link columns have no bind processor
                    values = list(params[i])
                    for at, name in zip(self._link_at, LINK_COLUMNS, strict=True):
                        values[at] = row[name]
                    params[i] = tuple(values)
            after = (int(rows[-1]["seq"]), str(rows[-1]["hash"])) if rows else before
            for i in range(0, len(params), self.rows_per_insert):
                chunk = params[i : i + self.rows_per_insert]
                conn.execute(insert_sql(self.columns, len(chunk)), [v for row in chunk for v in row])
            conn.execute(MOVE_HEAD, (after[0], after[1], self.head_id))
            conn.execute("COMMIT")
            return before, after
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# -- the child process and its client -------------------------------------------------------

_LEN = struct.Struct(">I")


def _frame(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LEN.pack(len(body)) + body


def _read_exactly(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _error_text(err: BaseException) -> str:
    # sqlite3's messages name tables and constraints, never values.
    return f"{type(err).__name__}: {err}"


def serve(sock: socket.socket, path: str, columns: tuple[str, ...], head_id: int) -> None:
    """The child's loop: one batch in, its result out, until the gateway closes its end."""
    chain = SqliteChainFile(path, columns, head_id)
    try:
        chain.connection()
        sock.sendall(_frame(("ready",)))
    except Exception as err:
        sock.sendall(_frame(("error", _error_text(err))))
        return
    try:
        while (header := _read_exactly(sock, _LEN.size)) is not None:
            body = _read_exactly(sock, _LEN.unpack(header)[0])
            if body is None:
                break
            batch, linked_to = pickle.loads(body)  # noqa: S301 - our own parent, over a socket pair
            try:
                reply: tuple[Any, ...] = ("ok", *chain.append(batch, linked_to))
            except Exception as err:
                reply = ("error", _error_text(err))
            sock.sendall(_frame(reply))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the gateway went away mid-batch: what was committed stays, nobody is waiting
    finally:
        chain.close()


class AuditWriterError(RuntimeError):
    """The writer process refused or lost a batch."""


# The child's entry point, imported by name (run with -m, this module would exist twice: as
# __main__ and as itself).
CHILD = "import sys; from gateway.audit.sqlite_writer import main; main(sys.argv[1:])"


class WriterProcess:
    """The gateway's side of one writer process: `append()` one batch at a time."""

    START_TIMEOUT = 30.0

    def __init__(self, path: str, columns: tuple[str, ...], head_id: int) -> None:
        self.path, self.columns, self.head_id = path, columns, head_id
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        if self._writer is not None:
            return
        ours, theirs = socket.socketpair()
        try:
            # The package's own root first, so the child imports this very code however the
            # gateway was started (installed, or from a source tree).
            root = str(Path(__file__).resolve().parents[2])
            # Nothing of the gateway's settings: the master key, if set in the environment,
            # has no business in a process that only appends rows.
            env = {k: v for k, v in os.environ.items() if not k.startswith("SHUQIAO_")}
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
            self._proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [
                    sys.executable,
                    "-c",
                    CHILD,
                    str(theirs.fileno()),
                    self.path,
                    str(self.head_id),
                    *self.columns,
                ],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env=env,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._reader, self._writer = await asyncio.open_unix_connection(sock=ours)
        reply = await self._exchange(None, "at start", self.START_TIMEOUT)
        if reply[0] != "ready":
            await self.aclose()
            raise AuditWriterError(f"audit writer could not open the database: {reply[1]}")

    async def append(self, batch: Batch, linked_to: Head | None) -> tuple[Head, Head]:
        """One batch, committed by the child; → (head before, head after). Any failure raises."""
        await self.start()
        reply = await self._exchange((batch, linked_to), "mid-batch")
        if reply[0] != "ok":
            raise AuditWriterError(f"audit append failed: {reply[1]}")
        return reply[1], reply[2]

    async def _exchange(self, message: Any, lost: str, timeout: float | None = None) -> tuple[Any, ...]:
        """Send `message` (None: only read) and read the reply. If anything goes wrong on the way
        (the child died, a timeout, we were cancelled with a reply pending), the child is let go
        and the next batch gets a new one, so no stale reply is ever read as another's answer."""
        assert self._writer is not None
        try:
            if message is not None:
                self._writer.write(_frame(message))
                await self._writer.drain()
            return await asyncio.wait_for(self._receive(), timeout)
        except BaseException as err:
            await self.aclose()
            if isinstance(err, OSError | asyncio.IncompleteReadError):
                raise AuditWriterError(f"audit writer process exited {lost}") from err
            raise

    async def _receive(self) -> tuple[Any, ...]:
        assert self._reader is not None
        header = await self._reader.readexactly(_LEN.size)
        body = await self._reader.readexactly(_LEN.unpack(header)[0])
        return pickle.loads(body)  # noqa: S301 - our own child

    async def aclose(self) -> None:
        """Close our end (the child finishes what it holds, then exits) and reap the child."""
        writer, proc, self._writer, self._reader, self._proc = self._writer, self._proc, None, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        if proc is not None:
            try:
                await asyncio.wait_for(asyncio.to_thread(proc.wait), 10)
            except TimeoutError:
                proc.kill()  # stuck (a lock held elsewhere for ever?): what it held is rolled back
            except asyncio.CancelledError:
                proc.kill()
                raise

    def abandon(self) -> None:
        """Forget a child started on another event loop: closing our socket ends it."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.transport.abort()
        self._writer = self._reader = None
        self._proc = None


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    fd, path, head_id, columns = int(argv[0]), argv[1], int(argv[2]), tuple(argv[3:])
    with socket.socket(fileno=fd) as sock:
        serve(sock, path, columns, head_id)
