"""SM2-SM4-GCM field envelope: round trip, tampering of every member, wrong key."""

import base64
import json

import pytest

from keys import sm2
from keys.envelope import ALG, MEMBERS, open_envelope, seal_for
from keys.errors import DecryptionError

SECRET = "身份证号 110101199003074518".encode()
AAD = b"enterprise:91110000X/legalRepId"


@pytest.fixture(scope="module")
def key():
    return sm2.generate_private_key()


@pytest.fixture(scope="module")
def envelope(key):
    return seal_for(key.public_key, "kid-2026.1", SECRET, AAD)


def test_round_trip_through_json(key, envelope):
    assert set(envelope) == set(MEMBERS) and envelope["alg"] == ALG and envelope["kid"] == "kid-2026.1"
    assert len(base64.b64decode(envelope["nonce"])) == 12
    assert len(base64.b64decode(envelope["tag"])) == 16
    assert base64.b64decode(envelope["wrappedKey"])[:1] == b"\x30"  # DER SM2Cipher
    assert open_envelope(key, json.loads(json.dumps(envelope)), AAD) == SECRET
    assert open_envelope(key, envelope, AAD, expected_kid="kid-2026.1") == SECRET


def test_empty_plaintext_and_fresh_keys(key):
    a, b = seal_for(key.public_key, "k", b""), seal_for(key.public_key, "k", b"")
    assert a["wrappedKey"] != b["wrappedKey"] and a["nonce"] != b["nonce"]
    assert open_envelope(key, a) == b""


def flip(b64: str) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[len(raw) // 2] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize("member", ["wrappedKey", "nonce", "ciphertext", "tag"])
def test_each_binary_member_tampered(key, envelope, member):
    with pytest.raises(DecryptionError, match="envelope: "):
        open_envelope(key, {**envelope, member: flip(envelope[member])}, AAD)


def test_kid_swapped_fails_authentication(key, envelope):
    with pytest.raises(DecryptionError, match="authentication failed"):
        open_envelope(key, {**envelope, "kid": "kid-2026.2"}, AAD)


def test_alg_changed(key, envelope):
    with pytest.raises(DecryptionError, match="alg must be SM2-SM4-GCM"):
        open_envelope(key, {**envelope, "alg": "SM2-SM4-CBC"}, AAD)


def test_wrong_aad(key, envelope):
    with pytest.raises(DecryptionError, match="authentication failed"):
        open_envelope(key, envelope, b"enterprise:other/legalRepId")


def test_wrong_private_key(envelope):
    with pytest.raises(DecryptionError, match="wrapped key does not decrypt"):
        open_envelope(sm2.generate_private_key(), envelope, AAD)


@pytest.mark.parametrize("kid", ["", "a b", "x" * 65, "kid\x00", 7, None, "钥匙"])
def test_bad_kid_shape(key, envelope, kid):
    with pytest.raises(DecryptionError, match="kid must match"):
        open_envelope(key, {**envelope, "kid": kid}, AAD)
    if isinstance(kid, str):
        with pytest.raises(ValueError, match="key id"):
            seal_for(key.public_key, kid, SECRET)


def test_unexpected_kid(key, envelope):
    with pytest.raises(DecryptionError, match="not the expected key id"):
        open_envelope(key, envelope, AAD, expected_kid="kid-other")


@pytest.mark.parametrize("member", MEMBERS)
def test_missing_member(key, envelope, member):
    with pytest.raises(DecryptionError, match=f"missing member.*{member}"):
        open_envelope(key, {k: v for k, v in envelope.items() if k != member}, AAD)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"extra": "1"}, "unexpected member"),
        ({"nonce": "!!!!"}, "nonce is not valid base64"),
        ({"tag": 5}, "tag must be a base64 string"),
        ({"nonce": base64.b64encode(b"short").decode()}, "authentication failed"),
        ({"wrappedKey": base64.b64encode(b"\x30\x03\x02\x01\x01").decode()}, "wrapped key does not decrypt"),
    ],
)
def test_malformed(key, envelope, change, match):
    with pytest.raises(DecryptionError, match=match):
        open_envelope(key, {**envelope, **change}, AAD)


def test_not_a_mapping(key):
    with pytest.raises(DecryptionError, match="not an object"):
        open_envelope(key, ["alg"], AAD)
