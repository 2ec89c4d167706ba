"""File key store: layout, permissions, current/public, rotation overlap."""

import json
import logging
import stat
from datetime import UTC, datetime, timedelta

import pytest

from keys import sm2
from keys.errors import InvalidKeyError, UnknownKeyError
from keys.keystore import KeyStore, key_id
from keys.rfc9421 import sign_response, verify_response

T0 = datetime(2026, 11, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(tmp_path, clock):
    return KeyStore(tmp_path / "keys", clock=clock)


def test_generate_layout_and_permissions(store):
    info = store.generate(30)
    _, private = store.current()
    assert info.kid == key_id(private.public_key) == private.public_key.fingerprint()[:16]
    assert (info.not_before, info.not_after, info.status) == (T0, T0 + timedelta(days=30), "active")
    pem = store.directory / f"{info.kid}.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    assert sm2.load_pem_private_key(pem.read_bytes()).public_key == private.public_key
    index = json.loads((store.directory / "index.json").read_text())
    assert index == {
        "version": 1,
        "keys": [
            {
                "kid": info.kid,
                "not_before": "2026-11-01T00:00:00Z",
                "not_after": "2026-12-01T00:00:00Z",
                "status": "active",
            }
        ],
    }
    assert not [p for p in store.directory.iterdir() if p.name.endswith(".tmp")]
    assert store.list() == [info]


def test_no_key_yet(store):
    assert store.list() == []
    with pytest.raises(UnknownKeyError, match="no active signing key"):
        store.current()
    assert store.public("0" * 16) is None


def test_expiry(store, clock):
    info = store.generate(1)
    clock.now = T0 + timedelta(days=1)
    assert store.public(info.kid) is None
    with pytest.raises(UnknownKeyError):
        store.current()


def test_rotation_overlap(store, clock):
    old = store.generate(90)
    _, old_key = store.current()
    body, headers = b'{"data":{}}', {"X-Request-Id": "r1"}
    created = int(clock.now.timestamp())
    old_sig = {**headers, **sign_response(old_key, old.kid, 200, headers, body, created=created)}

    clock.now = T0 + timedelta(days=10)
    new = store.rotate(overlap_days=2)
    assert new.kid != old.kid
    by_kid = {k.kid: k for k in store.list()}
    assert by_kid[old.kid].status == "retired"
    assert by_kid[old.kid].not_after == clock.now + timedelta(days=2)
    assert by_kid[new.kid].status == "active"

    # a signature by the old key still verifies during the overlap
    now = int(clock.now.timestamp())
    assert verify_response(200, old_sig, body, store.public, now=now).keyid == old.kid
    # new signatures use the new kid
    info, new_key = store.current()
    assert info.kid == new.kid
    new_sig = {**headers, **sign_response(new_key, info.kid, 200, headers, body, created=now)}
    assert f'keyid="{new.kid}"' in new_sig["Signature-Input"]
    assert verify_response(200, new_sig, body, store.public, now=now).keyid == new.kid

    # after the overlap the old key is gone for verification
    clock.now += timedelta(days=2)
    assert store.public(old.kid) is None
    assert store.public(new.kid) == new_key.public_key


def test_rotation_never_extends_an_old_key(store, clock):
    old = store.generate(1)
    store.rotate(overlap_days=30)
    assert {k.kid: k for k in store.list()}[old.kid].not_after == old.not_after


def test_store_reopens_from_disk(store, clock):
    info = store.generate(30)
    again = KeyStore(store.directory, clock=clock)
    assert again.current()[0] == info


def test_swapped_key_file_is_detected(store):
    a = store.generate(30)
    other = sm2.generate_private_key()
    (store.directory / f"{a.kid}.pem").write_text(other.to_pem())
    (store.directory / f"{a.kid}.pub.pem").write_text(other.public_key.to_pem())
    with pytest.raises(InvalidKeyError, match="different key"):
        store.current()
    with pytest.raises(InvalidKeyError):
        store.public(a.kid)


def test_logs_name_kids_only(store, caplog):
    with caplog.at_level(logging.DEBUG, logger="keys.keystore"):
        store.generate(30)
        store.rotate(1)
    text = caplog.text
    assert "kid=" in text and "PRIVATE" not in text and "BEGIN" not in text
    _, key = store.current()
    assert format(key.private_value, "x") not in text


def test_bad_validity(store):
    with pytest.raises(ValueError, match="validity_days"):
        store.generate(0)
