"""Pure readers of text inputs: a file -> its records as raw bytes with their line numbers.

Text inputs are read here, in Python, from the raw bytes (on a Spark executor, see readers.py), not by
Spark's text reader: that one decodes every line through a Java string, which turns invalid UTF-8 into
U+FFFD, so an honest U+FFFD in the data and a broken byte could not be told apart.

- Compressed files are opened by their outer extension (.gz, .bz2, .xz, .zst/.zstd when the
  `zstandard` package is importable) and read by their inner one: `events.jsonl.gz` is JSONL.
- Lines end at "\\n"; one "\\r" before it (CRLF) is dropped. A UTF-8 byte-order mark at the start of
  the file is dropped. Line numbers count physical lines from 0 (a CSV header is line 0).
- A line longer than MAX_LINE_BYTES is not held in memory: it comes back as OVERLONG_LINE (and is
  rejected as malformed_line:too_long).
- CSV/TSV records may span lines inside a quoted field (RFC 4180): `delimited_records` joins them, and
  the record keeps the number of its first line.
"""

from __future__ import annotations

import bz2
import gzip
import importlib.util
import lzma
import math
import os
import zlib
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from momorec.storage import objectstore

MAX_LINE_BYTES = 8 << 20
# A quoted field may span at most this many physical lines; an opening quote that is not closed by then
# (or by the end of the file) is a broken line, not the start of a record that swallows the file.
MAX_RECORD_LINES = 64
OVERLONG_LINE = b"\x00momorec:overlong-line\x00"
UTF8_BOM = b"\xef\xbb\xbf"
_CHUNK = 1 << 20


def _zstd_open(raw: BinaryIO, path: str) -> BinaryIO:
    if importlib.util.find_spec("zstandard") is None:
        raise ValueError(f"{path}: a zstd-compressed input needs the `zstandard` package (pip install zstandard)")
    import zstandard

    return zstandard.open(raw, "rb")


# Each takes the raw stream (a local file or an object-store object) and the location, for messages.
_OPENERS = {
    ".gz": lambda raw, path: gzip.GzipFile(fileobj=raw, mode="rb"),
    ".bz2": lambda raw, path: bz2.BZ2File(raw, "rb"),
    ".xz": lambda raw, path: lzma.LZMAFile(raw, "rb"),
    ".zst": _zstd_open,
    ".zstd": _zstd_open,
}


def inner_name(path: str) -> str:
    """The file name without its compression extension: `a/events.jsonl.gz` -> `a/events.jsonl`."""
    stem, ext = os.path.splitext(path)
    return stem if ext.lower() in _OPENERS else path


def open_input(path: str) -> BinaryIO:
    """The file's decompressed bytes (a local path or an object-store URI)."""
    raw = objectstore.open_input(path)
    opener = _OPENERS.get(os.path.splitext(path)[1].lower())
    return _Closing(opener(raw, path), raw) if opener is not None else raw


class _Closing:
    """A decompressing stream that also closes the raw stream under it."""

    def __init__(self, stream: BinaryIO, raw: BinaryIO):
        self._stream, self._raw = stream, raw

    def __getattr__(self, attribute):
        return getattr(self._stream, attribute)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._raw.close()


def _rest_of_line(stream: BinaryIO) -> int:
    """Skip to just after the next newline (or the end), in bounded chunks; the bytes skipped."""
    skipped = 0
    while True:
        chunk = stream.readline(_CHUNK)
        skipped += len(chunk)
        if not chunk or chunk.endswith(b"\n"):
            return skipped


def _lines_from(
    stream: BinaryIO, number: int, position: int, stop: float, max_line_bytes: int
) -> Iterator[tuple[bytes, int]]:
    """The lines that start at or after `position` (the stream's offset) and before `stop`."""
    while position < stop:
        line = stream.readline(max_line_bytes + 1)
        if not line:
            return
        start, position = position, position + len(line)
        if len(line) > max_line_bytes and not line.endswith(b"\n"):
            position += _rest_of_line(stream)
            line = OVERLONG_LINE
        else:
            line = line[:-1] if line.endswith(b"\n") else line
            line = line[:-1] if line.endswith(b"\r") else line
        if start == 0 and line.startswith(UTF8_BOM):
            line = line[len(UTF8_BOM) :]
        yield line, number
        number += 1


def split_lines(stream: BinaryIO, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[bytes, int]]:
    """(line bytes without its ending, line number) for every physical line; no line after a final
    newline. An over-long line is yielded as OVERLONG_LINE."""
    return _lines_from(stream, 0, 0, math.inf, max_line_bytes)


# ---- byte ranges of a large plain file, read in parallel -------------------------------------------


def byte_ranges(size: int, range_bytes: int) -> list[tuple[int, int]]:
    """[start, end) ranges covering a file of `size` bytes."""
    return [(start, min(start + range_bytes, size)) for start in range(0, size, range_bytes)] or [(0, 0)]


