"""Reading a file of rows, streaming: CSV (UTF-8 with or without BOM, GB18030), XLSX (openpyxl's
read-only mode) and JSON Lines. Each reader yields `(row_number, values)` aligned to its header;
row numbers are what a spreadsheet shows (the header is row 1, the first data row is row 2; in
JSON Lines, the line number).

Nothing here holds more than one row and a bounded buffer: a line or a quoted field longer than
`MAX_LINE_CHARS`, a NUL byte or bytes that do not decode stop the read at once, so a large file
of garbage is refused after reading a bounded prefix (`CountingReader.bytes_read` says how much)."""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives import hashes

MAX_LINE_CHARS = 1 << 20  # one physical line (CSV, JSON Lines)
MAX_FIELD_CHARS = 1 << 17  # one CSV field, quoted newlines included (csv's own default limit)
SNIFF_BYTES = 64 * 1024  # what --encoding auto looks at
CHUNK = 1 << 16


class Format(StrEnum):
    csv = "csv"
    xlsx = "xlsx"
    jsonl = "jsonl"


class Encoding(StrEnum):
    utf8 = "utf-8"
    gb18030 = "gb18030"
    auto = "auto"


class LoadError(ValueError):
    """A file (or request) that cannot be loaded; the message is safe to show and says where."""


