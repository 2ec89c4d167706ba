"""An investigation exported as a signed bundle verifies offline with the public key alone
(`shuqiao audit verify-archive`); every changed byte fails; a broken chain is not exported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import update
from typer.testing import CliRunner

from gateway.audit.bundle import BundleError, build_bundle, is_bundle, verify_bundle
from gateway.audit.checkpoints import write_checkpoint
from gateway.audit.models import AuditEvent
from gateway.crypto.signing import open_signing_store
from keys import sm2
from tests.audit.chain_helpers import append, run_with_engine
from tests.audit.test_forward import ev

EVENTS = AuditEvent.__table__


def _public(store: Any) -> Any:
    info = store.current()[0]
    return sm2.load_pem_public_key((store.directory / f"{info.kid}.pub.pem").read_bytes())


def test_a_bundle_verifies_offline_and_any_changed_byte_fails(db: str, tmp_path: Path) -> None:
    store = open_signing_store(tmp_path / "var")

    async def go(engine: Any) -> bytes:
        await append(engine, [ev(i) for i in range(1, 9)])
        await write_checkpoint(engine, store)
        return await build_bundle(engine, store, [5, 2, 5], {"view": "search", "filters": {}})

    data = run_with_engine(db, go)
    assert is_bundle(data)
    report = verify_bundle(data, _public(store))
    assert (report.ok, report.events, report.seqs) == (True, 2, [2, 5]), report
    header = json.loads(data.split(b"\n")[0])
    assert header["chain"]["checkpoint"]["seq"] == 8 and header["chain"]["verified"] is True
    assert b"variables" not in data or b'"variables_enc":null' in data  # sealed or absent, never opened

    for i in range(len(data)):
        flipped = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]
        assert not verify_bundle(flipped, _public(store)).ok, i
    other = open_signing_store(tmp_path / "other")
    assert "not by this public key" in (verify_bundle(data, _public(other)).reason or "")


def test_a_broken_chain_is_not_bundled(db: str, tmp_path: Path) -> None:
    store = open_signing_store(tmp_path / "var")

    async def go(engine: Any) -> str:
        await append(engine, [ev(i) for i in range(1, 4)])
        async with engine.begin() as conn:
            await conn.execute(update(EVENTS).where(EVENTS.c.seq == 2).values(status=201))
        try:
            await build_bundle(engine, store, [1], {"view": "search", "filters": {}})
        except BundleError as err:
            return str(err)
        return "built"

    assert "does not verify at seq 2" in run_with_engine(db, go)


def test_cli_bundles_the_consumer_view_and_verify_archive_accepts_it(db: str, tmp_path: Path) -> None:
    from gateway.audit.cli import audit_app

    var = tmp_path / "var"
    store = open_signing_store(var)
    run_with_engine(db, lambda e: append(e, [ev(i) for i in range(1, 6)]))
    env = {"SHUQIAO_DATABASE_URL": db, "SHUQIAO_VAR_DIR": str(var)}
    out = tmp_path / "hrss.bundle.jsonl"
    made = CliRunner().invoke(audit_app, ["bundle", "--consumer", "hrss", "-o", str(out), "--json"], env=env)
    assert made.exit_code == 0, made.output
    assert json.loads(made.output)["events"] == 5
    pub = var / "keys" / "sm2" / f"{store.current()[0].kid}.pub.pem"
    checked = CliRunner().invoke(audit_app, ["verify-archive", str(out), "--pubkey", str(pub)])
    assert checked.exit_code == 0 and "bundle verified: 5 events (seq 1..5), consumer view" in checked.output
    out.write_bytes(out.read_bytes().replace(b'"status":200', b'"status":201', 1))
    bad = CliRunner().invoke(audit_app, ["verify-archive", str(out), "--pubkey", str(pub), "--json"])
    assert bad.exit_code == 1 and json.loads(bad.output)["ok"] is False


def test_the_json_twin_downloads_a_bundle_the_gateway_key_verifies(client: Any, demo_env: Any) -> None:
    from tests.audit.test_alerts import _officer_token

    token = _officer_token(client, demo_env)
    r = client.get(
        "/audit/api/bundle",
        params={"view": "search", "tier": "identity", "from": "2000-01-01"},  # the token issued above
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-disposition"].startswith('attachment; filename="audit-bundle-search-')
    header = json.loads(r.content.split(b"\n")[0])
    pem = next(k["pem"] for k in client.get("/keys/sm2").json()["keys"] if k["kid"] == header["kid"])
    report = verify_bundle(r.content, sm2.load_pem_public_key(pem.encode()))
    assert report.ok and report.events >= 1, report
    assert (
        client.get(
            "/audit/api/bundle", params={"view": "nope"}, headers={"Authorization": f"Bearer {token}"}
        ).status_code
        == 400
    )
