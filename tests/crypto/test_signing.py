"""Signed responses (RFC 9421, SM2) on both tiers, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from keys import sm2
from keys.errors import SignatureError
from keys.keystore import key_id
from keys.rfc9421 import signed_response, verify_response
from tests.conftest import gql

Q = "{ population(first: 2) { edges { node { name birthDate } } } }"


def _gateway_keys(client: Any) -> dict[str, Any]:
    r = client.get("/keys/sm2")
    assert r.status_code == 200
    return {k["kid"]: sm2.load_pem_public_key(k["pem"]) for k in r.json()["keys"]}


def _verify(client: Any, r: Any, **kw: Any) -> Any:
    return verify_response(r.status_code, dict(r.headers), r.content, _gateway_keys(client).get, **kw)


def test_keys_endpoint_lists_public_keys_only(client: Any) -> None:
    r = client.get("/keys/sm2")
    assert r.status_code == 200 and "PRIVATE" not in r.text
    keys = r.json()["keys"]
    assert keys and keys[0]["status"] == "active"
    for k in keys:
        assert set(k) == {"kid", "alg", "use", "pem", "not_before", "not_after", "status"}
        assert k["alg"] == "SM2" and k["use"] == "sig"
        assert key_id(sm2.load_pem_public_key(k["pem"])) == k["kid"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", k["not_after"])


def test_share_response_is_signed_and_verifies(client: Any, tokens: dict[str, str]) -> None:
    r = gql(client, "share", Q, token=tokens["hrss"])
    assert r.status_code == 200
    assert r.headers["content-digest"].startswith("sm3=:")
    result = _verify(client, r, max_age=300)
    assert result.components == ("@status", "content-digest", "content-type", "x-request-id")
    assert result.keyid in _gateway_keys(client)


def test_tampering_is_detected(client: Any, tokens: dict[str, str]) -> None:
    r = gql(client, "share", Q, token=tokens["hrss"])
    keys = _gateway_keys(client).get
    status, headers, body = r.status_code, dict(r.headers), r.content
    verify_response(status, headers, body, keys)

    flipped = bytearray(body)
    flipped[len(flipped) // 2] ^= 0x01
    with pytest.raises(SignatureError, match="Content-Digest does not match"):
        verify_response(status, headers, bytes(flipped), keys)
    with pytest.raises(SignatureError, match="SM2 signature does not match"):
        verify_response(400, headers, body, keys)
    for name, value in (("x-request-id", "someone-elses-request"), ("content-type", "text/plain")):
        with pytest.raises(SignatureError, match="SM2 signature does not match"):
            verify_response(status, {**headers, name: value}, body, keys)
    created = re.search(r"created=(\d+)", headers["signature-input"])
    assert created
    moved = headers["signature-input"].replace(created.group(0), f"created={int(created.group(1)) + 1}")
    with pytest.raises(SignatureError, match="SM2 signature does not match"):
        verify_response(status, {**headers, "signature-input": moved}, body, keys)
    with pytest.raises(SignatureError, match="unknown keyid"):
        verify_response(status, headers, body, lambda kid: None)


def test_error_responses_are_signed_too(client: Any, tokens: dict[str, str]) -> None:
    unauthenticated = client.post("/share/graphql", json={"query": Q})
    assert unauthenticated.status_code == 401
    _verify(client, unauthenticated)
    bad = client.post(
        "/share/graphql",
        content=b"{not json",
        headers={"Authorization": f"Bearer {tokens['hrss']}", "Content-Type": "application/json"},
    )
    assert bad.status_code == 400
    _verify(client, bad)


def test_open_tier_signs_on_request(client: Any) -> None:
    q = "{ enterpriseRegistration(first: 1) { edges { node { name } } } }"
    plain = gql(client, "open", q)
    assert plain.status_code == 200 and "signature" not in plain.headers
    asked = gql(client, "open", q, headers={"Accept-Signature": 'sig1=("@status" "content-digest")'})
    assert asked.status_code == 200
    _verify(client, asked)


def test_openssl_command_line_verifies_a_response(
    client: Any, tokens: dict[str, str], tmp_path: Path
) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl binary")
    r = gql(client, "share", Q, token=tokens["hrss"])
    signed = signed_response(r.status_code, dict(r.headers))
    pem = next(k["pem"] for k in client.get("/keys/sm2").json()["keys"] if k["kid"] == signed.keyid)
    (tmp_path / "pub.pem").write_text(pem)
    (tmp_path / "base.txt").write_bytes(signed.base)
    (tmp_path / "sig.der").write_bytes(signed.signature)
    (tmp_path / "body.bin").write_bytes(r.content)
    cmd = [
        openssl, "pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pkeyopt", "distid:1234567812345678",
        "-pubin", "-inkey", "pub.pem", "-in", "base.txt", "-sigfile", "sig.der",
    ]  # fmt: skip
    ok = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and "Signature Verified Successfully" in ok.stdout, ok.stdout + ok.stderr
    (tmp_path / "base.txt").write_bytes(signed.base.replace(b'"@status": 200', b'"@status": 201'))
    bad = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert bad.returncode != 0
    digest = subprocess.run(
        f"{openssl} dgst -sm3 -binary body.bin | base64", shell=True, cwd=tmp_path,
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert r.headers["content-digest"] == f"sm3=:{digest.stdout.strip()}:"


def _saved(r: Any) -> bytes:
    """The response as `curl -si` would save it."""
    head = f"HTTP/1.1 {r.status_code} {r.reason_phrase}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in r.headers.multi_items()
    )
    return head.encode("latin-1") + b"\r\n" + r.content


def test_verify_response_cli(client: Any, tokens: dict[str, str], tmp_path: Path) -> None:
    from gateway.cli import app

    r = gql(client, "share", Q, token=tokens["hrss"])
    for k in client.get("/keys/sm2").json()["keys"]:
        (tmp_path / f"{k['kid']}.pub.pem").write_text(k["pem"])
    pubs = [a for p in tmp_path.glob("*.pub.pem") for a in ("--pubkey", str(p))]
    (tmp_path / "ok.txt").write_bytes(_saved(r))
    out = CliRunner().invoke(
        app, ["verify-response", str(tmp_path / "ok.txt"), *pubs, "--openssl-dir", str(tmp_path)]
    )
    assert out.exit_code == 0, out.output
    assert out.output.startswith("OK keyid=")
    base = (tmp_path / "base.txt").read_bytes().decode()
    assert base.startswith('"@status": 200\n"content-digest": sm3=:')
    assert (
        '\n"@signature-params": ("@status" "content-digest" "content-type" "x-request-id");created=' in base
    )
    tampered = _saved(r).replace(b'"name"', b'"NAME"', 1)
    (tmp_path / "bad.txt").write_bytes(tampered)
    out = CliRunner().invoke(app, ["verify-response", str(tmp_path / "bad.txt"), *pubs])
    assert out.exit_code == 1 and "FAILED: Content-Digest does not match the body" in out.output


def test_rotation_keeps_earlier_responses_verifiable(client: Any, tokens: dict[str, str]) -> None:
    store = client.app.state.gateway.signer.store
    before = gql(client, "share", Q, token=tokens["hrss"])
    old_kid = signed_response(before.status_code, dict(before.headers)).keyid
    new = store.rotate(overlap_days=1)
    after = gql(client, "share", Q, token=tokens["hrss"])
    assert signed_response(after.status_code, dict(after.headers)).keyid == new.kid != old_kid
    published = client.get("/keys/sm2").json()["keys"]
    assert published[0]["kid"] == new.kid
    assert {k["kid"]: k["status"] for k in published}[old_kid] == "retired"
    assert _verify(client, before).keyid == old_kid
    assert _verify(client, after).keyid == new.kid
