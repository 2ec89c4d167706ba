"""The sliver of ASN.1 DER (ITU-T X.690) that SM2 needs.

Hand-written rather than a dependency because the structures are fixed and
tiny. The reader is strict (definite, minimal lengths; minimal non-negative
INTEGERs; nothing trailing) so that every value has exactly one encoding:
a re-encoded signature can never verify where the original did not.
"""

from __future__ import annotations

INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
OID = 0x06
SEQUENCE = 0x30


class DerError(ValueError):
    """Malformed or non-canonical DER."""


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _length(len(content)) + content


def integer(value: int) -> bytes:
    if value < 0:
        raise ValueError("negative INTEGER not supported")
    # One extra byte when the top bit is set keeps the value non-negative.
    return tlv(INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def octet_string(value: bytes) -> bytes:
    return tlv(OCTET_STRING, value)


def bit_string(value: bytes) -> bytes:
    return tlv(BIT_STRING, b"\x00" + value)


def sequence(*items: bytes) -> bytes:
    return tlv(SEQUENCE, b"".join(items))


def read(data: bytes, offset: int = 0) -> tuple[int, bytes, int]:
    """Read one TLV at ``offset``; return ``(tag, content, next_offset)``."""
    if offset + 2 > len(data):
        raise DerError("truncated")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise DerError("high tag numbers not supported")
    first = data[offset + 1]
    pos = offset + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise DerError("bad length")
        length = int.from_bytes(data[pos : pos + count], "big")
        if data[pos] == 0 or length < 0x80:
            raise DerError("non-minimal length")
        pos += count
    end = pos + length
    if end > len(data):
        raise DerError("truncated")
    return tag, bytes(data[pos:end]), end


def read_all(data: bytes) -> list[tuple[int, bytes]]:
    """Split ``data`` into consecutive TLVs; all of it must be consumed."""
    items = []
    pos = 0
    while pos < len(data):
        tag, content, pos = read(data, pos)
        items.append((tag, content))
    return items


def read_single(data: bytes, tag: int) -> bytes:
    """Content of the one TLV that makes up all of ``data``; it must carry ``tag``."""
    got, content, end = read(data)
    if got != tag or end != len(data):
        raise DerError("unexpected structure")
    return content


def parse_integer(content: bytes) -> int:
    if not content:
        raise DerError("empty INTEGER")
    if content[0] & 0x80:
        raise DerError("negative INTEGER")
    if len(content) > 1 and content[0] == 0 and not content[1] & 0x80:
        raise DerError("non-minimal INTEGER")
    return int.from_bytes(content, "big")


def parse_bit_string(content: bytes) -> bytes:
    if not content or content[0] != 0:
        raise DerError("BIT STRING with unused bits")
    return content[1:]
