"""What the router needs of a topology: which node serves a key, every primary, and how to
find the nodes again after a failover or a resharding. Knows nothing of cache types."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from destination_redis.connection.node import Node
from destination_redis.connection.server import ServerInfo


class Topology(ABC):
    """Standalone, Sentinel or Cluster: how the configured Redis is laid out."""

    # Whether READONLY and lost connections mean "the primary moved": find it and resend.
    follows_failover: bool = False

    @property
    @abstractmethod
    def where(self) -> str:
        """For messages: the configured address, and the bastion when tunnelled."""

    @property
    @abstractmethod
    def server(self) -> ServerInfo:
        """The facts writers adapt to: of the oldest server when nodes differ."""

    @abstractmethod
    def group(self, units: Sequence[int], key_of: Callable[[int], bytes]) -> dict[Node, list[int]]:
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

    def close(self) -> None:
        for node in self.nodes():
            node.close()

    @abstractmethod
    def nodes(self) -> list[Node]:
        """Every node a connection was opened to (closed with the topology)."""
