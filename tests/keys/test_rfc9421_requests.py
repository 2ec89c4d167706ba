"""HTTP Message Signatures (RFC 9421) on requests: derived components, base, sign/verify."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from keys import sm2
from keys.errors import SignatureError
from keys.rfc9421 import (
    derived_request_components,
    request_signature_base,
    sign_request,
    signed_request,
    verify_request,
)

BODY = b'{"query":"{ population(first: 2) { edges { node { name } } } }"}'
URL = "https://gw.example/share/graphql"
HEADERS = {"Content-Type": "application/json"}
NOW = 1_700_000_000


@pytest.fixture(scope="module")
def key() -> sm2.SM2PrivateKey:
    return sm2.generate_private_key()


def lookup(key: sm2.SM2PrivateKey):  # type: ignore[no-untyped-def]
    return lambda kid: key.public_key if kid == "kid-1" else None


def test_derived_components_rfc9421_section_2_2() -> None:
    # the examples of RFC 9421 sections 2.2.1 - 2.2.7
    d = derived_request_components("POST", "https://www.example.com/path?param=value")
    assert d["@method"] == "POST"
    assert d["@target-uri"] == "https://www.example.com/path?param=value"
    assert d["@authority"] == "www.example.com"
    assert d["@scheme"] == "https"
    assert d["@request-target"] == "/path?param=value"
    assert d["@path"] == "/path"
    assert d["@query"] == "?param=value"
    e = derived_request_components("GET", "HTTP://WWW.Example.com:80")
    assert (e["@authority"], e["@path"], e["@query"], e["@target-uri"]) == (
        "www.example.com",
        "/",
        "?",
        "http://www.example.com/",
    )
    assert derived_request_components("GET", "http://127.0.0.1:8000/x")["@authority"] == "127.0.0.1:8000"
    with pytest.raises(SignatureError, match="absolute"):
        derived_request_components("GET", "/share/graphql")


def test_request_base_layout() -> None:
    base = request_signature_base(
        "POST",
        URL,
        {**HEADERS, "Content-Digest": "sm3=:AAAA:"},
        ["@method", "@authority", "@path", "content-digest", "content-type"],
        {"created": NOW, "keyid": "kid-1", "nonce": "n-1"},
    )
    assert base.decode() == (
        '"@method": POST\n'
        '"@authority": gw.example\n'
        '"@path": /share/graphql\n'
        '"content-digest": sm3=:AAAA:\n'
        '"content-type": application/json\n'
        '"@signature-params": ("@method" "@authority" "@path" "content-digest" "content-type")'
        ';created=1700000000;keyid="kid-1";nonce="n-1"'
    )
    with pytest.raises(SignatureError, match="not supported on requests"):
        request_signature_base("POST", URL, {}, ["@status"], {"created": NOW, "keyid": "k"})
    with pytest.raises(SignatureError, match="missing from the request"):
        request_signature_base("POST", URL, {}, ["content-type"], {"created": NOW, "keyid": "k"})


def test_sign_and_verify_round_trip(key: sm2.SM2PrivateKey) -> None:
    added = sign_request(key, "kid-1", "POST", URL, HEADERS, BODY, created=NOW, nonce="abc")
    assert set(added) == {"Content-Digest", "Signature-Input", "Signature"}
    assert added["Signature-Input"] == (
        'sig1=("@method" "@target-uri" "content-digest");created=1700000000;keyid="kid-1";nonce="abc"'
    )
    headers = {**HEADERS, **added}
    ok = verify_request("POST", URL, headers, BODY, lookup(key), now=NOW + 5, max_age=300, require_nonce=True)
    assert (ok.keyid, ok.created, ok.nonce) == ("kid-1", NOW, "abc")
    # the PEM works as the key too, and nonces are fresh by default
    a = sign_request(key.to_pem(), "kid-1", "POST", URL, HEADERS, BODY)
    b = sign_request(key.to_pem(), "kid-1", "POST", URL, HEADERS, BODY)
    assert a["Signature-Input"] != b["Signature-Input"]
    assert signed_request("POST", URL, {**HEADERS, **a}).params["nonce"]


def test_verify_failures(key: sm2.SM2PrivateKey) -> None:
    added = sign_request(key, "kid-1", "POST", URL, HEADERS, BODY, created=NOW, nonce="abc")
    headers = {**HEADERS, **added}
    keys = lookup(key)

    def check(*, match: str, method: str = "POST", url: str = URL, hdrs=headers, body=BODY, **kw) -> None:  # type: ignore[no-untyped-def]
        with pytest.raises(SignatureError, match=match):
            verify_request(method, url, hdrs, body, keys, now=kw.pop("now", NOW), **kw)

    check(match="SM2 signature does not match", method="PUT")
    check(match="SM2 signature does not match", url="https://gw.example/open/graphql")
    check(match="SM2 signature does not match", url="https://gw.example/share/graphql?x=1")
    check(match="Content-Digest does not match the body", body=BODY + b" ")
    check(match="older than max_age=300s", now=NOW + 301, max_age=300)
    check(match="in the future", now=NOW - 301, max_skew=300)
    check(
        match="unknown keyid",
        hdrs={**headers, "Signature-Input": added["Signature-Input"].replace("kid-1", "k2")},
    )
    bare = sign_request(key, "kid-1", "POST", URL, HEADERS, BODY, components=("@method", "content-digest"))
    check(match="@target-uri", hdrs={**HEADERS, **bare})
    alg = added["Signature-Input"] + ';alg="ecdsa-p256-sha256"'
    check(match="alg parameter is not accepted", hdrs={**headers, "Signature-Input": alg})
    no_nonce = sign_request(key, "kid-1", "POST", URL, HEADERS, BODY, created=NOW)
    no_nonce["Signature-Input"] = no_nonce["Signature-Input"].split(";nonce=")[0]
    check(match="nonce parameter is missing", hdrs={**HEADERS, **no_nonce}, require_nonce=True)
    check(
        match="request has no Signature header", hdrs={**HEADERS, "Signature-Input": added["Signature-Input"]}
    )


def test_nonce_store_memory_and_redis() -> None:
    from gateway.crypto.requests import NonceStore

    async def go(store: NonceStore) -> None:
        key = uuid.uuid4().hex
        assert await store.first_use(key, 5)
        assert not await store.first_use(key, 5)
        assert await store.first_use(key + "-other", 5)

    asyncio.run(go(NonceStore()))
    try:
        import redis

        redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_connect_timeout=1).ping()
    except Exception:
        pytest.skip("no Redis at 127.0.0.1:6379")

    async def shared() -> None:
        a = NonceStore("redis://127.0.0.1:6379/0", f"test-{uuid.uuid4().hex[:8]}")
        b = NonceStore("redis://127.0.0.1:6379/0", a.namespace)  # another worker
        key = uuid.uuid4().hex
        assert await a.first_use(key, 5)
        assert not await b.first_use(key, 5)
        assert a._redis is not None and 0 < await a._redis.ttl(f"{a.namespace}:sig-nonce:{key}") <= 5
        await a._redis.aclose()
        assert b._redis is not None
        await b._redis.aclose()

    asyncio.run(shared())
