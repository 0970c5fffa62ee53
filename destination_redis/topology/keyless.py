"""Keyless commands (SCAN, DBSIZE, PING) on each primary, for deletions and check.

They go to a node, not to a key's owner: a node lost meanwhile (killed and failed over,
restarting) is not retried blindly; after a backoff the topology finds its nodes again, and the
command goes to whichever primaries there are then.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import hiredis

from destination_redis.commands import RETRYABLE_CODES, Command, pack_command, reply_error
from destination_redis.connection.node import Node
from destination_redis.connection.server import error_code
from destination_redis.errors import transient_error
from destination_redis.topology.base import Topology
from destination_redis.topology.units import command_text, exchange

logger = logging.getLogger("airbyte")


class Keyless:
    """Runs one command at a time on a given node, with the router's retry policy."""

    def __init__(self, topology: Topology, attempts: int, backoff_s: float, max_backoff_s: float,
                 refresh: Callable[[], None]) -> None:
        self.topology = topology
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._refresh = refresh

    def run_on(self, node: Node, command: Command, tolerate_errors: bool = False) -> Any:
        """One keyless command (PING, SCAN) on one node, retried after a lost connection."""
        losses = 0
        while True:
            try:
                return self._keyless(node, command, tolerate_errors)
            except _Lost as exc:
                losses += 1
                self._after_loss(losses, exc)

    def scan(self, pattern: bytes, count: int = 1000) -> Iterator[bytes]:
        """Every key matching the glob pattern on every primary, over SCAN cursors (never KEYS).

        A primary lost mid-scan (killed and failed over, restarting) is not retried blindly: after
        a backoff the nodes are found again, and every primary not yet scanned to the end (its
        replacement among them) is scanned from the start. A key may come twice (deleting it twice
        is harmless); none held by a primary is missed. A primary that became a replica while it
        was scanned still answers SCAN with the same keys.
        """
        finished: set[tuple[str, int]] = set()
        losses = 0
        while todo := [node for node in self.topology.primaries() if node.address not in finished]:
            for node in todo:
                try:
                    yield from self._scan_node(node, pattern, count)
                except _Lost as exc:
                    losses += 1
                    self._after_loss(losses, exc)
                    break
                finished.add(node.address)
                losses = 0

    def dbsize(self) -> int:
        """Keys in the database, summed over the primaries (asked again after a lost one)."""
        losses = 0
        while True:
            try:
                return sum(int(self._keyless(node, (b"DBSIZE",))) for node in self.topology.primaries())
            except _Lost as exc:
                losses += 1
                self._after_loss(losses, exc)

    def _scan_node(self, node: Node, pattern: bytes, count: int) -> Iterator[bytes]:
        cursor: bytes | int = 0
        while True:
            cursor, found = self._keyless(node, (b"SCAN", cursor, b"MATCH", pattern, b"COUNT", count))
            yield from found
            if int(cursor) == 0:
                return

    def _keyless(self, node: Node, command: Command, tolerate_errors: bool = False) -> Any:
        """One exchange; raises _Lost after a lost connection or a reply worth retrying (LOADING ...)."""
        outcome = exchange({node: (pack_command(tuple(command)), 1, [frozenset()])})[node]
        if isinstance(outcome, BaseException):
            reason = f"Lost the connection to Redis at {node.where} ({type(outcome).__name__})"
            raise _Lost(reason, transient_error(
                f"Lost the connection to Redis at {node.where} {self._attempts} times in a row "
                f"({type(outcome).__name__}); giving up. Check the server's health and the "
                f"network, then retry the sync.",
                internal=str(outcome),
            ))
        (reply,) = outcome
        if isinstance(reply, hiredis.ReplyError) and not tolerate_errors:
            if error_code(reply) in RETRYABLE_CODES:
                reason = f"Redis at {node.where} answered {error_code(reply)} to {command_text(command)}"
                raise _Lost(reason, reply_error(reply, command, node.where))
            raise reply_error(reply, command, node.where)
        return reply

    def _after_loss(self, losses: int, lost: _Lost) -> None:
        """The backoff after the `losses`-th loss in a row, then the nodes found again; raises
        the loss's error once the attempts are spent."""
        if losses >= self._attempts:
            raise lost.failure from None
        delay = min(self._backoff_s * (2 ** (losses - 1)), self._max_backoff_s)
        logger.warning(
            f"{lost.reason}; asking again in {delay:.1f}s (attempt {losses + 1} of {self._attempts})."
        )
        time.sleep(delay)
        self._refresh()


class _Lost(Exception):
    """A keyless command's node was lost (or answered LOADING, BUSY ...): retry after a backoff."""

    def __init__(self, reason: str, failure: Exception) -> None:
        super().__init__(reason)
        self.reason = reason
        self.failure = failure
