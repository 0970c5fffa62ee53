"""What the router needs of a topology: which node serves a key, every primary, and how to
find the nodes again after a failover or a resharding. Knows nothing of cache types."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import hiredis

from destination_redis.commands import pack_command, read_replies, send
from destination_redis.connection.node import Node
from destination_redis.connection.server import ServerInfo


def call(node: Node, *command: bytes | str | int) -> Any:
    """One command on one node, for discovery (CLUSTER SLOTS, ROLE, SENTINEL ...): its reply, or
    the hiredis.ReplyError raised; a lost connection raises as it is (the caller tries another)."""
    conn = node.checkout()
    healthy = False
    try:
        send(conn, pack_command(tuple(command)))
        (reply,) = read_replies(conn, 1)
        healthy = True
    finally:
        node.release(conn, healthy)
    if isinstance(reply, hiredis.ReplyError):
        raise reply
    return reply


class Topology(ABC):
    """Standalone, Sentinel or Cluster: how the configured Redis is laid out."""

    # Whether READONLY and lost connections mean "the primary moved": find it and resend.
    follows_failover: bool = False
    # Whether `confirmation` already waits for the replicas wait_for_replicas asks for (Sentinel).
    waits_for_replicas: bool = False

    @property
    @abstractmethod
    def where(self) -> str:
        """For messages: the configured address, and the bastion when tunnelled."""

    @property
    @abstractmethod
    def server(self) -> ServerInfo:
        """The facts writers adapt to: of the oldest server when nodes differ."""

    @abstractmethod
    def group(self, units: Sequence[int], key_of: Callable[[int], bytes]) -> dict[Node, Sequence[int]]:
        """The node each unit (one key's commands) goes to, units kept in order per node."""

    @abstractmethod
    def primaries(self) -> list[Node]:
        """Every node that holds data (SCAN, DBSIZE)."""

    @abstractmethod
    def describe(self) -> str:
        """One line for check: "Redis 7.0.15 (standalone) at host:port", "Redis Cluster of ..."."""

    def refresh(self) -> None:  # noqa: B027  # optional: a standalone server has nothing to find
        """After a lost connection, READONLY or CLUSTERDOWN: find the nodes again (may raise
        ConnectStepError; the router retries)."""

    def moved(self, slot: int, host: str, port: int) -> None:
        """A MOVED reply: the slot lives at host:port now. Only a cluster redirects."""
        raise NotImplementedError

    def node_at(self, host: str, port: int) -> Node:
        """The node at an address a redirect names (ASK). Only a cluster redirects."""
        raise NotImplementedError

    def confirmation(self, node: Node) -> bytes:
        """A packed command the router sends after each round's share to `node`, whose reply
        `unconfirmed` judges (Sentinel: WAIT for a replica); b"" for none."""
        return b""

    def unconfirmed(self, node: Node, reply: Any) -> str | None:
        """Why the confirmation's reply does not confirm the round (then it is resent like after a
        lost connection), or None."""
        return None

    def close(self) -> None:
        for node in self.nodes():
            node.close()

    @abstractmethod
    def nodes(self) -> list[Node]:
        """Every node a connection was opened to (closed with the topology)."""
