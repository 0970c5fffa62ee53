"""Send a batch of commands in one write and read every reply: the hot path to Redis.

redis-py's Pipeline costs ~10 us per command in Python; packing with hiredis and reading the
replies straight off one pooled connection costs a fraction of that. A lost connection is retried
with backoff, resending the whole batch: callers only send idempotent batches (ids reserved
before the write), so a retry never duplicates a record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import hiredis
from redis import exceptions as rex

from destination_redis.connection import RedisTarget, error_code
from destination_redis.errors import config_error, system_error, transient_error

logger = logging.getLogger("airbyte")

Command = Sequence[bytes | str | int]

# Error codes after which the same write may succeed if retried (after a backoff).
RETRYABLE_CODES = frozenset({"LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN"})


class CommandRunner:
    """Runs batches of commands on one connection of the target's pool."""

    def __init__(self, target: RedisTarget, attempts: int = 5, backoff_s: float = 0.5) -> None:
        self._target = target
        self._attempts = attempts
        self._backoff_s = backoff_s

    def run(self, commands: Sequence[Command]) -> list[Any]:
        """Replies in order; an error reply raises a traced error naming the code and the key."""
        if not commands:
            return []
        payload = b"".join([hiredis.pack_command(tuple(cmd)) for cmd in commands])
        for attempt in range(1, self._attempts + 1):
            try:
                return self._send(payload, commands)
            except (rex.ConnectionError, rex.TimeoutError, OSError) as exc:
                retryable_reply = isinstance(exc, rex.BusyLoadingError)
                if attempt == self._attempts:
                    raise transient_error(
                        f"Lost the connection to Redis at {self._target.where} "
                        f"{self._attempts} times in a row ({type(exc).__name__}); giving up. "
                        f"Check the server's health and the network, then retry the sync.",
                        internal=str(exc),
                    ) from None
                what = "server loading" if retryable_reply else "connection lost"
                delay = self._backoff_s * (2 ** (attempt - 1))
                logger.warning(f"Redis {what} ({type(exc).__name__}); retry {attempt} in {delay:.1f}s")
                time.sleep(delay)
            except _RetryableReply as exc:
                if attempt == self._attempts:
                    raise transient_error(exc.message) from None
                time.sleep(self._backoff_s * (2 ** (attempt - 1)))
        raise AssertionError("unreachable")  # pragma: no cover  # the loop returns or raises

    def _send(self, payload: bytes, commands: Sequence[Command]) -> list[Any]:
        pool = self._target.client.connection_pool
        conn = pool.get_connection()
        healthy = False
        try:
            conn.send_packed_command([payload], check_health=False)
            replies: list[Any] = []
            first_error: tuple[BaseException, Command] | None = None
            for cmd in commands:
                try:
                    replies.append(conn.read_response())
                except rex.ResponseError as exc:
                    replies.append(exc)
                    if first_error is None:
                        first_error = (exc, cmd)
            healthy = True
        finally:
            if not healthy:
                conn.disconnect()
            pool.release(conn)
        if first_error is not None:
            raise self._reply_error(*first_error)
        return replies

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
        return system_error(f"Redis at {where} refused {name} on key '{key}': {code} {exc}")


class _RetryableReply(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _text(value: bytes | str | int) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
