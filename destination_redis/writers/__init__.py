"""One writer module per cache type (and sync mode), all behind `StreamWriter`."""

from destination_redis.catalog import Stream
from destination_redis.config import RedisConfig
from destination_redis.topology.router import Router
from destination_redis.writers.base import RecordError, StreamWriter
from destination_redis.writers.hash import HashWriter
from destination_redis.writers.hash_dedup import HashDedupWriter


def make_writer(config: RedisConfig, stream: Stream, router: Router) -> StreamWriter:
    """The writer of the configured cache type for one stream."""
    ttl = config.ttl_seconds or None  # 0 means no TTL
    if config.cache_type == "hash":
        if stream.sync_mode == "append_dedup":
            return HashDedupWriter(stream, router, ttl)
        return HashWriter(stream, router, ttl)
    raise ValueError(f"unknown cache type {config.cache_type}")  # config validation forbids it


__all__ = ["HashDedupWriter", "HashWriter", "RecordError", "StreamWriter", "make_writer"]