def count_newlines(path: str, start: int, end: int) -> int:
    """How many b"\\n" bytes the file holds in [start, end)."""
    count = 0
    with objectstore.open_input(path) as fh:
        fh.seek(start)
        remaining = end - start
        while remaining > 0:
            chunk = fh.read(min(_CHUNK, remaining))
            if not chunk:
                break
            count += chunk.count(b"\n")
            remaining -= len(chunk)
    return count


def read_range(
    path: str, start: int, end: int, newlines_before: int, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[tuple[bytes, int]]:
    """The lines of an uncompressed file that start in [start, end), numbered as in read_lines:
    `newlines_before` is count_newlines(path, 0, start). A line that starts here and runs past `end` is
    read whole; the range after it skips it."""
    with objectstore.open_input(path) as fh:
        position, number = 0, 0
        if start > 0:
            fh.seek(start - 1)
            position = start - 1 + _rest_of_line(fh)  # the line holding byte start-1 belongs to a range before
            number = newlines_before + (1 if position - 1 >= start else 0)
        yield from _lines_from(fh, number, position, end, max_line_bytes)


# What a truncated or corrupt compressed stream raises (gzip: BadGzipFile is an OSError, EOFError when cut).
_BROKEN_STREAM = (OSError, EOFError, lzma.LZMAError, zlib.error)


def read_lines(path: str, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[bytes, int]]:
    """split_lines of a file, decompressed by its extension. A file that cannot be read to its end (a
    truncated or corrupt compressed stream) is an error naming the file and the last line read."""
    last = -1
    try:
        with open_input(path) as stream:
            for numbered in split_lines(stream, max_line_bytes):
                last = numbered[1]
                yield numbered
    except _BROKEN_STREAM as exc:
        where = f" after line {last}" if last >= 0 else ""
        raise ValueError(f"{path}: cannot be read{where}: {type(exc).__name__}: {exc}") from exc


def is_empty(path: str) -> bool:
    """True when the file holds no line at all (0 bytes, or a compressed stream of 0 bytes)."""
    if objectstore.size(path) == 0:
        return True
    try:
        with open_input(path) as stream:
            return not stream.read(1)
    except _BROKEN_STREAM as exc:
        raise ValueError(f"{path}: cannot be read: {type(exc).__name__}: {exc}") from exc


# ---- CSV records spanning lines -------------------------------------------------------------------

_START, _UNQUOTED, _QUOTED, _QUOTE_IN_QUOTED = range(4)
_QUOTE = ord('"')


def ends_in_open_quote(line: bytes, delimiter: bytes, inside: bool = False) -> bool:
    """Whether a CSV line leaves a quoted field open, under the rules of Python's csv module (default
    dialect, non-strict): a quote opens a field only at the field's start; inside it, "" is a literal
    quote and a lone quote closes it. `inside`: the line continues an open field. Works on bytes: the
    quote and the delimiter are ASCII, which never occurs inside a UTF-8 multi-byte sequence."""
    if not inside and b'"' not in line:
        return False
    state = _QUOTED if inside else _START
    sep = delimiter[0]
    for byte in line:
        if state == _QUOTED:
            state = _QUOTE_IN_QUOTED if byte == _QUOTE else _QUOTED
        elif state == _QUOTE_IN_QUOTED:
            state = _QUOTED if byte == _QUOTE else (_START if byte == sep else _UNQUOTED)
        elif state == _START:
            state = _QUOTED if byte == _QUOTE else (_START if byte == sep else _UNQUOTED)
        elif byte == sep:
            state = _START
    return state == _QUOTED


def _closing_length(buffer: list[tuple[bytes, int]], delimiter: bytes, more: Iterator, max_lines: int) -> int:
    """How many lines from buffer[0] make one record (pulling lines from `more` as needed); 0 when the
    quote opened on buffer[0] is not closed within max_lines lines, MAX_LINE_BYTES or the file."""
    inside = ends_in_open_quote(buffer[0][0], delimiter)
    count, size = 1, len(buffer[0][0])
    while inside:
        if count == len(buffer):
            nxt = next(more, None) if count < max_lines and size <= MAX_LINE_BYTES else None
            if nxt is None:
                return 0
            buffer.append(nxt)
        line = buffer[count][0]
        if line == OVERLONG_LINE:
            return 0
        inside = ends_in_open_quote(line, delimiter, inside=True)
        count, size = count + 1, size + len(line) + 1
    return count


def delimited_records(
    lines: Iterable[tuple[bytes, int]], delimiter: bytes, max_lines: int = MAX_RECORD_LINES
) -> Iterator[tuple[bytes, int]]:
    """Physical lines -> CSV/TSV records: lines joined with "\\n" while a quoted field is open. A quote
    that never closes leaves its first line alone as a record (the parser rejects it as
    malformed_line:unterminated_quote) and the lines after it are read afresh."""
    more = iter(lines)
    buffer: list[tuple[bytes, int]] = []
    while True:
        if not buffer:
            nxt = next(more, None)
            if nxt is None:
                return
            buffer.append(nxt)
        count = _closing_length(buffer, delimiter, more, max_lines)
        if count <= 1:
            yield buffer.pop(0)
            continue
        yield b"\n".join(line for line, _ in buffer[:count]), buffer[0][1]
        del buffer[:count]
