"""One Redis server: every command goes to it. READONLY there is the user's to fix."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import hiredis

from destination_redis.commands import CONNECTION_ERRORS
from destination_redis.config import RedisConfig
from destination_redis.connection.endpoint import Login
from destination_redis.connection.node import Node, open_node
from destination_redis.connection.reach import Reach
from destination_redis.connection.server import ServerInfo
from destination_redis.errors import step_failed
from destination_redis.topology.base import Topology, call

logger = logging.getLogger("airbyte")

ALL_SLOTS = 16384


class Standalone(Topology):
    def __init__(self, node: Node) -> None:
        self.node = node

    @property
    def where(self) -> str:
        return self.node.where

    @property
    def server(self) -> ServerInfo:
        return self.node.server

    def group(self, units: Sequence[int], key_of: Callable[[int], bytes]) -> dict[Node, Sequence[int]]:
        return {self.node: units}

    def primaries(self) -> list[Node]:
        return [self.node]

    def nodes(self) -> list[Node]:
        return [self.node]

    def describe(self) -> str:
        return f"{self.node.server.label} ({self.node.server.mode}) at {self.node.where}"


def open_standalone(config: RedisConfig, reach: Reach, login: Login) -> Standalone:
    """The configured server; a Sentinel or a node of a sharded cluster fails here, before
    anything is written, saying which topology to set (writes there would half succeed)."""
    node = open_node(reach, config.host, config.port, login)
    mode = node.server.mode
    if mode == "sentinel":
        node.close()
        raise step_failed(
            "INFO", node.where, f"{node.server.label} there is a Sentinel, not a data node",
            'Set topology to {"mode": "sentinel", "master_name": ...}, or point host and port at '
            "the primary.",
        )
    if mode == "cluster" and not _owns_every_slot(node):
        node.close()
        raise step_failed(
            "INFO", node.where, f"{node.server.label} there is a node of a Redis Cluster",
            'Set topology to {"mode": "cluster"} (host and port can stay: they seed the discovery).',
        )
    if mode == "cluster":
        logger.warning(
            f"{node.where} is a Redis Cluster node that serves every hash slot: written as one "
            f"server. Set topology to cluster so that a resharding or failover is followed."
        )
    return Standalone(node)


def _owns_every_slot(node: Node) -> bool:
    """Whether a cluster node serves all 16384 slots itself (a one-shard cluster, which 0.1.4's
    standalone client could write to)."""
    try:
        ranges = call(node, b"CLUSTER", b"SLOTS")
    except (*CONNECTION_ERRORS, hiredis.ReplyError):
        return False
    host, port = node.address
    owned = 0
    for entry in ranges:
        primary = entry[2]
        if int(primary[1]) == port and (primary[0] in (b"", b"?") or primary[0].decode() == host):
            owned += int(entry[1]) - int(entry[0]) + 1
    return owned == ALL_SLOTS
