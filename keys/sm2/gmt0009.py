"""GM/T 0009-2012 ASN.1 structures for SM2 (§7.2 ciphertext, §7.3 signature).

    SM2Signature ::= SEQUENCE { R INTEGER, S INTEGER }
    SM2Cipher    ::= SEQUENCE { XCoordinate INTEGER, YCoordinate INTEGER,
                                HASH OCTET STRING (SIZE(32)), CipherText OCTET STRING }

The DER ciphertext is what ``openssl pkeyutl -encrypt`` (OpenSSL 1.1.1+/3.x,
Tongsuo) emits and accepts; its field order (C1, C3, C2) matches GB/T 32918.4.
"""

from __future__ import annotations

from keys.sm2 import der
from keys.sm2.gbt32918 import N, P
from keys.sm3 import DIGEST_SIZE


def encode_signature(r: int, s: int) -> bytes:
    return der.sequence(der.integer(r), der.integer(s))


def decode_signature(signature: bytes) -> tuple[int, int]:
    """Strictly parse a DER signature; ``ValueError`` unless 1 ≤ r, s < n."""
    items = der.read_all(der.read_single(signature, der.SEQUENCE))
    if len(items) != 2 or any(tag != der.INTEGER for tag, _ in items):
        raise der.DerError("not an SM2Signature")
    r, s = (der.parse_integer(content) for _, content in items)
    if not (1 <= r < N and 1 <= s < N):
        raise ValueError("SM2 signature out of range")
    return r, s


def encode_ciphertext(x1: int, y1: int, c3: bytes, c2: bytes) -> bytes:
    return der.sequence(der.integer(x1), der.integer(y1), der.octet_string(c3), der.octet_string(c2))


def decode_ciphertext(ciphertext: bytes) -> tuple[int, int, bytes, bytes]:
    """Parse SM2Cipher into ``(x1, y1, C3, C2)``; C1 is range-checked, not curve-checked."""
    items = der.read_all(der.read_single(ciphertext, der.SEQUENCE))
    tags = [tag for tag, _ in items]
    if tags != [der.INTEGER, der.INTEGER, der.OCTET_STRING, der.OCTET_STRING]:
        raise der.DerError("not an SM2Cipher")
    x1 = der.parse_integer(items[0][1])
    y1 = der.parse_integer(items[1][1])
    c3, c2 = items[2][1], items[3][1]
    if x1 >= P or y1 >= P or len(c3) != DIGEST_SIZE or not c2:
        raise ValueError("SM2Cipher fields out of range")
    return x1, y1, c3, c2
