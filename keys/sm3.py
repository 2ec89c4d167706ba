"""SM3 hash (GB/T 32905-2016) and HMAC-SM3 (RFC 2104 construction over SM3).

OpenSSL computes both. Through `hashlib` when its OpenSSL offers SM3 (one C call per digest,
copied from a ready hasher: about half the cost of building cryptography's `Hash` object each
time, which counts for the audit chain and `shuqiao audit verify`, one SM3 per event); through
`cryptography` otherwise."""

from __future__ import annotations

import hashlib
import hmac as _hmac
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _crypto_hmac

DIGEST_SIZE = 32
BLOCK_SIZE = 64


class _Updatable(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...


def _hashlib_sm3() -> hashlib._Hash | None:
    try:
        proto = hashlib.new("sm3")
    except ValueError:  # an OpenSSL built without SM3
        return None
    # the standard test vector (GB/T 32905 appendix A.1), so a wrong "sm3" is never used
    check = proto.copy()
    check.update(b"abc")
    expected = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    return proto if check.hexdigest() == expected else None


_SM3 = _hashlib_sm3()

# OpenSSL-backed hashers (cryptography's, and hashlib's) let go of the GIL for each update of
# 2048 bytes or more, and getting it back waits out the interpreter's switch interval (5 ms)
# whenever another thread is running Python: in the gateway on SQLite the database driver's
# threads always are, so one SM3 of an audit event or a response body cost the event loop
# milliseconds. Slices below that size hash as fast and keep the GIL.
GIL_SLICE = 2047


def _feed(h: _Updatable, data: bytes) -> None:
    if len(data) <= GIL_SLICE:
        h.update(data)
        return
    view = memoryview(data)
    for i in range(0, len(view), GIL_SLICE):
        h.update(view[i : i + GIL_SLICE])


def sm3(data: bytes) -> bytes:
    """Return the 32-byte SM3 digest of ``data``."""
    if _SM3 is not None:
        fast = _SM3.copy()
        _feed(fast, data)
        return fast.digest()
    h = hashes.Hash(hashes.SM3())
    _feed(h, data)
    return h.finalize()


def sm3_hex(data: bytes) -> str:
    """The SM3 digest of ``data`` as 64 lower-case hex digits."""
    if _SM3 is not None:
        fast = _SM3.copy()
        _feed(fast, data)
        return fast.hexdigest()
    return sm3(data).hex()


def hashlib_hasher() -> hashlib._Hash | None:
    """A fresh hashlib SM3 hasher (OpenSSL's, checked against the test vector), None without one:
    for loops that hash many short inputs, `copy()` it per input and skip `sm3_hex`'s two calls.
    Inputs above GIL_SLICE bytes still belong to `sm3_hex`."""
    return _SM3.copy() if _SM3 is not None else None


def hmac_sm3(key: bytes, data: bytes) -> bytes:
    """Return the 32-byte HMAC-SM3 of ``data`` under ``key``."""
    h = _crypto_hmac.HMAC(key, hashes.SM3())
    _feed(h, data)
    return h.finalize()


def verify_hmac_sm3(key: bytes, data: bytes, mac: bytes) -> bool:
    """Constant-time check of an HMAC-SM3 tag; ``False`` on any mismatch."""
    return _hmac.compare_digest(hmac_sm3(key, data), mac)


_HASHLIB_SM3 = _SM3 is not None  # hashlib's SM3, checked against the test vector above


class PrefixedHmacSm3:
    """HMAC-SM3 of `prefix ‖ suffix` for many short suffixes under one key — the same bytes as
    `hmac_sm3(key, prefix + suffix)`. The key's pads and the prefix are hashed once; each digest
    is then two state copies and two short updates (about 2.5× cheaper than a fresh HMAC, which
    is what a per-cell keyed mark needs: policies.watermark). The key stays inside the hash
    states; `repr` shows nothing of it."""

    __slots__ = ("_inner", "_key", "_outer", "_prefix")

    def __init__(self, key: bytes, prefix: bytes) -> None:
        self._key, self._prefix = key, prefix
        self._inner: hashlib._Hash | None = None
        if not _HASHLIB_SM3 or len(prefix) > GIL_SLICE:
            return
        k = (sm3(key) if len(key) > BLOCK_SIZE else key).ljust(BLOCK_SIZE, b"\0")
        self._inner = hashlib.new("sm3", bytes(b ^ 0x36 for b in k) + prefix)
        self._outer = hashlib.new("sm3", bytes(b ^ 0x5C for b in k))

    def digest(self, suffix: bytes) -> bytes:
        if self._inner is None or len(suffix) > GIL_SLICE:
            return hmac_sm3(self._key, self._prefix + suffix)
        inner = self._inner.copy()
        inner.update(suffix)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def __repr__(self) -> str:
        return "PrefixedHmacSm3(…)"
