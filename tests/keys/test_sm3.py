"""SM3 (GB/T 32905-2016) and HMAC-SM3."""

import shutil
import subprocess

import pytest

from keys.sm3 import PrefixedHmacSm3, hmac_sm3, sm3, verify_hmac_sm3


def test_sm3_abc():
    # GB/T 32905-2016 appendix A.1
    assert sm3(b"abc").hex() == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"


def test_sm3_64_byte_message():
    # GB/T 32905-2016 appendix A.2: "abcd" * 16 (two blocks after padding)
    assert sm3(b"abcd" * 16).hex() == "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"


def _hmac_by_definition(key: bytes, data: bytes) -> bytes:
    # RFC 2104 spelled out over our sm3(), independent of the HMAC object used by keys.sm3
    if len(key) > 64:
        key = sm3(key)
    key = key.ljust(64, b"\0")
    inner = sm3(bytes(k ^ 0x36 for k in key) + data)
    return sm3(bytes(k ^ 0x5C for k in key) + inner)


@pytest.mark.parametrize("key", [b"", b"k", b"k" * 64, b"k" * 100])
def test_hmac_sm3_matches_rfc2104(key):
    data = b"the quick brown fox"
    assert hmac_sm3(key, data) == _hmac_by_definition(key, data)


def test_verify_hmac_sm3():
    mac = hmac_sm3(b"key", b"data")
    assert verify_hmac_sm3(b"key", b"data", mac)
    assert not verify_hmac_sm3(b"key", b"datA", mac)
    assert not verify_hmac_sm3(b"kez", b"data", mac)
    assert not verify_hmac_sm3(b"key", b"data", mac[:-1])


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_hmac_sm3_matches_openssl(tmp_path):
    data = tmp_path / "data"
    data.write_bytes(b"shuqiao")
    out = subprocess.run(
        ["openssl", "mac", "-digest", "SM3", "-macopt", "hexkey:00112233", "-in", str(data), "HMAC"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert out.lower() == hmac_sm3(bytes.fromhex("00112233"), b"shuqiao").hex()


@pytest.mark.parametrize("size", [2047, 2048, 4094, 4095, 10_000])
def test_long_messages_fed_in_slices_hash_as_one(size: int) -> None:
    """sm3 feeds long inputs in slices (so OpenSSL keeps the GIL); the digest is gmssl's, an
    independent pure-Python SM3, over the whole message, and the HMAC is RFC 2104's."""
    from gmssl import func
    from gmssl import sm3 as gm

    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert sm3(data).hex() == gm.sm3_hash(func.bytes_to_list(data))
    assert hmac_sm3(b"k", data) == _hmac_by_definition(b"k", data)


@pytest.mark.parametrize("key", [b"", b"k" * 32, b"k" * 64, b"k" * 65, bytes(range(200))])
@pytest.mark.parametrize("suffix", [b"", b"91610100MA6N1MYB0B", "十".encode() * 700, b"x" * 3000])
def test_prefixed_hmac_is_the_hmac_of_prefix_and_suffix(key: bytes, suffix: bytes) -> None:
    """The per-column state the watermark reuses (hashed pads and prefix, copied per row) gives
    the same bytes as a fresh HMAC-SM3, for short and long keys and suffixes, again and again."""
    prefix = b"ak-parity-hmacsm3-v1\x00hrss\x00enterprise_registration\x00registered_capital\x00"
    keyed = PrefixedHmacSm3(key, prefix)
    assert keyed.digest(suffix) == hmac_sm3(key, prefix + suffix) == keyed.digest(suffix)
    assert key.hex() not in repr(keyed) or not key


@pytest.mark.parametrize("data", [b"", b"abc", b"abcd" * 16, bytes(range(256)) * 40])
def test_hashlib_and_cryptography_paths_agree(data: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    import keys.sm3 as module

    fast, fast_hex = module.sm3(data), module.sm3_hex(data)
    monkeypatch.setattr(module, "_SM3", None)  # an OpenSSL whose hashlib has no SM3
    assert module.sm3(data) == fast and module.sm3_hex(data) == fast_hex == fast.hex()


def test_the_hashlib_hasher_is_a_fresh_sm3_each_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import keys.sm3 as module

    hasher = module.hashlib_hasher()
    if hasher is not None:  # hashlib's OpenSSL has SM3
        hasher.update(b"abc")
        assert hasher.hexdigest() == sm3(b"abc").hex()
        again = module.hashlib_hasher()
        assert again is not None and again.hexdigest() == sm3(b"").hex()
    monkeypatch.setattr(module, "_SM3", None)
    assert module.hashlib_hasher() is None
