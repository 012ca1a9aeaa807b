"""pkt-line framing: round trips and every malformed form git's packet reader rejects."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lazygit.errors import CorruptDataError
from lazygit.pktline import (
    MAX_DATA,
    flush,
    read_pkt,
    read_text,
    read_text_until_flush,
    write_pkt,
    write_text,
)

packets = st.lists(st.binary(min_size=1, max_size=300) | st.just(b"x" * MAX_DATA), max_size=8)
text_lines = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\n"),
    min_size=0,
    max_size=80,
)


@given(st.lists(packets, max_size=4))
def test_packets_and_flushes_round_trip(groups: list[list[bytes]]) -> None:
    out = io.BytesIO()
    for group in groups:
        for data in group:
            write_pkt(out, data)
        flush(out)
    inp = io.BytesIO(out.getvalue())
    for group in groups:
        assert [read_pkt(inp) for _ in group] == group
        assert read_pkt(inp) is None
    with pytest.raises(EOFError):
        read_pkt(inp)


@given(st.lists(st.lists(text_lines, max_size=5), max_size=4))
def test_text_lists_round_trip(lists: list[list[str]]) -> None:
    out = io.BytesIO()
    for lines in lists:
        for line in lines:
            write_text(out, line)
        flush(out)
    inp = io.BytesIO(out.getvalue())
    assert [read_text_until_flush(inp) for _ in lists] == lists


def test_wire_format_matches_protocol_common() -> None:
    out = io.BytesIO()
    write_text(out, "git-read-object-client")
    write_pkt(out, b"a\n")
    flush(out)
    assert out.getvalue() == b"001bgit-read-object-client\n0006a\n0000"


def test_text_without_lf_is_accepted_like_git() -> None:
    assert read_text(io.BytesIO(b"0008abcd")) == "abcd"
    assert read_text(io.BytesIO(b"0009abcd\n")) == "abcd"


def test_uppercase_hex_length_is_accepted() -> None:
    assert read_pkt(io.BytesIO(b"000Aabcdef")) == b"abcdef"


def test_empty_packet_reads_as_empty_data() -> None:
    assert read_pkt(io.BytesIO(b"0004")) == b""


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"00g5abc", "4 hex digits"),
        (b"+005a", "4 hex digits"),
        (b" 005a", "4 hex digits"),
        (b"0x05", "4 hex digits"),
        (b"0001", "1-3"),
        (b"0002", "1-3"),
        (b"0003", "1-3"),
        (b"fff1" + b"x" * 65517, "exceeds"),
        (b"ffff", "exceeds"),
        (b"00", "inside a length prefix"),
        (b"000aabc", "inside a packet (3 of 6 bytes)"),
    ],
)
def test_malformed_input_is_corrupt(wire: bytes, message: str) -> None:
    with pytest.raises(CorruptDataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_pkt(io.BytesIO(wire))


def test_largest_packet_is_accepted() -> None:
    data = b"y" * MAX_DATA
    assert read_pkt(io.BytesIO(b"fff0" + data)) == data


def test_eof_inside_a_list_is_corrupt_but_before_it_is_eof() -> None:
    with pytest.raises(EOFError):
        read_text_until_flush(io.BytesIO(b""))
    with pytest.raises(CorruptDataError, match="before the flush packet"):
        read_text_until_flush(io.BytesIO(b"000ccommand\n"))


def test_text_must_be_utf8() -> None:
    with pytest.raises(CorruptDataError, match="not UTF-8"):
        read_text(io.BytesIO(b"0006\xff\n"))


@pytest.mark.parametrize("data", [b"", b"z" * (MAX_DATA + 1)])
def test_writer_refuses_empty_and_oversized(data: bytes) -> None:
    with pytest.raises(ValueError):
        write_pkt(io.BytesIO(), data)


def test_writer_refuses_multi_line_text() -> None:
    with pytest.raises(ValueError):
        write_text(io.BytesIO(), "a\nb")


class _Trickle(io.RawIOBase):
    """A pipe that returns one byte per read, as a slow writer can."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk, self.data = self.data[:1], self.data[1:]
        return chunk


def test_short_reads_are_reassembled() -> None:
    inp = _Trickle(b"000ahello\n0000")
    assert read_text_until_flush(inp) == ["hello"]  # type: ignore[arg-type]
