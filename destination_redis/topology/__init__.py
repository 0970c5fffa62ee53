"""The router and the topologies under it: which node gets each command.

standalone.py  one server
sentinel.py    the master the Sentinels name, found again after a failover
cluster.py     the slot map of a Redis Cluster, MOVED / ASK / failover followed
router.py      groups units by node, pipelines every node in parallel, retries
durability.py  WAIT / WAITAOF after each node's share, when the config asks for it
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from destination_redis.config import ClusterTopology, RedisConfig, SentinelTopology
from destination_redis.connection.endpoint import Login
from destination_redis.connection.reach import Reach, open_reach
from destination_redis.errors import ConnectStepError
from destination_redis.topology.base import Topology
from destination_redis.topology.durability import Durability
from destination_redis.topology.router import Router
from destination_redis.topology.standalone import open_standalone


def data_login(config: RedisConfig) -> Login:
    return Login(config.username, config.password, config.db)


def open_topology(config: RedisConfig, reach: Reach) -> Topology:
    """Reach the configured Redis and learn its layout; raises ConnectStepError naming the step."""
    topology = config.topology
    if isinstance(topology, ClusterTopology):
        from destination_redis.topology.cluster import open_cluster

        return open_cluster(config, topology, reach, data_login(config))
    if isinstance(topology, SentinelTopology):
        from destination_redis.topology.sentinel import open_sentinel

        return open_sentinel(config, topology, reach, data_login(config), Durability.of(config))
    return open_standalone(config, reach, data_login(config))


@contextmanager
def open_router(config: RedisConfig, attempts: int = 8) -> Iterator[Router]:
    """TLS context, SSH session, the nodes: the router over them, all closed however the block
    ends. A failing connection step is a traced error naming the step (config or transient), as
    is a durability option the server cannot honour (checked before anything is written)."""
    durability = Durability.of(config)
    with ExitStack() as stack:
        try:
            reach = stack.enter_context(open_reach(config))
            topology = open_topology(config, reach)
            stack.callback(topology.close)
            durability.require(topology)
        except ConnectStepError as exc:
            raise exc.as_traced() from None
        if topology.waits_for_replicas:  # Sentinel's own WAIT carries wait_for_replicas
            durability = durability.without_replicas()
        yield Router(topology, attempts=attempts, durability=durability)
