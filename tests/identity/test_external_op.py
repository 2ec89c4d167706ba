"""A real, independent OpenID provider (panva's oidc-provider, Node) started on loopback:
its access tokens are accepted on the share tier for a mapped department, and refused
for the wrong issuer, audience or signature, and for an unmapped department."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from gateway.identity.clients import add_issuer
from tests.identity.conftest import free_port, on_db, serve

OP_DIR = Path(__file__).parent / "oidc_provider"
AUDIENCE = "https://shuqiao.test/share"
Q = {"query": "{ enterpriseRegistration(first: 1) { totalCount } }"}


def _start_op() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    key = ECKey.generate_key("P-256", auto_kid=True)
    env = {**os.environ, "OP_AUDIENCE": AUDIENCE, "OP_JWKS": json.dumps(KeySet([key]).as_dict(private=True))}
    proc = subprocess.Popen(
        ["node", "server.js", str(port)],
        cwd=OP_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if httpx.get(f"{base}/.well-known/openid-configuration", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    pytest.fail("oidc-provider did not start: " + proc.communicate()[0].decode(errors="replace")[-2000:])


@pytest.fixture(scope="module")
def ops() -> Iterator[tuple[str, str]]:
    if shutil.which("node") is None:
        pytest.fail("Node.js is required for the external OpenID provider test")
    if not (OP_DIR / "node_modules" / "oidc-provider").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=OP_DIR, check=True, timeout=600)
    trusted, base = _start_op()
    other, other_base = _start_op()  # a second, untrusted provider
    try:
        yield base, other_base
    finally:
        for p in (trusted, other):
            p.terminate()
            p.wait(timeout=10)


def _token(op: str, client: str, **extra: str) -> str:
    r = httpx.post(
        f"{op}/token",
        data={"grant_type": "client_credentials", "scope": "share:read", **extra},
        auth=(client, f"{client}-secret"),
    )
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def _share(base: str, token: str) -> httpx.Response:
    return httpx.post(f"{base}/share/graphql", json=Q, headers={"Authorization": f"Bearer {token}"})


def test_external_op_tokens(demo_env: Any, ops: tuple[str, str]) -> None:
    op, other_op = ops
    on_db(
        demo_env,
        lambda e: add_issuer(
            e,
            op,
            f"{op}/.well-known/openid-configuration",
            AUDIENCE,
            department_claim="org",
            department_map={"hrss-org": "hrss"},
            algorithms=["ES256"],
        ),
    )
    token = _token(op, "hrss-system")
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["typ"] == "at+jwt" and header["alg"] == "ES256"

    with serve(demo_env) as base:
        ok = _share(base, token)
        assert ok.status_code == 200, ok.text
        assert ok.json()["data"]["enterpriseRegistration"]["totalCount"] > 0

        def refused(tok: str) -> None:
            r = _share(base, tok)
            assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"], r.text

        refused(_token(other_op, "hrss-system"))  # wrong issuer: not trusted
        refused(_token(op, "hrss-system", resource="https://elsewhere.test/api"))  # wrong audience
        refused(_token(op, "stranger-system"))  # department claim not mapped
        # a mapped department, but roles that allow no scope of ours: a valid token that may do nothing
        kiosk = _share(base, _token(op, "hrss-kiosk"))
        assert kiosk.status_code == 403 and 'error="insufficient_scope"' in kiosk.headers["www-authenticate"]
        head, body, sig = token.split(".")
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        claims["org"] = "hrss-org"
        claims["sub"] = "someone-else"
        tampered = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        refused(f"{head}.{tampered}.{sig}")  # payload changed: signature no longer matches
        forger = ECKey.generate_key("P-256")
        refused(jwt.encode(header, claims, forger, algorithms=["ES256"]))  # right kid, wrong key
        refused(jwt.encode({**header, "kid": "made-up"}, claims, forger, algorithms=["ES256"]))  # unknown kid
        assert _share(base, token).status_code == 200  # and the genuine one still works
