"""SM3 hash (GB/T 32905-2016) and HMAC-SM3 (RFC 2104 construction over SM3)."""

from __future__ import annotations

import hmac as _hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _crypto_hmac

DIGEST_SIZE = 32
BLOCK_SIZE = 64


# OpenSSL-backed hashers (cryptography's, and hashlib's) let go of the GIL for each update of
# 2048 bytes or more, and getting it back waits out the interpreter's switch interval (5 ms)
# whenever another thread is running Python: in the gateway on SQLite the database driver's
# threads always are, so one SM3 of an audit event or a response body cost the event loop
# milliseconds. Slices below that size hash as fast and keep the GIL.
GIL_SLICE = 2047


def _feed(h: hashes.Hash | _crypto_hmac.HMAC, data: bytes) -> None:
    if len(data) <= GIL_SLICE:
        h.update(data)
        return
    view = memoryview(data)
    for i in range(0, len(view), GIL_SLICE):
        h.update(view[i : i + GIL_SLICE])


def sm3(data: bytes) -> bytes:
    """Return the 32-byte SM3 digest of ``data``."""
    h = hashes.Hash(hashes.SM3())
    _feed(h, data)
    return h.finalize()


def hmac_sm3(key: bytes, data: bytes) -> bytes:
    """Return the 32-byte HMAC-SM3 of ``data`` under ``key``."""
    h = _crypto_hmac.HMAC(key, hashes.SM3())
    _feed(h, data)
    return h.finalize()


def verify_hmac_sm3(key: bytes, data: bytes, mac: bytes) -> bool:
    """Constant-time check of an HMAC-SM3 tag; ``False`` on any mismatch."""
    return _hmac.compare_digest(hmac_sm3(key, data), mac)
