"""One Redis server: every command goes to it. READONLY there is the user's to fix."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from destination_redis.connection.node import Node
from destination_redis.connection.server import ServerInfo
from destination_redis.topology.base import Topology


class Standalone(Topology):
    def __init__(self, node: Node) -> None:
        self.node = node

    @property
    def where(self) -> str:
        return self.node.where

    @property
    def server(self) -> ServerInfo:
        return self.node.server

    def group(self, units: Sequence[int], key_of: Callable[[int], bytes]) -> dict[Node, list[int]]:
        return {self.node: list(units)}

    def primaries(self) -> list[Node]:
        return [self.node]

    def nodes(self) -> list[Node]:
        return [self.node]

    def describe(self) -> str:
        return f"{self.node.server.label} ({self.node.server.mode}) at {self.node.where}"
