"""read_replies' `clean` flag: set only when no line of the batch's bytes starts with `-`, so
first_error may skip its scan; any doubt (a bulk string holding "\\n-") means a full scan."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import hiredis
import pytest

from destination_redis.commands import Replies, first_error, read_replies, without_last


class Conn:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock


@pytest.fixture
def pair() -> Iterator[tuple[Conn, socket.socket]]:
    ours, theirs = socket.socketpair()
    try:
        yield Conn(ours), theirs
    finally:
        ours.close()
        theirs.close()


def test_plain_replies_are_clean(pair: tuple[Conn, socket.socket]) -> None:
    conn, server = pair
    server.sendall(b":3\r\n+OK\r\n+QUEUED\r\n*2\r\n:1\r\n:3\r\n")
    replies = read_replies(conn, 4)
    assert replies == [3, b"OK", b"QUEUED", [1, 3]]
    assert replies.clean
    assert first_error(replies) is None


def test_an_error_inside_exec_is_found(pair: tuple[Conn, socket.socket]) -> None:
    conn, server = pair
    server.sendall(b"+OK\r\n+QUEUED\r\n*2\r\n:1\r\n-WRONGTYPE Operation against a key\r\n")
    replies = read_replies(conn, 3)
    assert not replies.clean
    error = first_error(replies)
    assert isinstance(error, hiredis.ReplyError)
    assert str(error).startswith("WRONGTYPE")


def test_an_error_first_in_the_chunk_is_found(pair: tuple[Conn, socket.socket]) -> None:
    conn, server = pair
    server.sendall(b"-OOM command not allowed\r\n:1\r\n")
    replies = read_replies(conn, 2)
    assert not replies.clean
    assert isinstance(first_error(replies), hiredis.ReplyError)


def test_a_bulk_string_that_looks_like_an_error_line_costs_a_scan_not_an_error(
    pair: tuple[Conn, socket.socket],
) -> None:
    conn, server = pair
    server.sendall(b"$9\r\na\n-b\r\nc-d\r\n:1\r\n")
    replies = read_replies(conn, 2)
    assert replies == [b"a\n-b\r\nc-d", 1]
    assert not replies.clean
    assert first_error(replies) is None


def test_a_slice_or_plain_list_is_always_scanned() -> None:
    error = hiredis.ReplyError("ERR x")
    marked = Replies([1, error])
    marked.clean = True  # a wrong flag on a Replies would hide it; a plain list never does
    assert first_error(list(marked)) is error
    assert first_error(marked[:2]) is error


def test_without_last_keeps_a_clean_mark_and_drops_the_confirmations() -> None:
    clean = Replies([1, 2, 3])
    clean.clean = True
    kept = without_last(clean, 1)
    assert kept == [1, 2]
    assert isinstance(kept, Replies)
    assert kept.clean
    doubtful = Replies([hiredis.ReplyError("ERR x"), 2, 3])
    assert not without_last(doubtful, 2).clean
    assert first_error(without_last(doubtful, 2)) is not None
    assert not without_last([1, 2], 1).clean  # a plain list carries no mark: scanned
