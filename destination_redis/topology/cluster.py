"""Redis Cluster: the slot map, MOVED / ASK, failovers. (Being built: issue 9.)"""

from __future__ import annotations

from destination_redis.config import ClusterTopology, RedisConfig
from destination_redis.connection.endpoint import Login
from destination_redis.connection.reach import Reach
from destination_redis.errors import ConnectStepError
from destination_redis.topology.base import Topology


def open_cluster(config: RedisConfig, topology: ClusterTopology, reach: Reach, login: Login) -> Topology:
    raise ConnectStepError("Redis Cluster is not supported yet.", False)
