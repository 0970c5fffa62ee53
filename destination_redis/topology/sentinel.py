"""Sentinel: the master the Sentinels name, found again after a failover. (Being built: issue 9.)"""

from __future__ import annotations

from destination_redis.config import RedisConfig, SentinelTopology
from destination_redis.connection.endpoint import Login
from destination_redis.connection.reach import Reach
from destination_redis.errors import ConnectStepError
from destination_redis.topology.base import Topology


def open_sentinel(config: RedisConfig, topology: SentinelTopology, reach: Reach, login: Login) -> Topology:
    raise ConnectStepError("Sentinel is not supported yet.", False)
