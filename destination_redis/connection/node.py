"""One server we write to: its pool of connections, its facts, and where it is, for messages."""

from __future__ import annotations

from typing import Any

import redis

from destination_redis.connection.endpoint import Endpoint, Login, build_pool
from destination_redis.connection.probe import probe
from destination_redis.connection.reach import Reach
from destination_redis.connection.server import ServerInfo


class Node:
    """A server reached through its endpoint; connections come from its own pool."""

    def __init__(self, address: tuple[str, int], endpoint: Endpoint, server: ServerInfo,
                 pool: redis.ConnectionPool, ping_error: str | None = None) -> None:
        self.address = address  # as configured or announced: the node's identity
        self.endpoint = endpoint
        self.server = server
        self.pool = pool
        self.where = endpoint.where
        self.ping_error = ping_error  # PING's error answer when the node was opened (check reports it)

    def checkout(self) -> Any:
        """A connection of the pool, connected; give it back with `release`."""
        return self.pool.get_connection()

    def release(self, conn: Any, healthy: bool) -> None:
        if not healthy:
            conn.disconnect()
        self.pool.release(conn)

    def close(self) -> None:
        self.pool.disconnect()

    def __repr__(self) -> str:
        return f"Node({self.where})"


def open_node(reach: Reach, host: str, port: int, login: Login) -> Node:
    """Reach host:port, walk the connection steps (each failure names its step), build the pool
    (its first connection the probe's)."""
    endpoint = reach.endpoint(host, port)
    probed = probe(endpoint, login, reach.tls)
    pool = build_pool(endpoint, login, probed.client_name, first=probed.conn)
    return Node((host, port), endpoint, probed.server, pool, probed.ping_error)
