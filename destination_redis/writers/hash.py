"""The seed's hash layout: counter `K`, one hash per record at `K:<id>` with three fields.

Ids are reserved per batch with one INCRBY before the batch is written, so a batch that is
retried after a lost connection rewrites the same keys instead of duplicating records.
"""

from __future__ import annotations

import logging
from functools import partial

from destination_redis import keys
from destination_redis.catalog import Stream
from destination_redis.commands import CommandRunner
from destination_redis.connection import RedisTarget
from destination_redis.keyspace import delete_keys
from destination_redis.writers.base import StreamWriter

logger = logging.getLogger("airbyte")

F_ID = b"_airbyte_ab_id"
F_EMITTED_AT = b"_airbyte_emitted_at"
F_DATA = b"_airbyte_data"


class HashWriter(StreamWriter):
    def __init__(self, stream: Stream, target: RedisTarget, runner: CommandRunner) -> None:
        super().__init__(stream, target, runner)
        self.key = keys.stream_key(self.stream.namespace, self.stream.name)
        # HSET with several fields needs Redis 4.0; HMSET does the same before it.
        self._set = b"HSET" if self.target.server.has_multi_field_hset else b"HMSET"
        self._emitted: list[int] = []
        self._data: list[bytes] = []

    def start(self) -> None:
        if self.stream.sync_mode != "overwrite":
            return
        deleted = delete_keys(
            self.target,
            self.runner,
            keys.record_scan_pattern(self.key),
            partial(keys.is_record_key, self.key),
        )
        self.runner.run([(b"DEL", self.key)])  # the counter restarts: ids run 1..N
        logger.info(f"Overwrite of stream '{self.stream.label}': deleted {deleted} existing records.")

    def add(self, emitted_at: int, data: bytes) -> None:
        self._emitted.append(emitted_at)
        self._data.append(data)

    def flush(self) -> int:
        count = len(self._data)
        if not count:
            return 0
        (last_id,) = self.runner.run([(b"INCRBY", self.key, count)])
        first_id = int(last_id) - count + 1
        stream_key = self.key
        hset = self._set
        commands = [
            (
                hset,
                b"%s:%d" % (stream_key, record_id),
                F_ID,
                b"%d" % record_id,
                F_EMITTED_AT,
                b"%d" % emitted_at,
                F_DATA,
                data,
            )
            for record_id, emitted_at, data in zip(
                range(first_id, first_id + count), self._emitted, self._data, strict=True
            )
        ]
        self.runner.run(commands)
        self._emitted = []
        self._data = []
        return count
