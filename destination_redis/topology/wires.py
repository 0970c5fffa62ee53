"""Batches in flight: one connection per node, kept while batches sent on it are unread.

Over a far link the round trip, not the CPU, bounds a sync that waits for each batch's replies
before it sends the next. A wire sends a batch at once and reads its replies later, in the order
sent, so several batches are on the way at the same time. One connection per node keeps them
in order: Redis runs a connection's commands in the order received, so a later record for the
same key still wins. Other commands (an id reservation, a retry) take other connections of the
node's pool meanwhile: they never queue behind the batches in flight.

A connection lost under batches in flight loses all of them: each is read as the error that
lost it, and retried by the router (router.land), in order.
"""

from __future__ import annotations

from typing import Any

from destination_redis.commands import CONNECTION_ERRORS, Replies, ReplyReader, send
from destination_redis.connection.node import Node


class Wire:
    """One node's connection for batches in flight: sends go out at once, replies are read in
    the order sent; the connection goes back to the pool once nothing sent on it is unread."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._conn: Any = None
        self._reader = ReplyReader()  # the connection's: bytes after one batch's replies are the next's
        self._unread = 0  # sends whose replies are still to be read
        self._lost: BaseException | None = None  # what broke the connection under unread sends

    def send(self, payload: bytes) -> None:
        """Send one share now; raises what lost the connection (this share was not sent whole)."""
        if self._lost is not None:
            raise self._lost  # earlier sends on it are lost too: this one is retried after them
        try:
            if self._conn is None:
                self._conn = self.node.checkout()
                self._reader = ReplyReader()
            send(self._conn, payload)
        except CONNECTION_ERRORS as exc:
            self._lose(exc)
            self._settle()
            raise
        self._unread += 1

    def read(self, count: int) -> Replies | BaseException:
        """The replies of the oldest unread send, or the exception that lost them."""
        self._unread -= 1
        outcome: Replies | BaseException
        if self._lost is not None:
            outcome = self._lost
        else:
            try:
                outcome = self._reader.read(self._conn, count)
            except CONNECTION_ERRORS as exc:
                self._lose(exc)
                outcome = exc
        self._settle()
        return outcome

    def abandon(self) -> None:
        """The sync is failing: drop the connection and whatever is unread on it."""
        if self._conn is not None:
            self.node.release(self._conn, healthy=False)
        self._conn, self._unread, self._lost = None, 0, None

    def _lose(self, exc: BaseException) -> None:
        self._lost = exc

    def _settle(self) -> None:
        """Nothing unread: give the connection back (dropped if lost), the next send takes one."""
        if self._unread > 0:
            return
        if self._conn is not None:
            self.node.release(self._conn, healthy=self._lost is None)
        self._conn, self._lost = None, None


class Wires:
    """The wire of every node batches were sent to."""

    def __init__(self) -> None:
        self._wires: dict[Node, Wire] = {}

    def __getitem__(self, node: Node) -> Wire:
        wire = self._wires.get(node)
        if wire is None:
            wire = self._wires[node] = Wire(node)
        return wire

    def abandon(self) -> None:
        for wire in self._wires.values():
            wire.abandon()
