"""One writer module per cache type, all behind `StreamWriter`."""

from destination_redis.catalog import Stream
from destination_redis.commands import CommandRunner
from destination_redis.config import RedisConfig
from destination_redis.connection import RedisTarget
from destination_redis.writers.base import StreamWriter
from destination_redis.writers.hash import HashWriter


def make_writer(
    config: RedisConfig, stream: Stream, target: RedisTarget, runner: CommandRunner
) -> StreamWriter:
    """The writer of the configured cache type for one stream."""
    if config.cache_type == "hash":
        return HashWriter(stream, target, runner)
    raise ValueError(f"unknown cache type {config.cache_type}")  # config validation forbids it


__all__ = ["HashWriter", "StreamWriter", "make_writer"]
