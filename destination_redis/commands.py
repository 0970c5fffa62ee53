"""Send a batch of commands in one write and read every reply: the hot path to Redis.

redis-py's Pipeline costs ~10 us per command in Python; packing with hiredis and reading the
replies straight off one pooled connection costs a fraction of that. A lost connection is retried
with backoff, resending the whole batch: most batches are idempotent (records written under ids
reserved before the write), so a retry never duplicates a record. A batch that is not (the
INCRBY reserving those ids; later RPUSH/XADD) passes `applied`, a check that tells after a lost
connection whether the server had run it, so it is resent only if it had not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import hiredis
from redis import exceptions as rex

from destination_redis.connection import RedisTarget, error_code
from destination_redis.errors import config_error, system_error, transient_error

logger = logging.getLogger("airbyte")

Command = Sequence[bytes | str | int]

# hiredis' type stub declares a one-element tuple; the function packs any number of arguments.
pack_command = cast(Callable[[tuple[bytes | str | int | float, ...]], bytes], hiredis.pack_command)

# After a lost connection: the replies of the batch if the server had run it, else None (resend).
Applied = Callable[[], list[Any] | None]

# Error codes after which the same write may succeed if retried (after a backoff).
RETRYABLE_CODES = frozenset({"LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN"})


class CommandRunner:
    """Runs batches of commands on one connection of the target's pool."""

    def __init__(self, target: RedisTarget, attempts: int = 5, backoff_s: float = 0.5) -> None:
        self._target = target
        self._attempts = attempts
        self._backoff_s = backoff_s

    def run(
        self,
        commands: Sequence[Command],
        tolerate_errors: bool = False,
        *,
        applied: Applied | None = None,
    ) -> list[Any]:
        """Replies in order; an error reply raises a traced error naming the code and the key.

        With `tolerate_errors`, error replies are returned as hiredis.ReplyError objects instead.

        `applied` makes a batch that is not idempotent safe to retry. A lost connection
        (ConnectionError, TimeoutError, OSError) leaves it unknown whether the server ran the
        batch: before resending, after the backoff, the runner calls `applied()`. It returns the
        batch's replies if the server had run it (they are returned as if read; nothing is
        resent), or None if it had not (the batch is resent). It runs its own commands through
        this runner, with the usual retries; an error it raises ends the run. A retryable error
        reply (LOADING, BUSY, ...) means the batch did not run: `applied` is not called then.
        """
        if not commands:
            return []
        payload = b"".join([pack_command(tuple(cmd)) for cmd in commands])
        return self.run_packed(payload, len(commands), commands.__getitem__, tolerate_errors, applied=applied)

    def run_packed(
        self,
        payload: bytes,
        count: int,
        describe: Callable[[int], Command],
        tolerate_errors: bool = False,
        *,
        applied: Applied | None = None,
    ) -> list[Any]:
        """Like `run` for commands already packed as RESP; `describe(i)` gives command i for errors.

        Hot paths pack their own commands (a bytes template is ~2x faster than pack_command).
        """
        for attempt in range(1, self._attempts + 1):
            check: Applied | None = None  # only after a lost connection: a retryable reply never ran
            try:
                replies = self._send(payload, count)
                if not tolerate_errors:
                    self._raise_first_error(replies, describe)
                return replies
            except (rex.ConnectionError, rex.TimeoutError, OSError) as exc:
                check = applied  # the batch may or may not have run
                reason = f"Redis connection lost ({type(exc).__name__})"
                failure = transient_error(
                    f"Lost the connection to Redis at {self._target.where} "
                    f"{self._attempts} times in a row ({type(exc).__name__}); giving up. "
                    f"Check the server's health and the network, then retry the sync.",
                    internal=str(exc),
                )
            except _RetryableReply as exc:
                reason, failure = exc.message, transient_error(exc.message)
            if attempt == self._attempts:
                raise failure from None
            delay = self._backoff_s * (2 ** (attempt - 1))
            action = "resending the batch" if check is None else "checking whether it ran, else resending"
            logger.warning(
                f"{reason}; {action} in {delay:.1f}s (attempt {attempt + 1} of {self._attempts})."
            )
            time.sleep(delay)
            if check is not None:
                ran = check()
                if ran is not None:
                    logger.info("Redis had run the batch before the connection was lost: not resent.")
                    return ran
        raise AssertionError("unreachable")  # pragma: no cover  # the loop returns or raises

    def _send(self, payload: bytes, count: int) -> list[Any]:
        pool = self._target.client.connection_pool
        conn = pool.get_connection()
        healthy = False
        try:
            conn.send_packed_command([payload], check_health=False)
            replies = _read_replies(conn, count)
            healthy = True
        finally:
            if not healthy:
                conn.disconnect()
            pool.release(conn)
        return replies

    def _raise_first_error(self, replies: list[Any], describe: Callable[[int], Command]) -> None:
        """Raise for the first error reply, also inside an EXEC's array of replies."""
        for index, reply in enumerate(replies):
            if isinstance(reply, list):
                reply = next((r for r in reply if isinstance(r, hiredis.ReplyError)), None)
            if isinstance(reply, hiredis.ReplyError):
                raise self._reply_error(reply, describe(index))

    def _reply_error(self, exc: BaseException, cmd: Command) -> Exception:
        code = error_code(exc)
        name = _text(cmd[0])
        key = _text(cmd[1]) if len(cmd) > 1 else ""
        where = self._target.where
        if code in RETRYABLE_CODES:
            return _RetryableReply(f"Redis at {where} answered {code} to {name} {key}: {exc}")
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
        # A hiredis ReplyError's text starts with its code (ERR, ...): quote it as it is.
        return system_error(f"Redis at {where} refused {name} on key '{key}': {exc}")


def _read_replies(conn: Any, count: int) -> list[Any]:
    """Read `count` replies with hiredis straight off the connection's socket.

    redis-py's read_response costs ~2 us a reply in Python layers; a hiredis Reader fed from the
    socket parses a whole batch in C. Error replies come back as hiredis.ReplyError objects.
    The socket (plain, TLS or tunnelled) is redis-py's, so its timeouts apply.
    """
    sock = conn._sock  # redis-py keeps the connected socket here; we only read from it
    reader = hiredis.Reader()
    replies: list[Any] = []
    gets = reader.gets
    append = replies.append
    while len(replies) < count:
        reply = gets()
        if reply is False:
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise rex.ConnectionError("Connection closed by server.")
            reader.feed(chunk)
            continue
        append(reply)
    return replies


class _RetryableReply(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _text(value: bytes | str | int) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
