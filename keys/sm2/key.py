"""Backend-neutral SM2 key objects.

Keys carry plain integers; a backend converts them to its own representation
on first use and caches that on the key (``_native``), so a loaded key costs
nothing extra per operation and callers never see which backend is active.
"""

from __future__ import annotations

from typing import Any

from keys.sm2 import pkcs8
from keys.sm2.gbt32918 import check_private_scalar, check_public_point, decode_point, encode_point
from keys.sm3 import sm3


class SM2PublicKey:
    """An SM2 public key: a validated point (x, y) of the SM2 curve."""

    __slots__ = ("_native", "x", "y")

    def __init__(self, x: int, y: int) -> None:
        check_public_point(x, y)
        self.x = x
        self.y = y
        self._native: dict[str, Any] = {}

    @classmethod
    def from_bytes(cls, point: bytes) -> SM2PublicKey:
        """From an encoded point: ``04 ‖ x ‖ y`` or compressed ``02/03 ‖ x``."""
        return cls(*decode_point(point))

    @classmethod
    def from_pem(cls, data: bytes | str) -> SM2PublicKey:
        """From a ``PUBLIC KEY`` PEM (or its DER), as ``openssl pkey -pubout`` writes."""
        return cls(*pkcs8.decode_public_key(data))

    def to_bytes(self) -> bytes:
        """Uncompressed point ``04 ‖ x ‖ y`` (65 bytes)."""
        return encode_point(self.x, self.y)

    def to_der(self) -> bytes:
        return pkcs8.encode_public_key(self.x, self.y)

    def to_pem(self) -> str:
        return pkcs8.public_key_pem(self.x, self.y)

    def fingerprint(self) -> str:
        """Hex SM3 of the DER ``SubjectPublicKeyInfo``: a stable public identifier."""
        return sm3(self.to_der()).hex()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SM2PublicKey):
            return NotImplemented
        return (self.x, self.y) == (other.x, other.y)

    def __hash__(self) -> int:
        return hash((self.x, self.y))

    def __repr__(self) -> str:
        return f"SM2PublicKey({self.fingerprint()[:16]}…)"


class SM2PrivateKey:
    """An SM2 private key d with its public key; ``repr`` never shows d."""

    __slots__ = ("_d", "_native", "public_key")

    def __init__(self, d: int, public_key: SM2PublicKey) -> None:
        # Build through keys.sm2.generate_private_key / load_pem_private_key, which
        # derive public_key from d; this constructor trusts the pair it is given.
        check_private_scalar(d)
        self._d = d
        self.public_key = public_key
        self._native: dict[str, Any] = {}

    @property
    def private_value(self) -> int:
        return self._d

    def private_bytes(self) -> bytes:
        """The raw 32-byte scalar, for a key store that wraps it itself."""
        return self._d.to_bytes(32, "big")

    def to_der(self) -> bytes:
        return pkcs8.encode_private_key(self._d, self.public_key.x, self.public_key.y)

    def to_pem(self) -> str:
        """Unencrypted PKCS#8 ``PRIVATE KEY`` PEM, identical to OpenSSL's for the same key."""
        return pkcs8.private_key_pem(self._d, self.public_key.x, self.public_key.y)

    def __repr__(self) -> str:
        return f"SM2PrivateKey(public={self.public_key.fingerprint()[:16]}…)"
