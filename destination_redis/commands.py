"""One node's pipeline: pack commands, write a batch in one send, read every reply with hiredis.

redis-py's Pipeline costs ~10 us per command in Python; packing with hiredis and reading the
replies straight off a pooled connection costs a fraction of that. Which node gets a batch, and
what happens after an error or a lost connection, is the router's (topology/router.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import hiredis
from redis import exceptions as rex

from destination_redis.connection.server import error_code
from destination_redis.errors import config_error, system_error

Command = Sequence[bytes | str | int]

# hiredis' type stub declares a one-element tuple; the function packs any number of arguments.
pack_command = cast(Callable[[tuple[bytes | str | int | float, ...]], bytes], hiredis.pack_command)

# Error codes after which the same write may succeed if retried (after a backoff).
RETRYABLE_CODES = frozenset({"LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN"})
# Lost connections: the batch may or may not have run.
CONNECTION_ERRORS = (rex.ConnectionError, rex.TimeoutError, OSError)


def send(conn: Any, payload: bytes) -> None:
    """Write a whole batch; replies are read later with `read_replies` (nodes work in parallel)."""
    conn.send_packed_command([payload], check_health=False)


class Replies(list[Any]):
    """A batch's replies, and whether the bytes they came in could hold an error at all.

    An error reply starts with `-` at the start of a line; `clean` is set when no line of the
    batch starts so (a bulk string holding "\\n-" only costs the full scan), so `first_error`
    need not look at each of a batch's 40,000 replies. A slice is a plain list: scanned.
    """

    clean = False


def read_replies(conn: Any, count: int) -> Replies:
    """Read `count` replies with hiredis straight off the connection's socket (nothing may follow
    them on it: what arrived after them is dropped with the reader; see ReplyReader)."""
    return ReplyReader().read(conn, count)


class ReplyReader:
    """Reads replies off one connection's socket, keeping bytes that arrived after them for the
    next read (several batches in flight on one connection: a chunk may hold the end of one
    batch's replies and the start of the next's).

    redis-py's read_response costs ~2 us a reply in Python layers; a hiredis Reader fed from the
    socket parses a whole batch in C. Error replies come back as hiredis.ReplyError objects.
    The socket (plain, TLS or tunnelled) is redis-py's, so its timeouts apply.
    """

    def __init__(self) -> None:
        self._reader = hiredis.Reader()
        self._tail_clean = True  # whether the last chunk fed (whose rest may be unread) had no "-" line

    def read(self, conn: Any, count: int) -> Replies:
        sock = conn._sock  # redis-py keeps the connected socket here; we only read from it
        if sock is None:
            raise rex.ConnectionError("Connection closed.")
        reader = self._reader
        replies = Replies()
        gets = reader.gets
        append = replies.append
        # Bytes left over from an earlier chunk were looked at with it.
        clean = self._tail_clean or not reader.has_data()
        while len(replies) < count:
            reply = gets()
            if reply is False:
                chunk = sock.recv(1 << 16)
                if not chunk:
                    raise rex.ConnectionError("Connection closed by server.")
                # A chunk may start mid-line: its first byte is looked at as if a line started there.
                self._tail_clean = not (chunk[:1] == b"-" or b"\n-" in chunk)
                clean = clean and self._tail_clean
                reader.feed(chunk)
                continue
            append(reply)
        replies.clean = clean
        return replies


def without_last(replies: list[Any], count: int) -> Replies:
    """All but the last `count` replies (a confirmation's, appended to a share), keeping a clean
    batch's mark: no line of the whole batch started with `-`, so none of the rest does."""
    kept = Replies(replies[:-count])
    kept.clean = replies.__class__ is Replies and replies.clean
    return kept


def first_error(replies: list[Any]) -> hiredis.ReplyError | None:
    """The first error reply, also inside an EXEC's array of replies."""
    if replies.__class__ is Replies and replies.clean:
        return None
    error_type = hiredis.ReplyError
    for reply in replies:  # a hot loop (every reply of a dedup batch): no generator per EXEC
        if isinstance(reply, list):
            for inner in reply:
                if isinstance(inner, error_type):
                    return inner
        elif isinstance(reply, error_type):
            return reply
    return None


def reply_error(exc: BaseException, cmd: Command, where: str) -> Exception:
    """The traced error for a final error reply, naming the cause, the command and the key."""
    code = error_code(exc)
    name = text(cmd[0])
    key = text(cmd[1]) if len(cmd) > 1 else ""
    if code == "OOM":
        return config_error(
            f"Redis at {where} is out of memory (maxmemory reached) and refused {name} on key "
            f"'{key}'. Raise maxmemory, free memory, or choose an eviction policy that can "
            f"evict keys; records before this batch were written, their states emitted."
        )
    if code == "WRONGTYPE":
        return config_error(
            f"Key '{key}' at {where} already exists with another data type, so {name} was "
            f"refused (WRONGTYPE). Delete or rename that key, or write this stream to another "
            f"namespace or database."
        )
    if code == "NOPERM":
        return config_error(
            f"The Redis user may not run {name} on key '{key}' at {where} (NOPERM). Grant the "
            f"ACL user this command and key pattern, or use another user."
        )
    if code == "READONLY":
        return config_error(
            f"Redis at {where} is a read-only replica and refused {name} on key '{key}'. "
            f"Point the connector at the primary."
        )
    if code in ("MOVED", "ASK", "CROSSSLOT"):
        return config_error(
            f"Redis at {where} is a node of a Redis Cluster and answered {code} to {name} on key "
            f"'{key}'. Set topology to cluster, with this host and port as a seed node."
        )
    # A hiredis ReplyError's text starts with its code (ERR, ...): quote it as it is.
    return system_error(f"Redis at {where} refused {name} on key '{key}': {exc}")


def first_command(part: bytes) -> Command:
    """The first command packed in `part`, for an error message: a hot path keeps packed bytes,
    not command tuples, for the batches it has in flight."""
    reader = hiredis.Reader()
    reader.feed(part)
    command = reader.gets()
    return tuple(command) if isinstance(command, list) else (b"?",)


def text(value: bytes | str | int) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