class CountingReader(io.RawIOBase):
    """A binary file that counts the bytes read from it (how early bad input is refused)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.bytes_read = 0
        self._pending = b""  # pushed back by unread(): served before the raw file

    def unread(self, data: bytes) -> None:
        self._pending = data + self._pending

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self.raw.seekable()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def readinto(self, buffer: Any) -> int:
        if self._pending:
            n = min(len(buffer), len(self._pending))
            buffer[:n] = self._pending[:n]
            self._pending = self._pending[n:]
            return n
        data = self.raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.bytes_read += n
        return n

    def close(self) -> None:
        self.raw.close()
        super().close()


def file_digest(path: Path) -> str:
    """`sm3:<hex>` of a file, read in chunks."""
    h = hashes.Hash(hashes.SM3())
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return "sm3:" + h.finalize().hex()


def guess_format(path: Path, declared: Format | None) -> Format:
    if declared is not None:
        return declared
    suffix = path.suffix.lower()
    for fmt, suffixes in (
        (Format.csv, (".csv", ".txt")),
        (Format.xlsx, (".xlsx",)),
        (Format.jsonl, (".jsonl", ".ndjson")),
    ):
        if suffix in suffixes:
            return fmt
    raise LoadError(f"cannot tell the format of {path.name}: pass --format csv, xlsx or jsonl")


@dataclass
class Rows:
    """A file being read: its header, its rows and the bytes read so far."""

    header: list[str]
    rows: Iterator[tuple[int, list[Any]]]
    source: CountingReader
    encoding: str | None = None

    def close(self) -> None:
        self.source.close()


def open_rows(path: Path, fmt: Format, encoding: Encoding = Encoding.auto) -> Rows:
    return read_rows(CountingReader(path.open("rb")), fmt, encoding)


def read_rows(source: CountingReader, fmt: Format, encoding: Encoding = Encoding.auto) -> Rows:
    """The rows of an open file (closed on error)."""
    try:
        if fmt is Format.csv:
            return _csv_rows(source, encoding)
        if fmt is Format.jsonl:
            return _jsonl_rows(source, encoding)
        return _xlsx_rows(source)
    except BaseException:
        source.close()
        raise


# ---- encodings ----------------------------------------------------------------------------

_SUGGEST = {
    "utf-8-sig": "if it was saved by Excel or WPS on Chinese Windows, try --encoding gb18030",
    "gb18030": "try --encoding utf-8",
}


def _codec(source: CountingReader, encoding: Encoding) -> str:
    if encoding is Encoding.utf8:
        return "utf-8-sig"  # the BOM Excel writes is dropped, a file without one reads the same
    if encoding is Encoding.gb18030:
        return "gb18030"
    head = b""
    while len(head) < SNIFF_BYTES and (chunk := source.read(SNIFF_BYTES - len(head))):
        head += chunk
    source.unread(head)  # works on a stream (an upload) as on a file
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    for codec in ("utf-8-sig", "gb18030"):
        try:
            codecs.getincrementaldecoder(codec)().decode(head, final=False)
            return codec
        except UnicodeDecodeError:
            continue
    raise LoadError("the file is neither UTF-8 nor GB18030 text (is it a CSV file?)")


def _decode_error(codec: str, row: int, err: UnicodeDecodeError) -> LoadError:
    name = "UTF-8" if codec.startswith("utf-8") else "GB18030"
    return LoadError(f"row {row}: the file is not valid {name} text ({err.reason}); {_SUGGEST[codec]}")


def _lines(text: IO[str], what: str, first_row: int) -> Iterator[str]:
    """Physical lines, each at most MAX_LINE_CHARS: a file without line breaks is not rows."""
    line_no = first_row
    while True:
        line = text.readline(MAX_LINE_CHARS)
        if not line:
            return
        if len(line) >= MAX_LINE_CHARS and not line.endswith("\n"):
            raise LoadError(
                f"line {line_no}: longer than {MAX_LINE_CHARS:,} characters; is this a {what} file?"
            )
        line_no += 1
        yield line


# ---- CSV ----------------------------------------------------------------------------------


def _csv_rows(source: CountingReader, encoding: Encoding) -> Rows:
    codec = _codec(source, encoding)
    text = io.TextIOWrapper(io.BufferedReader(source, CHUNK), encoding=codec, newline="")
    csv.field_size_limit(MAX_FIELD_CHARS)
    reader = csv.reader(_lines(text, "CSV", 1), strict=True)
    record = 1

    def next_record() -> list[str] | None:
        try:
            return next(reader)
        except StopIteration:
            return None
        except UnicodeDecodeError as err:
            raise _decode_error(codec, record, err) from None
        except csv.Error as err:
            raise LoadError(f"row {record}: malformed CSV ({_csv_reason(err)})") from None

    header = next_record()
    if header is None:
        raise LoadError("the file is empty: the first row must name the columns")
    header = [h.strip() for h in header]

    def rows() -> Iterator[tuple[int, list[Any]]]:
        nonlocal record
        while True:
            record += 1
            values = next_record()
            if values is None:
                return
            if not values:  # a blank line
                continue
            yield record, list(values)

    return Rows(header, rows(), source, codec.removesuffix("-sig"))


def _csv_reason(err: csv.Error) -> str:
    text = str(err)
    if "field larger than field limit" in text or "unexpected end of data" in text:
        return "an unterminated quoted field?"
    if "NUL" in text:
        return "a NUL byte: this looks like a binary file"
    return text


# ---- JSON Lines ---------------------------------------------------------------------------


def _jsonl_rows(source: CountingReader, encoding: Encoding) -> Rows:
    codec = _codec(source, encoding)
    text = io.TextIOWrapper(io.BufferedReader(source, CHUNK), encoding=codec)
    lines = _lines(text, "JSON Lines", 1)
    line_no = 0

    def next_object() -> dict[str, Any] | None:
        nonlocal line_no
        while True:
            try:
                line = next(lines)
            except StopIteration:
                return None
            except UnicodeDecodeError as err:
                raise _decode_error(codec, line_no + 1, err) from None
            line_no += 1
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                raise LoadError(f"row {line_no}: not JSON ({err.msg} at column {err.colno})") from None
            except ValueError as err:  # JSON, but a number past Python's int digits limit
                reason = str(err).split(":")[0]
                raise LoadError(f"row {line_no}: a value that cannot be read ({reason})") from None
            if not isinstance(value, dict):
                raise LoadError(f"row {line_no}: each line must be one JSON object")
            return value

    first = next_object()
    if first is None:
        raise LoadError("the file is empty")
    header = list(first)

    def rows() -> Iterator[tuple[int, list[Any]]]:
        obj: dict[str, Any] | None = first
        while obj is not None:
            extra = [k for k in obj if k not in positions]
            if extra:
                raise LoadError(
                    f"row {line_no}: unknown column {extra[0]!r}; the first line names {', '.join(header)}"
                )
            values: list[Any] = [None] * len(header)
            for k, v in obj.items():
                values[positions[k]] = v
            yield line_no, values
            obj = next_object()

    positions = {k: i for i, k in enumerate(header)}
    return Rows(header, rows(), source, codec.removesuffix("-sig"))


# ---- XLSX ---------------------------------------------------------------------------------


def _xlsx_rows(source: CountingReader) -> Rows:
    import zipfile

    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BufferedReader(source, CHUNK), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as err:
        raise LoadError(f"not an XLSX workbook ({type(err).__name__})") from None
    sheet = book.worksheets[0]
    it = sheet.iter_rows(values_only=True)
    try:
        first = next(it)
    except StopIteration:
        raise LoadError("the first sheet is empty: its first row must name the columns") from None
    header = [str(h).strip() if h is not None else "" for h in first]
    while header and not header[-1]:
        header.pop()

    def rows() -> Iterator[tuple[int, list[Any]]]:
        for n, values in enumerate(it, start=2):
            cells = list(values[: len(header)])
            if all(v is None or (isinstance(v, str) and not v.strip()) for v in cells):
                continue
            cells += [None] * (len(header) - len(cells))
            yield n, cells
        book.close()

    return Rows(header, rows(), source)
