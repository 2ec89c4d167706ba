"""Signed requests on the share tier (RFC 9421, SM2 department keys), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from keys import rfc8941, sm2
from keys.keystore import key_id
from keys.rfc9421 import request_signature_base, sign_request, signed_request, verify_response
from tests.conftest import DemoEnv
from tests.crypto.conftest import on_db

URL = "http://testserver/share/graphql"
Q = "{ population(first: 2) { edges { node { name birthDate } } } }"


@pytest.fixture
def hrss_signs(demo_env: DemoEnv, hrss_key: dict[str, str]) -> Iterator[dict[str, Any]]:
    """hrss marked as having to sign; unmarked again afterwards (the session's other tests
    send unsigned hrss requests)."""
    from gateway.crypto.requests import set_signed_requests_required

    on_db(demo_env, lambda e: set_signed_requests_required(e, "hrss", True))
    key = sm2.load_pem_private_key(Path(hrss_key["private_key_file"]).read_bytes())
    try:
        yield {"key": key, "kid": hrss_key["kid"]}
    finally:
        on_db(demo_env, lambda e: set_signed_requests_required(e, "hrss", False))


def _body(query: str = Q) -> bytes:
    return orjson.dumps({"query": query})


def _headers(token: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Accept": "application/graphql-response+json",
    }


def _post(client: Any, token: str, body: bytes, extra: dict[str, str] | None = None) -> Any:
    return client.post("/share/graphql", content=body, headers={**_headers(token), **(extra or {})})


def _signed(client: Any, token: str, key: Any, kid: str, body: bytes | None = None, **kw: Any) -> Any:
    body = _body() if body is None else body
    headers = _headers(token)
    return _post(client, token, body, sign_request(key, kid, "POST", URL, headers, body, **kw))


def _event(demo_env: DemoEnv, request_id: str) -> dict[str, Any]:
    from gateway.audit.models import AuditEvent

    table = AuditEvent.__table__  # type: ignore[attr-defined]

    async def job(engine: Any) -> dict[str, Any]:
        for _ in range(50):
            async with engine.connect() as conn:
                row = (await conn.execute(select(table).where(table.c.request_id == request_id))).first()
            if row is not None:
                return dict(row._mapping)
            await asyncio.sleep(0.05)
        raise AssertionError(f"no access event for {request_id}")

    return on_db(demo_env, job)


def _assert_refused(demo_env: DemoEnv, r: Any, code: str, reason: str) -> None:
    assert r.status_code == 401, r.text
    body = r.json()
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == code
    assert reason in body["errors"][0]["message"]
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith('Signature realm="shuqiao", error=')
    assert r.headers["accept-signature"].startswith('sig1=("@method" "@target-uri" "content-digest")')
    event = _event(demo_env, r.headers["x-request-id"])
    assert event["status"] == 401 and event["tier"] == "share" and event["consumer"] == "hrss"
    assert json.loads(event["error_codes"]) == [code]
    assert event["operation_name"] is None and event["operation_type"] is None
    detail = json.loads(event["detail"])
    assert not detail.get("fields") and not detail.get("reads")  # nothing executed


def test_valid_signed_request_is_accepted(
    client: Any, tokens: dict[str, str], hrss_signs: dict[str, Any], demo_env: DemoEnv
) -> None:
    r = _signed(client, tokens["hrss"], hrss_signs["key"], hrss_signs["kid"])
    assert r.status_code == 200, r.text
    assert r.json()["data"]["population"]["edges"][0]["node"]["name"]
    event = _event(demo_env, r.headers["x-request-id"])
    assert event["status"] == 200 and json.loads(event["detail"])["reads"]
    # the response is signed by the gateway as always
    keys = {k["kid"]: sm2.load_pem_public_key(k["pem"]) for k in client.get("/keys/sm2").json()["keys"]}
    verify_response(r.status_code, dict(r.headers), r.content, keys.get)


def test_authority_and_path_may_replace_target_uri(
    client: Any, tokens: dict[str, str], hrss_signs: dict[str, Any]
) -> None:
    components = ("@method", "@authority", "@path", "@query", "content-digest", "content-type")
    r = _signed(client, tokens["hrss"], hrss_signs["key"], hrss_signs["kid"], components=components)
    assert r.status_code == 200, r.text


def test_unsigned_request_from_a_marked_client_is_refused(
    client: Any, tokens: dict[str, str], hrss_signs: dict[str, Any], demo_env: DemoEnv
) -> None:
    r = _post(client, tokens["hrss"], _body())
    _assert_refused(demo_env, r, "SIGNATURE_REQUIRED", "must sign its requests")
    assert 'error="signature_required"' in r.headers["www-authenticate"]
    # other departments are not marked: unsigned works
    assert _post(client, tokens["samr"], _body()).status_code == 200


def test_failure_modes_are_refused_and_logged(
    client: Any, tokens: dict[str, str], hrss_signs: dict[str, Any], demo_env: DemoEnv
) -> None:
    from gateway.crypto.service import register_department_key, set_department_key_status

    token, key, kid = tokens["hrss"], hrss_signs["key"], hrss_signs["kid"]
    now = int(time.time())

    stranger = sm2.generate_private_key()
    r = _signed(client, token, stranger, key_id(stranger.public_key))
    _assert_refused(demo_env, r, "INVALID_SIGNATURE", "unknown keyid")

    samr = sm2.generate_private_key()
    samr_kid = on_db(demo_env, lambda e: register_department_key(e, "samr", samr.public_key.to_pem())).kid
    try:
        r = _signed(client, token, samr, samr_kid)
        _assert_refused(
            demo_env, r, "INVALID_SIGNATURE", f"keyid '{samr_kid}' is not a key of department 'hrss'"
        )
    finally:
        on_db(demo_env, lambda e: set_department_key_status(e, samr_kid, "revoked"))

    r = _signed(client, token, stranger, kid)  # hrss's kid, someone else's key
    _assert_refused(demo_env, r, "INVALID_SIGNATURE", "SM2 signature does not match")

    body = _body()
    added = sign_request(key, kid, "POST", URL, _headers(token), body)
    sig = rfc8941.parse_dictionary(added["Signature"])["sig1"].value
    assert isinstance(sig, bytes)
    forged = sig[:-1] + bytes([sig[-1] ^ 1])
    r = _post(client, token, body, {**added, "Signature": f"sig1=:{base64.b64encode(forged).decode()}:"})
    _assert_refused(demo_env, r, "INVALID_SIGNATURE", "SM2 signature does not match")

    added = sign_request(key, kid, "POST", URL, _headers(token), body)
    changed = _body(Q.replace("first: 2", "first: 3"))
    r = _post(client, token, changed, added)
    _assert_refused(demo_env, r, "INVALID_SIGNATURE", "Content-Digest does not match the body")

    added = sign_request(key, kid, "POST", "http://elsewhere.example/share/graphql", _headers(token), body)
    r = _post(client, token, body, added)
    _assert_refused(demo_env, r, "INVALID_SIGNATURE", "SM2 signature does not match")

    r = _signed(client, token, key, kid, created=now - 400)
    _assert_refused(demo_env, r, "INVALID_SIGNATURE", "older than max_age=300s")
    r = _signed(client, token, key, kid, created=now + 400)
    _assert_refused(demo_env, r, "INVALID_SIGNATURE", "in the future")

    r = _signed(client, token, key, kid, components=("@method", "@target-uri"))
    _assert_refused(demo_env, r, "INVALID_SIGNATURE", "does not cover required component(s): content-digest")

    # no nonce: signed by hand, since the helper always adds one
    params: dict[str, Any] = {"created": now, "keyid": kid}
    hdrs = {**_headers(token), "Content-Digest": added["Content-Digest"]}
    components = ["@method", "@target-uri", "content-digest"]
    base = request_signature_base("POST", URL, hdrs, components, params)
    inner = rfc8941.serialize_inner_list([rfc8941.Item(c) for c in components], params)
    r = _post(
        client,
        token,
        body,
        {
            "Content-Digest": added["Content-Digest"],
            "Signature-Input": f"sig1={inner}",
            "Signature": f"sig1=:{base64.b64encode(sm2.sign(key, base)).decode()}:",
        },
    )
    _assert_refused(demo_env, r, "INVALID_SIGNATURE", "nonce parameter is missing")

    r = _post(client, token, body, {"Signature-Input": "sig1=(", "Signature": "sig1=:AA==:"})
    _assert_refused(demo_env, r, "INVALID_SIGNATURE", "does not parse")


def test_replay_within_the_window_is_refused(
    client: Any, tokens: dict[str, str], hrss_signs: dict[str, Any], demo_env: DemoEnv
) -> None:
    body = _body()
    added = sign_request(hrss_signs["key"], hrss_signs["kid"], "POST", URL, _headers(tokens["hrss"]), body)
    first = _post(client, tokens["hrss"], body, added)
    assert first.status_code == 200, first.text
    again = _post(client, tokens["hrss"], body, added)
    _assert_refused(demo_env, again, "INVALID_SIGNATURE", "nonce already used")


def test_unmarked_client_signature_is_verified_too(
    client: Any, tokens: dict[str, str], hrss_key: dict[str, str], demo_env: DemoEnv
) -> None:
    key = sm2.load_pem_private_key(Path(hrss_key["private_key_file"]).read_bytes())
    assert _post(client, tokens["hrss"], _body()).status_code == 200  # unsigned is fine
    assert _signed(client, tokens["hrss"], key, hrss_key["kid"]).status_code == 200
    body = _body()
    added = sign_request(key, hrss_key["kid"], "POST", URL, _headers(tokens["hrss"]), body)
    r = _post(client, tokens["hrss"], _body(Q.replace("birthDate", "")), added)
    _assert_refused(demo_env, r, "INVALID_SIGNATURE", "Content-Digest does not match the body")


def test_cli_marks_and_signs(
    client: Any,
    tokens: dict[str, str],
    hrss_key: dict[str, str],
    demo_env: DemoEnv,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gateway.cli import app

    monkeypatch.setenv("SHUQIAO_DATABASE_URL", demo_env.settings.database_url)
    monkeypatch.setenv("SHUQIAO_VAR_DIR", str(demo_env.settings.var_dir))
    runner = CliRunner()
    try:
        out = runner.invoke(app, ["keys", "require-signed-requests", "--department", "hrss"])
        assert out.exit_code == 0 and "hrss: signed requests required" in out.output, out.output
        assert _post(client, tokens["hrss"], _body()).status_code == 401

        (tmp_path / "body.json").write_bytes(_body())
        out = runner.invoke(
            app,
            [
                "sign-request",
                URL,
                "--key",
                hrss_key["private_key_file"],
                "--body",
                str(tmp_path / "body.json"),
            ],
        )
        assert out.exit_code == 0, out.output
        lines = dict(line.split(": ", 1) for line in out.output.splitlines())
        assert set(lines) == {"Content-Digest", "Signature-Input", "Signature"}
        assert f'keyid="{hrss_key["kid"]}"' in lines["Signature-Input"]
        assert _post(client, tokens["hrss"], _body(), lines).status_code == 200

        bad = runner.invoke(app, ["keys", "require-signed-requests", "--department", "nope"])
        assert bad.exit_code == 2 and "unknown department" in bad.output
    finally:
        out = runner.invoke(
            app, ["keys", "require-signed-requests", "--department", "hrss", "--off", "--json"]
        )
    assert out.exit_code == 0 and json.loads(out.output) == {
        "department": "hrss",
        "signed_requests": "optional",
    }
    assert _post(client, tokens["hrss"], _body()).status_code == 200


def test_openssl_verifies_a_request_signature_base(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl binary")
    key = sm2.generate_private_key()
    kid = key_id(key.public_key)
    body = _body()
    headers = {"Content-Type": "application/json", "Authorization": "Bearer x"}
    added = sign_request(key.to_pem(), kid, "POST", "https://gw.example:443/share/graphql", headers, body)
    signed = signed_request("POST", "https://gw.example/share/graphql", {**headers, **added})
    assert signed.base.decode().startswith(
        '"@method": POST\n"@target-uri": https://gw.example/share/graphql\n"content-digest": sm3=:'
    )
    (tmp_path / "pub.pem").write_text(key.public_key.to_pem())
    (tmp_path / "base.txt").write_bytes(signed.base)
    (tmp_path / "sig.der").write_bytes(signed.signature)
    cmd = [
        openssl, "pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pkeyopt", "distid:1234567812345678",
        "-pubin", "-inkey", "pub.pem", "-in", "base.txt", "-sigfile", "sig.der",
    ]  # fmt: skip
    ok = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and "Signature Verified Successfully" in ok.stdout, ok.stdout + ok.stderr
    (tmp_path / "base.txt").write_bytes(signed.base.replace(b'"@method": POST', b'"@method": PUT'))
    assert subprocess.run(cmd, cwd=tmp_path, capture_output=True, check=False).returncode != 0
