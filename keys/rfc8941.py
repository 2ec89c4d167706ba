"""Structured Field Values for HTTP (RFC 8941): the subset RFC 9421 and RFC 9530 need.

Parsing follows the algorithms of RFC 8941 section 4.2 and fails (``ValueError``
with the position) on anything they reject, instead of guessing: a signature
header that two parsers read differently is a forgery waiting to happen.
Supported: dictionaries, inner lists, parameters, and the bare items integer,
string, token, byte sequence and boolean. Decimals are rejected (nothing here
uses them). Serialisation covers the same types.
"""

from __future__ import annotations

import base64
import binascii
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "BareItem",
    "InnerList",
    "Item",
    "Token",
    "parse_dictionary",
    "serialize_dictionary",
    "serialize_inner_list",
    "serialize_item",
    "serialize_parameters",
]


class Token(str):
    """An sf-token, kept apart from sf-string so it round-trips unquoted."""

    __slots__ = ()


BareItem = int | str | Token | bytes | bool
Params = dict[str, BareItem]


@dataclass(frozen=True)
class Item:
    value: BareItem
    params: Params = field(default_factory=dict)


@dataclass(frozen=True)
class InnerList:
    items: tuple[Item, ...]
    params: Params = field(default_factory=dict)


_LCALPHA = set(string.ascii_lowercase)
_KEY_CHARS = _LCALPHA | set(string.digits) | set("_-.*")
_TCHAR = set(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~:/")
_B64_CHARS = set(string.ascii_letters + string.digits + "+/=")
_KEY_RE = re.compile(r"[a-z*][a-z0-9_\-.*]*\Z")
_TOKEN_RE = re.compile(r"[A-Za-z*][A-Za-z0-9!#$%&'*+\-.^_`|~:/]*\Z")


class _Parser:
    def __init__(self, text: str) -> None:
        if not text.isascii():
            raise ValueError("structured field: non-ASCII character")
        self.s = text
        self.i = 0

    def fail(self, what: str) -> ValueError:
        return ValueError(f"structured field: {what} at offset {self.i}")

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def skip(self, chars: str) -> None:
        while self.i < len(self.s) and self.s[self.i] in chars:
            self.i += 1

    def dictionary(self) -> dict[str, Item | InnerList]:
        out: dict[str, Item | InnerList] = {}
        self.skip(" ")
        while self.i < len(self.s):
            key = self.key()
            if self.peek() == "=":
                self.i += 1
                out[key] = self.item_or_list()
            else:
                out[key] = Item(True, self.parameters())
            self.skip(" \t")
            if self.i >= len(self.s):
                return out
            if self.peek() != ",":
                raise self.fail("expected ','")
            self.i += 1
            self.skip(" \t")
            if self.i >= len(self.s):
                raise self.fail("trailing ','")
        return out

    def item_or_list(self) -> Item | InnerList:
        return self.inner_list() if self.peek() == "(" else self.item()

    def inner_list(self) -> InnerList:
        self.i += 1  # "("
        items: list[Item] = []
        while self.i < len(self.s):
            self.skip(" ")
            if self.peek() == ")":
                self.i += 1
                return InnerList(tuple(items), self.parameters())
            items.append(self.item())
            if self.peek() not in (" ", ")"):
                raise self.fail("expected ' ' or ')' in inner list")
        raise self.fail("unterminated inner list")

    def item(self) -> Item:
        value = self.bare_item()
        return Item(value, self.parameters())

    def parameters(self) -> Params:
        params: Params = {}
        while self.peek() == ";":
            self.i += 1
            self.skip(" ")
            key = self.key()
            value: BareItem = True
            if self.peek() == "=":
                self.i += 1
                value = self.bare_item()
            params[key] = value
        return params

    def key(self) -> str:
        start = self.i
        if self.peek() not in _LCALPHA and self.peek() != "*":
            raise self.fail("expected a key")
        while self.i < len(self.s) and self.s[self.i] in _KEY_CHARS:
            self.i += 1
        return self.s[start : self.i]

    def bare_item(self) -> BareItem:
        c = self.peek()
        if c == "-" or c.isdigit():
            return self.integer()
        if c == '"':
            return self.string()
        if c == ":":
            return self.byte_sequence()
        if c == "?":
            return self.boolean()
        if c.isalpha() or c == "*":
            return self.token()
        raise self.fail("expected an item")

    def integer(self) -> int:
        start = self.i
        if self.peek() == "-":
            self.i += 1
        digits = self.i
        while self.peek().isdigit():
            self.i += 1
        if self.i == digits:
            raise self.fail("expected a digit")
        if self.peek() == ".":
            raise self.fail("decimals are not supported")
        if self.i - digits > 15:
            raise self.fail("integer longer than 15 digits")
        return int(self.s[start : self.i])

    def string(self) -> str:
        self.i += 1
        out: list[str] = []
        while self.i < len(self.s):
            c = self.s[self.i]
            self.i += 1
            if c == "\\":
                nxt = self.peek()
                if nxt not in ('"', "\\"):
                    raise self.fail("bad escape in string")
                out.append(nxt)
                self.i += 1
            elif c == '"':
                return "".join(out)
            elif not " " <= c <= "~":
                raise self.fail("control character in string")
            else:
                out.append(c)
        raise self.fail("unterminated string")

    def token(self) -> Token:
        start = self.i
        self.i += 1
        while self.i < len(self.s) and self.s[self.i] in _TCHAR:
            self.i += 1
        return Token(self.s[start : self.i])

    def byte_sequence(self) -> bytes:
        self.i += 1
        end = self.s.find(":", self.i)
        if end < 0:
            raise self.fail("unterminated byte sequence")
        chunk = self.s[self.i : end]
        if not set(chunk) <= _B64_CHARS:
            raise self.fail("bad character in byte sequence")
        try:
            value = base64.b64decode(chunk, validate=True)
        except binascii.Error:
            raise self.fail("bad base64 in byte sequence") from None
        self.i = end + 1
        return value

    def boolean(self) -> bool:
        self.i += 1
        c = self.peek()
        if c not in ("0", "1"):
            raise self.fail("expected ?0 or ?1")
        self.i += 1
        return c == "1"


def parse_dictionary(text: str) -> dict[str, Item | InnerList]:
    """Parse an sf-dictionary (RFC 8941 section 4.2.2); later duplicate keys win."""
    return _Parser(text).dictionary()


def serialize_bare_item(value: BareItem) -> str:
    """Serialise one bare item (RFC 8941 section 4.1.3.1)."""
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, int):
        if abs(value) >= 10**15:
            raise ValueError("structured field: integer out of range")
        return str(value)
    if isinstance(value, Token):
        if not _TOKEN_RE.match(value):
            raise ValueError("structured field: invalid token")
        return str(value)
    if isinstance(value, str):
        if not all(" " <= c <= "~" for c in value):
            raise ValueError("structured field: string must be printable ASCII")
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bytes | bytearray):
        return ":" + base64.b64encode(bytes(value)).decode("ascii") + ":"
    raise TypeError(f"structured field: cannot serialise {type(value).__name__}")


def serialize_parameters(params: Mapping[str, BareItem]) -> str:
    out = []
    for key, value in params.items():
        if not _KEY_RE.match(key):
            raise ValueError(f"structured field: invalid key {key!r}")
        out.append(f";{key}" if value is True else f";{key}={serialize_bare_item(value)}")
    return "".join(out)


def serialize_item(item: Item) -> str:
    return serialize_bare_item(item.value) + serialize_parameters(item.params)


def serialize_inner_list(items: Iterable[Item], params: Mapping[str, BareItem]) -> str:
    return "(" + " ".join(serialize_item(i) for i in items) + ")" + serialize_parameters(params)


def serialize_dictionary(members: Mapping[str, Item | InnerList]) -> str:
    out = []
    for key, member in members.items():
        if not _KEY_RE.match(key):
            raise ValueError(f"structured field: invalid key {key!r}")
        if isinstance(member, InnerList):
            out.append(f"{key}={serialize_inner_list(member.items, member.params)}")
        elif member.value is True:
            out.append(key + serialize_parameters(member.params))
        else:
            out.append(f"{key}={serialize_item(member)}")
    return ", ".join(out)
