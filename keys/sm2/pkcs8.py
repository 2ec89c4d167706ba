"""SM2 key encodings: PKCS#8 private keys (RFC 5208/5958) wrapping an SEC1
``ECPrivateKey`` (RFC 5915), and ``SubjectPublicKeyInfo`` public keys (RFC 5480).

These are the forms ``openssl genpkey -algorithm SM2`` and
``openssl pkey -pubout`` write: algorithm ``id-ecPublicKey`` with the named
curve ``sm2`` (1.2.156.10197.1.301). On input we also accept the SEC1
``EC PRIVATE KEY`` PEM (``openssl ecparam -genkey -name SM2``) and the
algorithm OID ``sm2`` in place of ``id-ecPublicKey`` (some GmSSL builds).
Encrypted PKCS#8 is refused: decrypt it with ``openssl pkey`` first.
"""

from __future__ import annotations

import base64
import binascii
import re

from keys.errors import InvalidKeyError
from keys.sm2 import der
from keys.sm2.gbt32918 import COORD_SIZE, decode_point, encode_point

ID_EC_PUBLIC_KEY = der.tlv(der.OID, bytes.fromhex("2a8648ce3d0201"))  # 1.2.840.10045.2.1
SM2_CURVE = der.tlv(der.OID, bytes.fromhex("2a811ccf5501822d"))  # 1.2.156.10197.1.301
_ALGORITHM = der.sequence(ID_EC_PUBLIC_KEY, SM2_CURVE)
_ACCEPTED_ALGORITHMS = {_ALGORITHM, der.sequence(SM2_CURVE), der.sequence(SM2_CURVE, SM2_CURVE)}

_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)


def _pem_encode(label: str, body: bytes) -> str:
    b64 = base64.b64encode(body).decode("ascii")
    lines = "\n".join(b64[i : i + 64] for i in range(0, len(b64), 64))
    return f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----\n"


def _pem_blocks(data: bytes | str) -> dict[str, bytes]:
    raw = data.encode("ascii") if isinstance(data, str) else bytes(data)
    blocks: dict[str, bytes] = {}
    for match in _PEM.finditer(raw):
        label = match.group(1).decode("ascii")
        try:
            blocks.setdefault(label, base64.b64decode(b"".join(match.group(2).split()), validate=True))
        except binascii.Error:
            raise InvalidKeyError(f"bad base64 in PEM block {label}") from None
    return blocks


def encode_public_key(x: int, y: int) -> bytes:
    """DER ``SubjectPublicKeyInfo``."""
    return der.sequence(_ALGORITHM, der.bit_string(encode_point(x, y)))


def encode_private_key(d: int, x: int, y: int) -> bytes:
    """DER PKCS#8 ``PrivateKeyInfo``, laid out byte for byte as OpenSSL writes it."""
    ec_private_key = der.sequence(
        der.integer(1),
        der.octet_string(d.to_bytes(COORD_SIZE, "big")),
        der.tlv(0xA1, der.bit_string(encode_point(x, y))),
    )
    return der.sequence(der.integer(0), _ALGORITHM, der.octet_string(ec_private_key))


def public_key_pem(x: int, y: int) -> str:
    return _pem_encode("PUBLIC KEY", encode_public_key(x, y))


def private_key_pem(d: int, x: int, y: int) -> str:
    return _pem_encode("PRIVATE KEY", encode_private_key(d, x, y))


def decode_public_key(data: bytes | str) -> tuple[int, int]:
    """Parse a PEM or DER ``SubjectPublicKeyInfo``; return the validated point."""
    body: bytes | None
    if isinstance(data, bytes | bytearray) and data[:1] == b"\x30":
        body = bytes(data)
    else:
        body = _pem_blocks(data).get("PUBLIC KEY")
        if body is None:
            raise InvalidKeyError("no PUBLIC KEY PEM block found")
    try:
        items = der.read_all(der.read_single(body, der.SEQUENCE))
        if len(items) != 2 or items[1][0] != der.BIT_STRING:
            raise der.DerError("not a SubjectPublicKeyInfo")
        if der.tlv(*items[0]) not in _ACCEPTED_ALGORITHMS:
            raise InvalidKeyError("public key is not an SM2 key")
        return decode_point(der.parse_bit_string(items[1][1]))
    except der.DerError:
        raise InvalidKeyError("malformed SM2 public key") from None


def _decode_ec_private_key(body: bytes, in_pkcs8: bool) -> tuple[int, bytes | None]:
    items = der.read_all(der.read_single(body, der.SEQUENCE))
    if len(items) < 2 or items[0] != (der.INTEGER, b"\x01") or items[1][0] != der.OCTET_STRING:
        raise der.DerError("not an ECPrivateKey")
    if len(items[1][1]) != COORD_SIZE:
        raise InvalidKeyError("SM2 private key must be 32 bytes")
    d = int.from_bytes(items[1][1], "big")
    point = None
    for tag, content in items[2:]:
        if tag == 0xA0:  # [0] parameters: must name the SM2 curve when present
            if content != SM2_CURVE:
                raise InvalidKeyError("private key is not on the SM2 curve")
        elif tag == 0xA1:  # [1] publicKey
            point = der.parse_bit_string(der.read_single(content, der.BIT_STRING))
        else:
            raise der.DerError("unexpected ECPrivateKey field")
    if not in_pkcs8 and not any(tag == 0xA0 for tag, _ in items[2:]):
        raise InvalidKeyError("SEC1 key does not name its curve")
    return d, point


def decode_private_key(data: bytes | str) -> tuple[int, bytes | None]:
    """Parse PEM or DER (PKCS#8 or SEC1); return ``(d, encoded public point or None)``.

    The caller checks the scalar range and that the embedded point matches d.
    """
    if isinstance(data, bytes | bytearray) and data[:1] == b"\x30":
        body, pkcs8 = bytes(data), None
    else:
        blocks = _pem_blocks(data)
        if "ENCRYPTED PRIVATE KEY" in blocks:
            raise InvalidKeyError("encrypted private keys are not supported; decrypt first")
        if "PRIVATE KEY" in blocks:
            body, pkcs8 = blocks["PRIVATE KEY"], True
        elif "EC PRIVATE KEY" in blocks:
            body, pkcs8 = blocks["EC PRIVATE KEY"], False
        else:
            raise InvalidKeyError("no PRIVATE KEY PEM block found")
    try:
        if pkcs8 is None:  # DER: PKCS#8 starts with INTEGER 0, SEC1 with INTEGER 1
            first = der.read_all(der.read_single(body, der.SEQUENCE))[0]
            pkcs8 = first == (der.INTEGER, b"\x00")
        if not pkcs8:
            return _decode_ec_private_key(body, in_pkcs8=False)
        items = der.read_all(der.read_single(body, der.SEQUENCE))
        if len(items) < 3 or items[0][0] != der.INTEGER or items[0][1] not in (b"\x00", b"\x01"):
            raise der.DerError("not a PrivateKeyInfo")
        if der.tlv(*items[1]) not in _ACCEPTED_ALGORITHMS:
            raise InvalidKeyError("private key is not an SM2 key")
        if items[2][0] != der.OCTET_STRING:
            raise der.DerError("not a PrivateKeyInfo")
        return _decode_ec_private_key(items[2][1], in_pkcs8=True)
    except der.DerError:
        raise InvalidKeyError("malformed SM2 private key") from None
