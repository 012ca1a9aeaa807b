"""HTTP byte-range wire formats: Content-Range and multipart/byteranges bodies.

Pure and standard library only, so it can be fuzzed.  The multipart parser streams: a
response to 100 ranges may be megabytes and arrives in arbitrary chunks.  It reads each part
body by the length its Content-Range states (never by searching for the boundary), so binary
pack data that happens to contain the boundary cannot confuse it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from lazygit.errors import CorruptDataError

#: At most 20 digits: int() refuses longer strings (> 4300 digits) with a ValueError, and no
#: file is 10^20 bytes long.
_CONTENT_RANGE = re.compile(
    r"bytes[ \t]+(\d{1,20})[ \t]*-[ \t]*(\d{1,20})[ \t]*/[ \t]*(\d{1,20}|\*)", re.ASCII
)
_BOUNDARY = re.compile(r'boundary[ \t]*=[ \t]*(?:"([^"]*)"|([^;, \t]+))', re.ASCII | re.I)

#: Bound on a preamble or a part's header block, so garbage cannot grow memory unboundedly.
_MAX_HEADER_BYTES = 64 * 1024


#: A part's headers exactly as nginx writes them (what the fast path of iter_multipart takes).
_NGINX_PART_HEADERS = re.compile(
    rb"Content-Type: [^\r\n]*\r\nContent-Range: bytes (\d{1,20})-(\d{1,20})/(\d{1,20})\r\n\r\n"
)


def parse_content_range(value: str) -> tuple[int, int, int | None]:
    """'bytes 0-9/100' -> (0, 10, 100) (end exclusive; total None for '*').
    Raises CorruptDataError on anything malformed."""
    m = _CONTENT_RANGE.fullmatch(value.strip())
    if not m:
        raise CorruptDataError(f"malformed Content-Range {value[:80]!r} from the server")
    total = None if m.group(3) == "*" else int(m.group(3))
    first, end = _checked_range(int(m.group(1)), int(m.group(2)), total, value)
    return first, end, total


def _checked_range(first: int, last: int, total: int | None, text: str = "") -> tuple[int, int]:
    """(first, last + 1) of a Content-Range that can be; CorruptDataError otherwise."""
    if last < first or (total is not None and last >= total):
        shown = text or f"bytes {first}-{last}/{total}"
        raise CorruptDataError(f"impossible Content-Range {shown[:80]!r} from the server")
    return first, last + 1


def multipart_boundary(content_type: str) -> bytes | None:
    """The boundary of 'multipart/byteranges; boundary=...', else None."""
    media, _, params = content_type.partition(";")
    if media.strip().lower() != "multipart/byteranges":
        return None
    m = _BOUNDARY.search(params)
    if not m:
        return None
    boundary = m.group(1) if m.group(1) is not None else m.group(2)
    if not boundary:
        return None
    try:
        return boundary.encode("ascii")
    except UnicodeEncodeError:
        return None


class _Reader:
    """A pull buffer over an iterator of chunks (consumed prefix dropped lazily)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self._buf = bytearray()
        self._pos = 0
        self.eof = False

    def _fill(self) -> bool:
        """Pull one more non-empty chunk; False at end of stream."""
        while not self.eof:
            try:
                chunk = next(self._it)
            except StopIteration:
                self.eof = True
                return False
            if chunk:
                if self._pos > 1 << 16 and self._pos * 2 > len(self._buf):
                    del self._buf[: self._pos]
                    self._pos = 0
                self._buf += chunk
                return True
        return False

    def line(self, limit: int) -> bytes | None:
        """The next line including its b'\\n' (or the rest at EOF); None at EOF."""
        searched = 0  # bytes after _pos known to hold no newline (_fill may compact _buf)
        while True:
            i = self._buf.find(b"\n", self._pos + searched)
            if i >= 0:
                out = bytes(self._buf[self._pos : i + 1])
                self._pos = i + 1
                return out
            searched = len(self._buf) - self._pos
            if len(self._buf) - self._pos > limit:
                raise CorruptDataError("multipart/byteranges body: header line too long")
            if not self._fill():
                if self._pos == len(self._buf):
                    return None
                out = bytes(self._buf[self._pos :])
                self._pos = len(self._buf)
                return out

    def match(self, pattern: re.Pattern[bytes]) -> re.Match[bytes] | None:
        """Consume and return a match of ``pattern`` at the read position within the bytes
        already buffered, else None (nothing consumed)."""
        m = pattern.match(self._buf, self._pos)
        if m is not None:
            self._pos = m.end()
        return m

    def skip(self, prefix: bytes) -> bool:
        """Consume ``prefix`` if the bytes already buffered start with it."""
        if self._buf.startswith(prefix, self._pos):
            self._pos += len(prefix)
            return True
        return False

    def exactly(self, n: int) -> bytes:
        """The next n bytes; CorruptDataError if the stream ends first."""
        while len(self._buf) - self._pos < n:
            if not self._fill():
                raise CorruptDataError("multipart/byteranges body ended inside a part")
        out = bytes(self._buf[self._pos : self._pos + n])
        self._pos += n
        return out


