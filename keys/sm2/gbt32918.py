"""SM2 curve and the backend-independent parts of GB/T 32918-2016.

* part 1/5: the recommended curve parameters and point validation;
* part 2 §5.5: the signer's Z value ``Z = SM3(ENTL ‖ ID ‖ a ‖ b ‖ xG ‖ yG ‖ xA ‖ yA)``
  and the signed digest ``e = SM3(Z ‖ M)``;
* part 4 §5.4.3: the key derivation function and the raw ciphertext layout
  ``C1 ‖ C3 ‖ C2`` (C1 = 04 ‖ x1 ‖ y1, C3 = SM3(x2 ‖ M ‖ y2), C2 = M xor KDF).

Interop trap: the 2010 draft ordered the ciphertext ``C1 ‖ C2 ‖ C3`` and some
libraries (gmssl's ``CryptSM2(mode=0)``, older Java/JS SDKs) still default to
it. Both layouts have the same length and decrypt to garbage-then-hash-failure
when confused. This module only speaks ``C1 ‖ C3 ‖ C2``; convert legacy input
explicitly with :func:`c1c2c3_to_c1c3c2`.
"""

from __future__ import annotations

from functools import lru_cache

from keys.errors import InvalidKeyError
from keys.sm3 import DIGEST_SIZE, sm3

P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0

COORD_SIZE = 32
POINT_SIZE = 1 + 2 * COORD_SIZE  # uncompressed: 04 ‖ x ‖ y
DEFAULT_ID = b"1234567812345678"  # GM/T 0009-2012 §10 default signer ID


def _b(value: int) -> bytes:
    return value.to_bytes(COORD_SIZE, "big")


def is_on_curve(x: int, y: int) -> bool:
    """True for an affine point of the SM2 curve (the cofactor is 1, so every
    such point except infinity is in the prime-order group)."""
    return 0 <= x < P and 0 <= y < P and (y * y - (x * x * x + A * x + B)) % P == 0


def check_private_scalar(d: int) -> None:
    # GB/T 32918.1 §6.1: d ∈ [1, n-2] (d = n-1 makes 1+d non-invertible).
    if not 1 <= d <= N - 2:
        raise InvalidKeyError("SM2 private key out of range")


def check_public_point(x: int, y: int) -> None:
    if not is_on_curve(x, y):
        raise InvalidKeyError("SM2 public key is not a point on the curve")


def encode_point(x: int, y: int) -> bytes:
    return b"\x04" + _b(x) + _b(y)


def decode_point(data: bytes) -> tuple[int, int]:
    """Parse an uncompressed (04) or compressed (02/03) point and validate it."""
    if len(data) == POINT_SIZE and data[0] == 4:
        x = int.from_bytes(data[1:33], "big")
        y = int.from_bytes(data[33:], "big")
    elif len(data) == 1 + COORD_SIZE and data[0] in (2, 3):
        x = int.from_bytes(data[1:], "big")
        if x >= P:
            raise InvalidKeyError("SM2 point is not on the curve")
        # p ≡ 3 (mod 4), so a square root is a power.
        y = pow((x * x * x + A * x + B) % P, (P + 1) // 4, P)
        if y & 1 != data[0] & 1:
            y = P - y
    else:
        raise InvalidKeyError("SM2 point encoding not recognised")
    check_public_point(x, y)
    return x, y


@lru_cache(maxsize=1024)
def z_value(x: int, y: int, uid: bytes = DEFAULT_ID) -> bytes:
    """GB/T 32918.2 §5.5 Z_A for public key (x, y) and signer ID ``uid``.

    Cached: it depends only on the key and the ID, and costs a hash per call.
    """
    bits = len(uid) * 8
    if bits > 0xFFFF:
        raise ValueError("SM2 signer ID too long")
    return sm3(bits.to_bytes(2, "big") + uid + b"".join(_b(v) for v in (A, B, GX, GY, x, y)))


def message_digest(x: int, y: int, message: bytes, uid: bytes = DEFAULT_ID) -> bytes:
    """``e = SM3(Z_A ‖ M)``, the value that SM2 actually signs."""
    return sm3(z_value(x, y, uid) + message)


def kdf(z: bytes, klen: int) -> bytes:
    """GB/T 32918.4 §5.4.3 KDF: SM3(Z ‖ ct) for ct = 1, 2, … truncated to klen bytes."""
    out = bytearray()
    counter = 1
    while len(out) < klen:
        out += sm3(z + counter.to_bytes(4, "big"))
        counter += 1
    return bytes(out[:klen])


def split_c1c3c2(ciphertext: bytes) -> tuple[int, int, bytes, bytes]:
    """Split raw ``04 ‖ x1 ‖ y1 ‖ C3 ‖ C2`` into ``(x1, y1, C3, C2)`` (no validation of C1)."""
    if len(ciphertext) <= POINT_SIZE + DIGEST_SIZE or ciphertext[0] != 4:
        raise ValueError("not an SM2 C1C3C2 ciphertext")
    x1 = int.from_bytes(ciphertext[1:33], "big")
    y1 = int.from_bytes(ciphertext[33:65], "big")
    c3 = bytes(ciphertext[POINT_SIZE : POINT_SIZE + DIGEST_SIZE])
    return x1, y1, c3, bytes(ciphertext[POINT_SIZE + DIGEST_SIZE :])


def join_c1c3c2(x1: int, y1: int, c3: bytes, c2: bytes) -> bytes:
    return encode_point(x1, y1) + c3 + c2


def c1c2c3_to_c1c3c2(ciphertext: bytes) -> bytes:
    """Reorder a legacy ``C1 ‖ C2 ‖ C3`` ciphertext to the standard ``C1 ‖ C3 ‖ C2``.

    Only call this when the producer is known to use the legacy order: the two
    layouts cannot be told apart from the bytes.
    """
    c1, rest = ciphertext[:POINT_SIZE], ciphertext[POINT_SIZE:]
    return bytes(c1 + rest[-DIGEST_SIZE:] + rest[:-DIGEST_SIZE])


def c1c3c2_to_c1c2c3(ciphertext: bytes) -> bytes:
    """Inverse of :func:`c1c2c3_to_c1c3c2`, for peers stuck on the legacy order."""
    c1, rest = ciphertext[:POINT_SIZE], ciphertext[POINT_SIZE:]
    return bytes(c1 + rest[DIGEST_SIZE:] + rest[:DIGEST_SIZE])
