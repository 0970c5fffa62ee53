"""A Redis Cluster in the shape of RedisServer, so the core suite runs once against a cluster.

The core tests (`@pytest.mark.core`) take `redis_server` and `redis_client`; on the matrix entry
"cluster" they get this: `config()` is a cluster config, `client()` a cluster client whose KEYS
and DBSIZE cover every primary (redis-py sends them to one node by default), so the same
assertions read the whole cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis.cluster

from integration_tests.cluster import RedisCluster


class WholeClusterClient(redis.cluster.RedisCluster):
    """redis-py's cluster client with KEYS and DBSIZE over every primary."""

    def keys(self, pattern: Any = "*", **kwargs: Any) -> Any:
        return super().keys(pattern, target_nodes=self.PRIMARIES, **kwargs)

    def dbsize(self, **kwargs: Any) -> Any:
        return super().dbsize(target_nodes=self.PRIMARIES, **kwargs)


class ClusterServer:
    """What the core tests use of RedisServer, for a 3-primary cluster."""

    password: str | None = None

    def __init__(self, replicas_per_primary: int = 1) -> None:
        self.cluster = RedisCluster(replicas_per_primary=replicas_per_primary)

    def start(self) -> ClusterServer:
        self.cluster.start()
        return self

    def stop(self) -> None:
        self.cluster.stop()

    @property
    def port(self) -> int:
        return self.cluster.nodes[0].port

    def config(self, **overrides: object) -> dict[str, object]:
        return self.cluster.config(**overrides)

    def client(self) -> WholeClusterClient:
        host, port = self.cluster.nodes[0].address
        return WholeClusterClient(host=host, port=port, protocol=2, socket_timeout=10)

    @contextmanager
    def flushed_client(self) -> Iterator[WholeClusterClient]:
        self.cluster.flushall()
        client = self.client()
        try:
            yield client
        finally:
            client.close()
