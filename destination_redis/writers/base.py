"""The small interface every cache type implements; the loader knows nothing else of Redis."""

from __future__ import annotations

from abc import ABC, abstractmethod

from destination_redis.catalog import Stream
from destination_redis.commands import CommandRunner
from destination_redis.connection import RedisTarget


class StreamWriter(ABC):
    """Owns one stream's keys: prepares them, buffers records, and writes them on flush."""

    def __init__(self, stream: Stream, target: RedisTarget, runner: CommandRunner) -> None:
        self.stream = stream
        self.target = target
        self.runner = runner

    @abstractmethod
    def start(self) -> None:
        """Runs once before any record of the sync (overwrite: clear the stream's keys)."""

    @abstractmethod
    def add(self, emitted_at: int, data: bytes) -> None:
        """Buffer one record; `data` is the record's data as compact JSON."""

    @abstractmethod
    def flush(self) -> int:
        """Write what is buffered and wait for Redis to acknowledge it; returns the count."""
