"""sync.read_lines: stdin read in large chunks, handed on as the lines of a split on b"\\n"."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from destination_redis.sync import read_lines


class Chunks:
    """A pipe that returns the given pieces, one per read (as a pipe's reads may split lines)."""

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = list(pieces)

    def read1(self, size: int = -1, /) -> bytes:
        return self._pieces.pop(0) if self._pieces else b""

    def read(self, size: int = -1, /) -> bytes:
        raise AssertionError("read1 is there: read must not be used")


def split(data: bytes) -> list[bytes]:
    """What a line iterator gives, without the newlines."""
    return [line.removesuffix(b"\n") for line in io.BytesIO(data)]


def test_empty_input_gives_no_lines() -> None:
    assert list(read_lines(io.BytesIO(b""))) == []


def test_lines_come_without_their_newlines() -> None:
    assert list(read_lines(io.BytesIO(b'{"a":1}\n{"b":2}\n'))) == [b'{"a":1}', b'{"b":2}']


def test_a_last_line_without_newline_is_given_as_is() -> None:
    assert list(read_lines(io.BytesIO(b"one\ntwo"))) == [b"one", b"two"]


def test_blank_lines_are_kept() -> None:
    assert list(read_lines(io.BytesIO(b"\n\na\n\n"))) == [b"", b"", b"a", b""]


def test_lines_split_across_reads_are_joined() -> None:
    pieces = [b'{"type":"RE', b'CORD"}\n{"ty', b"pe", b'":"STATE"}\n', b"tail"]
    assert list(read_lines(Chunks(pieces))) == [b'{"type":"RECORD"}', b'{"type":"STATE"}', b"tail"]


def test_a_line_longer_than_many_chunks() -> None:
    line = b"x" * 10_000
    assert list(read_lines(io.BytesIO(line + b"\ny\n"), chunk=64)) == [line, b"y"]


def test_a_chunk_ending_exactly_at_a_newline() -> None:
    assert list(read_lines(Chunks([b"a\n", b"b\n", b"c"]))) == [b"a", b"b", b"c"]


def test_each_line_is_handed_on_as_soon_as_it_was_read() -> None:
    """The first line is given before the second read: a state is not held back for more input."""
    stream = Chunks([b"first\n", b"second\n"])
    lines = read_lines(stream)
    assert next(lines) == b"first"
    assert stream._pieces == [b"second\n"]


def test_a_stream_without_read1_is_read_with_read() -> None:
    class Plain:
        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def read(self, size: int = -1, /) -> bytes:
            return self._data.read(size)

    assert list(read_lines(Plain(b"a\nb"), chunk=1)) == [b"a", b"b"]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1 << 16])
def test_same_lines_as_a_split_on_newlines(chunk: int) -> None:
    data = b'{"a":"\xc3\xa9"}\n\n{"b":2}\r\n   \nlast'
    assert list(read_lines(io.BytesIO(data), chunk=chunk)) == split(data)


@given(st.binary(max_size=300), st.integers(min_value=1, max_value=40))
def test_any_input_any_chunk_size(data: bytes, chunk: int) -> None:
    assert list(read_lines(io.BytesIO(data), chunk=chunk)) == split(data)
