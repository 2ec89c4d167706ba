"""A strict RFC 5424 parser for the tests (§6, the ABNF), written from the RFC and independent of
the formatter under test: anything that does not follow the grammar raises `Invalid`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime


class Invalid(ValueError):
    pass


HEADER = re.compile(
    rb"^<(?P<pri>\d{1,3})>(?P<version>[1-9]\d{0,2}) "
    rb"(?P<timestamp>-|\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})) "
    rb"(?P<hostname>[\x21-\x7e]{1,255}) (?P<app>[\x21-\x7e]{1,48}) "
    rb"(?P<procid>[\x21-\x7e]{1,128}) (?P<msgid>[\x21-\x7e]{1,32}) "
)
SD_NAME = re.compile(rb"[\x21-\x7e]{1,32}")
SD_NAME_FORBIDDEN = b'= ]"'
BOM = b"\xef\xbb\xbf"
IANA_SD_IDS = {"timeQuality", "origin", "meta"}  # RFC 5424 §7


@dataclass
class Message:
    pri: int
    version: int
    timestamp: str
    hostname: str
    app: str
    procid: str
    msgid: str
    sd: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    msg: bytes = b""

    @property
    def facility(self) -> int:
        return self.pri // 8

    @property
    def severity(self) -> int:
        return self.pri % 8

    def param(self, sd_id: str, name: str) -> str | None:
        values = [v for n, v in self.sd.get(sd_id, []) if n == name]
        return values[0] if values else None

    def text(self) -> str:
        """MSG-UTF8: BOM, then UTF-8."""
        if not self.msg.startswith(BOM):
            raise Invalid("MSG does not start with a BOM")
        return self.msg[len(BOM) :].decode("utf-8")


def _sd_name(data: bytes, i: int) -> tuple[str, int]:
    m = SD_NAME.match(data, i)
    if not m:
        raise Invalid(f"no SD-NAME at {i}")
    end = i
    while (
        end < len(data) and end - i < 32 and 0x21 <= data[end] <= 0x7E and data[end] not in SD_NAME_FORBIDDEN
    ):
        end += 1
    if end == i:
        raise Invalid(f"empty SD-NAME at {i}")
    return data[i:end].decode("ascii"), end


def parse(data: bytes) -> Message:
    m = HEADER.match(data)
    if not m:
        raise Invalid(f"header does not match RFC 5424: {data[:120]!r}")
    pri = int(m["pri"])
    if pri > 191:
        raise Invalid("PRI over 191")
    ts = m["timestamp"].decode()
    if ts != "-":
        datetime.fromisoformat(ts.replace("Z", "+00:00"))  # a real date and time
    msg = Message(
        pri,
        int(m["version"]),
        ts,
        m["hostname"].decode(),
        m["app"].decode(),
        m["procid"].decode(),
        m["msgid"].decode(),
    )
    i = m.end()
    if data[i : i + 1] == b"-":
        i += 1
    elif data[i : i + 1] != b"[":
        raise Invalid("STRUCTURED-DATA is neither '-' nor an SD-ELEMENT")
    while data[i : i + 1] == b"[":
        sd_id, i = _sd_name(data, i + 1)
        if "@" not in sd_id and sd_id not in IANA_SD_IDS:
            raise Invalid(f"SD-ID {sd_id!r} is not registered with IANA: name@<private enterprise number>")
        if "@" in sd_id and not re.fullmatch(r"[^@]+@\d+(\.\d+)*", sd_id):
            raise Invalid(f"SD-ID {sd_id!r}: name@<private enterprise number>")
        if sd_id in msg.sd:
            raise Invalid(f"SD-ID {sd_id!r} twice in one message")
        params: list[tuple[str, str]] = []
        while data[i : i + 1] == b" ":
            name, i = _sd_name(data, i + 1)
            if data[i : i + 2] != b'="':
                raise Invalid(f'PARAM {name!r} without ="')
            i += 2
            value = bytearray()
            while True:
                if i >= len(data):
                    raise Invalid("PARAM-VALUE not closed")
                c = data[i]
                if c == 0x5C and i + 1 < len(data) and data[i + 1] in b'"\\]':
                    value.append(data[i + 1])
                    i += 2
                elif c == 0x22:
                    i += 1
                    break
                elif c == 0x5D:
                    raise Invalid("unescaped ']' in a PARAM-VALUE")
                else:
                    value.append(c)
                    i += 1
            params.append((name, value.decode("utf-8")))
        if data[i : i + 1] != b"]":
            raise Invalid(f"SD-ELEMENT {sd_id!r} not closed")
        i += 1
        msg.sd[sd_id] = params
    if i == len(data):
        return msg
    if data[i : i + 1] != b" ":
        raise Invalid("no SP before MSG")
    msg.msg = data[i + 1 :]
    return msg


def split_octet_counted(stream: bytes) -> list[bytes]:
    """RFC 5425 §4.3: MSG-LEN SP SYSLOG-MSG, repeated."""
    out, i = [], 0
    while i < len(stream):
        sp = stream.index(b" ", i)
        length = int(stream[i:sp])
        out.append(stream[sp + 1 : sp + 1 + length])
        i = sp + 1 + length
    return out
