"""SM3 hash (GB/T 32905-2016) and HMAC-SM3 (RFC 2104 construction over SM3)."""

from __future__ import annotations

import hmac as _hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _crypto_hmac

DIGEST_SIZE = 32
BLOCK_SIZE = 64


def sm3(data: bytes) -> bytes:
    """Return the 32-byte SM3 digest of ``data``."""
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


def hmac_sm3(key: bytes, data: bytes) -> bytes:
    """Return the 32-byte HMAC-SM3 of ``data`` under ``key``."""
    h = _crypto_hmac.HMAC(key, hashes.SM3())
    h.update(data)
    return h.finalize()


def verify_hmac_sm3(key: bytes, data: bytes, mac: bytes) -> bool:
    """Constant-time check of an HMAC-SM3 tag; ``False`` on any mismatch."""
    return _hmac.compare_digest(hmac_sm3(key, data), mac)
