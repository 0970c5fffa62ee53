"""Airbyte destination that loads records into Redis."""

from destination_redis.destination import DestinationRedis

__all__ = ["DestinationRedis"]
