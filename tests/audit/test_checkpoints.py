"""Signed checkpoints and archives on SQLite and PostgreSQL: a chain rewritten through its head is
caught at the first checkpoint after the rewrite; an exported archive verifies offline with only
the public key; one changed byte anywhere in it does not."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update
from typer.testing import CliRunner

from gateway.audit import event_hash, verify_chain
from gateway.audit.checkpoints import (
    CHECKPOINTS,
    CheckpointError,
    CheckpointTask,
    export_archive,
    verify_archive,
    verify_with_checkpoints,
    write_checkpoint,
)
from gateway.audit.cli import audit_app
from gateway.audit.models import HEAD_ID, AuditChainHead, AuditEvent
from gateway.crypto.signing import open_signing_store, signing_key_dir
from gateway.db import create_engine
from keys import sm2
from keys.keystore import KeyStore
from tests.audit.chain_helpers import append
from tests.audit.test_audit_chain import make_event

EVENTS = AuditEvent.__table__
HEAD = AuditChainHead.__table__


async def _append(engine: object, n: int, start: int = 1) -> None:
    await append(engine, [make_event(i) for i in range(start, start + n)])  # type: ignore[arg-type]


async def _rewrite_from(engine: object, seq: int) -> None:
    """What an attacker with write access does: edit one event, recompute every hash after it,
    head included. The plain chain check cannot tell."""
    async with engine.begin() as conn:  # type: ignore[attr-defined]
        await conn.execute(update(EVENTS).where(EVENTS.c.seq == seq).values(principal_id="someone-else"))
        q = select(EVENTS).where(EVENTS.c.seq >= seq).order_by(EVENTS.c.seq)
        rows = (await conn.execute(q)).mappings().all()
        prev = (await conn.execute(select(EVENTS.c.hash).where(EVENTS.c.seq == seq - 1))).scalar()
        for row in rows:
            new = {**row, "prev_hash": prev}
            new["hash"] = prev = event_hash(new)
            await conn.execute(
                update(EVENTS)
                .where(EVENTS.c.seq == row["seq"])
                .values(prev_hash=new["prev_hash"], hash=new["hash"])
            )
        await conn.execute(update(HEAD).where(HEAD.c.id == HEAD_ID).values(hash=prev))


def test_full_rewrite_is_caught_at_the_first_checkpoint_after_it(db: str, store: KeyStore) -> None:
    async def go() -> None:
        engine = create_engine(db)
        try:
            await _append(engine, 10)
            assert (await write_checkpoint(engine, store)).seq == 10  # type: ignore[union-attr]
            await _append(engine, 10, 11)
            await write_checkpoint(engine, store, 15)
            await write_checkpoint(engine, store)
            report = await verify_with_checkpoints(engine, store)
            assert (report.ok, report.events_checked, report.checkpoints_checked) == (True, 20, 3)

            await _rewrite_from(engine, 12)
            assert (await verify_chain(engine)).ok  # the unkeyed chain alone is fooled
            report = await verify_with_checkpoints(engine, store)
            assert not report.ok and report.first_bad_seq == 15 and "rewritten" in (report.reason or "")
            assert report.checkpoints_checked == 1 and report.last_checkpoint_seq == 10
            # and a checkpoint is not signed over a segment that no longer links to the last one
            await _append(engine, 2, 21)
            with pytest.raises(CheckpointError):
                await write_checkpoint(engine, store)
        finally:
            await engine.dispose()

    asyncio.run(go())


def test_forged_or_foreign_checkpoint_is_refused(db: str, store: KeyStore, tmp_path: Path) -> None:
    async def go() -> None:
        engine = create_engine(db)
        try:
            await _append(engine, 4)
            await write_checkpoint(engine, store)
            async with engine.begin() as conn:
                sig = (await conn.execute(select(CHECKPOINTS.c.signature))).scalar_one()
                forged = sig[:-2] + ("00" if sig[-2:] != "00" else "01")
                await conn.execute(update(CHECKPOINTS).values(signature=forged))
            report = await verify_with_checkpoints(engine, store)
            assert not report.ok and report.first_bad_seq == 4 and "signature" in (report.reason or "")
            async with engine.begin() as conn:
                await conn.execute(delete(CHECKPOINTS))
            other = open_signing_store(tmp_path / "other")  # a key the gateway does not know
            await write_checkpoint(engine, other)
            report = await verify_with_checkpoints(engine, store)
            assert not report.ok and "unknown signing key" in (report.reason or "")
        finally:
            await engine.dispose()

    asyncio.run(go())


def _archive(url: str, store: KeyStore, from_seq: int, to_seq: int | None) -> bytes:
    async def go() -> bytes:
        engine = create_engine(url)
        try:
            return b"".join([c async for c in export_archive(engine, store, from_seq, to_seq)])
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_archive_verifies_offline_and_one_changed_byte_fails(
    db: str, store: KeyStore, tmp_path: Path
) -> None:
    async def fill() -> None:
        engine = create_engine(db)
        try:
            await _append(engine, 8)
        finally:
            await engine.dispose()

    asyncio.run(fill())
    data = _archive(db, store, 3, 6)
    info, _ = store.current()
    public = sm2.load_pem_public_key((signing_key_dir(tmp_path / "var") / f"{info.kid}.pub.pem").read_bytes())
    report = verify_archive(data, public)
    assert (report.ok, report.events, report.from_seq, report.to_seq) == (True, 4, 3, 6), report.reason
    assert verify_archive(_archive(db, store, 1, None), public).events == 8

    # offline, through the CLI, with nothing but the public key file
    pub = tmp_path / "gateway.pub.pem"
    pub.write_bytes(public.to_pem().encode())
    archive = tmp_path / "a.jsonl"
    archive.write_bytes(data)
    result = CliRunner().invoke(
        audit_app,
        ["verify-archive", str(archive), "--pubkey", str(pub)],
        env={"SHUQIAO_DATABASE_URL": "sqlite+aiosqlite:////nonexistent/x.db"},
    )
    assert result.exit_code == 0 and "archive verified: seq 3..6, 4 events" in result.stdout

    # every single-byte change, anywhere in the file, fails
    for i in range(len(data)):
        changed = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]
        assert not verify_archive(changed, public).ok, f"byte {i} changed and still verified"
    archive.write_bytes(data.replace(b'"status":200', b'"status":201', 1))
    result = CliRunner().invoke(audit_app, ["verify-archive", str(archive), "--pubkey", str(pub)])
    assert result.exit_code == 1 and "ARCHIVE DOES NOT VERIFY" in result.stdout
    # dropping an event, or verifying with another key, fails too
    lines = data.split(b"\n")
    assert not verify_archive(b"\n".join(lines[:2] + lines[3:]), public).ok
    other = sm2.generate_private_key().public_key
    assert not verify_archive(data, other).ok


def test_background_task_and_cli_checkpoint(db: str, store: KeyStore, tmp_path: Path) -> None:
    async def go() -> None:
        engine = create_engine(db)
        try:
            task = CheckpointTask(engine, store, every_events=5, every_seconds=3600)
            assert not await task.tick(0)  # empty chain
            await _append(engine, 4)
            assert not await task.tick(1)  # 4 < 5 events and not yet T seconds
            assert await task.tick(3600)  # T seconds elapsed with new events
            await _append(engine, 5, 5)
            assert await task.tick(0)  # 5 new events
            async with engine.connect() as conn:
                seqs = await conn.execute(select(CHECKPOINTS.c.seq).order_by(CHECKPOINTS.c.seq))
                assert seqs.scalars().all() == [4, 9]
            task.poll = 0.01
            await _append(engine, 5, 10)
            task.start()
            for _ in range(200):
                if task.written == 3:
                    break
                await asyncio.sleep(0.02)
            await task.stop()
            assert task.written == 3
        finally:
            await engine.dispose()

    asyncio.run(go())
    env = {"SHUQIAO_DATABASE_URL": db, "SHUQIAO_VAR_DIR": str(tmp_path / "var")}
    result = CliRunner().invoke(audit_app, ["checkpoint"], env=env)
    assert result.exit_code == 0 and "seq 14" in result.stdout  # already there: returned as is
    result = CliRunner().invoke(audit_app, ["verify-checkpoints", "--json"], env=env)
    assert result.exit_code == 0 and '"checkpoints_checked": 3' in result.stdout
