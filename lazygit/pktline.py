"""pkt-line framing (git's Documentation/technical/protocol-common.txt) for long-running hooks.

A packet is a 4-digit hex length (which counts the 4 length bytes) followed by the data;
``0000`` is a flush packet. The read-object hook speaks it on every git process start, so
this module is standard library only and does no work at import time.
"""

from __future__ import annotations

from lazygit.errors import CorruptDataError

# Imported on the read-object hook's start path: no `typing` at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

#: Largest whole packet git sends or accepts (LARGE_PACKET_MAX).
MAX_PKT = 65520
#: Largest payload of one packet.
MAX_DATA = MAX_PKT - 4
FLUSH = b"0000"

_HEX = frozenset(b"0123456789abcdefABCDEF")


def write_pkt(out: BinaryIO, data: bytes) -> None:
    """Write one data packet (not flushed to the OS: responses end with :func:`flush`)."""
    if not data:
        # protocol-common: an empty pkt-line ("0004") SHOULD NOT be sent; git reads it as
        # a flush in packet_read_line, so sending one would desynchronise the dialogue.
        raise ValueError("an empty pkt-line must not be sent (use flush() for 0000)")
    if len(data) > MAX_DATA:
        raise ValueError(f"pkt-line data of {len(data)} bytes exceeds {MAX_DATA}")
    out.write(b"%04x" % (len(data) + 4) + data)


def write_text(out: BinaryIO, line: str) -> None:
    """Write one text packet: ``line`` plus the LF that text packets carry."""
    if "\n" in line:
        raise ValueError("a text pkt-line holds exactly one line")
    write_pkt(out, line.encode("utf-8") + b"\n")


def flush(out: BinaryIO) -> None:
    """Write a flush packet and push everything buffered to the peer, who now waits for it."""
    out.write(FLUSH)
    out.flush()


def _read_exact(inp: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes; short only at end of input (pipes may return partial reads)."""
    buf = inp.read(size)
    if buf is None:
        raise CorruptDataError("pkt-line input is non-blocking; cannot read a packet")
    while len(buf) < size:
        more = inp.read(size - len(buf))
        if not more:
            break
        buf += more
    return buf


def read_pkt(inp: BinaryIO) -> bytes | None:
    """One packet's data, or None for a flush packet.

    Raises EOFError at a clean end of input (between packets) and CorruptDataError on a
    malformed length or when the input ends inside a packet.
    """
    head = _read_exact(inp, 4)
    if not head:
        raise EOFError("end of pkt-line input")
    if len(head) < 4:
        raise CorruptDataError(f"pkt-line input ended inside a length prefix ({head!r})")
    if not _HEX.issuperset(head):
        raise CorruptDataError(f"bad pkt-line length prefix {head!r} (expected 4 hex digits)")
    size = int(head, 16)
    if size == 0:
        return None
    if size < 4:
        # 0001 (delim) and 0002 (response end) belong to protocol v2, not to this protocol.
        raise CorruptDataError(f"bad pkt-line length {head.decode()} (1-3 are not data packets)")
    if size > MAX_PKT:
        raise CorruptDataError(f"pkt-line length {size} exceeds the maximum {MAX_PKT}")
    data = _read_exact(inp, size - 4)
    if len(data) != size - 4:
        raise CorruptDataError(
            f"pkt-line input ended inside a packet ({len(data)} of {size - 4} bytes)"
        )
    return data


def decode_text(data: bytes) -> str:
    """A text packet's line: UTF-8 without its trailing LF (tolerated when missing, as git does)."""
    if data.endswith(b"\n"):
        data = data[:-1]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptDataError(f"pkt-line text is not UTF-8: {data[:60]!r}") from None


def read_text(inp: BinaryIO) -> str | None:
    """One text packet's line, or None for a flush packet (EOFError at end of input)."""
    data = read_pkt(inp)
    return None if data is None else decode_text(data)


def read_text_until_flush(inp: BinaryIO) -> list[str]:
    """The text lines of one list up to its flush packet.

    EOFError if the input ends before the list starts (the peer closed between messages);
    CorruptDataError if it ends inside the list.
    """
    lines: list[str] = []
    while True:
        try:
            data = read_pkt(inp)
        except EOFError:
            if not lines:
                raise
            raise CorruptDataError(
                f"pkt-line input ended before the flush packet (after {lines[-1]!r})"
            ) from None
        if data is None:
            return lines
        lines.append(decode_text(data))


__all__ = [
    "FLUSH",
    "MAX_DATA",
    "MAX_PKT",
    "decode_text",
    "flush",
    "read_pkt",
    "read_text",
    "read_text_until_flush",
    "write_pkt",
    "write_text",
]