def _after_delimiter(rest: bytes) -> bool:
    """Classify the rest of a delimiter line: True if it closes the body."""
    if rest.startswith(b"--"):
        return True
    if rest.strip(b" \t\r\n"):
        raise CorruptDataError("multipart/byteranges body: garbage after a boundary")
    return False


def iter_multipart(chunks: Iterable[bytes], boundary: bytes) -> Iterator[tuple[int, int, bytes]]:
    """Parse a multipart/byteranges body streamed as chunks; yield (start, end_excl, data)
    per part, in the order sent. Reads each part by its Content-Range length (binary safe).
    Raises CorruptDataError on a malformed body."""
    if not boundary:
        raise CorruptDataError("multipart/byteranges response without a boundary")
    delim = b"--" + boundary
    reader = _Reader(chunks)
    # Preamble: skip lines until the first delimiter line.
    skipped = 0
    while True:
        line = reader.line(_MAX_HEADER_BYTES)
        if line is None:
            raise CorruptDataError("multipart/byteranges body has no parts")
        if line.startswith(delim):
            closing = _after_delimiter(line[len(delim) :])
            break
        skipped += len(line)
        if skipped > _MAX_HEADER_BYTES:
            raise CorruptDataError("multipart/byteranges body: no boundary in the preamble")
    # nginx's part headers and delimiters, matched whole in the bytes at hand (a response to
    # 100 small ranges spent most of its parsing in the line-by-line loop that follows,
    # which takes every other shape, and this one when it straddles a chunk).
    fast_delim = b"\r\n" + delim + b"\r\n"
    while not closing:
        m = reader.match(_NGINX_PART_HEADERS)
        if m is not None:
            start, end = _checked_range(int(m.group(1)), int(m.group(2)), int(m.group(3)))
            yield start, end, reader.exactly(end - start)
            if not reader.skip(fast_delim):
                closing = _next_delimiter(reader, delim)
            continue
        content_range: str | None = None
        header_bytes = 0
        while True:
            line = reader.line(_MAX_HEADER_BYTES)
            if line is None:
                raise CorruptDataError("multipart/byteranges body ended inside part headers")
            header_bytes += len(line)
            if header_bytes > _MAX_HEADER_BYTES:
                raise CorruptDataError("multipart/byteranges body: part headers too long")
            text = line.rstrip(b"\r\n")
            if not text.strip():
                break
            name, sep, value = text.partition(b":")
            if not sep:
                raise CorruptDataError("multipart/byteranges body: malformed part header")
            if name.strip().lower() == b"content-range":
                content_range = value.decode("latin-1")
        if content_range is None:
            raise CorruptDataError("multipart/byteranges part without Content-Range")
        start, end, _total = parse_content_range(content_range)
        data = reader.exactly(end - start)
        yield start, end, data
        closing = _next_delimiter(reader, delim)


def _next_delimiter(reader: _Reader, delim: bytes) -> bool:
    """Read the delimiter line after a part body; True if it closes the body."""
    # The CRLF that ends a body belongs to the next delimiter; tolerate LF or nothing.
    line = reader.line(_MAX_HEADER_BYTES)
    if line is not None and not line.strip(b"\r\n"):
        line = reader.line(_MAX_HEADER_BYTES)
    if line is None:
        raise CorruptDataError("multipart/byteranges body ended without its closing boundary")
    if not line.startswith(delim):
        raise CorruptDataError("multipart/byteranges body: part longer than its Content-Range")
    return _after_delimiter(line[len(delim) :])
