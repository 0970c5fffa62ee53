"""Addressing by id: counter `K`, one key per record at `K:<id>` (append and overwrite).

Ids are reserved per batch with one INCRBY (IdCounter, itself safe to retry) before the batch is
written, so a batch that is retried after a lost connection rewrites the same keys instead of
duplicating records. The value at each key is the Encoding's.
"""

from __future__ import annotations

from functools import partial

from destination_redis import keys
from destination_redis.catalog import Stream
from destination_redis.commands import Command
from destination_redis.keyspace import delete_keys, delete_named
from destination_redis.topology.router import Router
from destination_redis.writers.base import Job, StreamWriter
from destination_redis.writers.encoding import Encoding
from destination_redis.writers.ids import IdCounter


class IdWriter(StreamWriter):
    def __init__(
        self, stream: Stream, router: Router, encoding: Encoding, ttl_seconds: int | None = None,
        key_prefix: str = "",
    ) -> None:
        super().__init__(stream, router, ttl_seconds, key_prefix)
        self.encoding = encoding
        self._pack = encoding.packer(self.key, ttl_seconds)
        self._ids = IdCounter(self.key, router)
        self._emitted: list[int] = []
        self._data: list[bytes] = []
        self._taken = 0  # batches handed over

    def add(self, emitted_at: int, data: bytes) -> None:
        # The reader has checked that `data` is a JSON object: every encoding can store it.
        self._emitted.append(emitted_at)
        self._data.append(data)

    def take(self) -> tuple[int, Job | None]:
        """The batch is packed here, on the loader's thread, under the ids it will most likely
        get (IdCounter.guess): its job then only reserves, checks and sends."""
        count = len(self._data)
        if not count:
            return 0, None
        emitted, data = self._emitted, self._data
        self._emitted, self._data = [], []
        self._taken += 1
        guess = self._ids.guess(self._taken)
        parts = None if guess is None else list(map(self._pack, range(guess, guess + count), emitted, data))
        return count, partial(self._write, self._taken, guess, parts, emitted, data)

    def _write(
        self, number: int, guess: int | None, parts: list[bytes] | None, emitted: list[int], data: list[bytes]
    ) -> None:
        count = len(data)
        first_id = self._ids.reserve(count, number)
        if parts is None or first_id != guess:
            parts = list(map(self._pack, range(first_id, first_id + count), emitted, data))
        record_key = keys.record_key
        key = self.key

        def describe(index: int) -> Command:  # the write of record `index`, for error messages
            record_id = first_id + index
            at = record_key(key, record_id)
            return self.encoding.commands(at, record_id, emitted[index], data[index])[0]

        self.router.run_units(
            parts,
            2 if self.ttl_seconds else 1,  # the write (+ EXPIRE): one unit per record, one key
            lambda i: record_key(key, first_id + i),
            describe,
            want_replies=False,
        )

    def delete_older_than(self, first_kept_id: int | None, floor: int = 1) -> int:
        """Old records of a refresh are the ids [floor, first_kept_id): deleted by name when that
        range is smaller than the database (no SCAN over a big live cache); else, and for the
        legacy overwrite's "all of them", found by SCAN."""
        if first_kept_id is not None and first_kept_id - floor <= self.router.dbsize():
            return delete_named(
                self.router,
                (keys.record_key(self.key, record_id) for record_id in range(floor, first_kept_id)),
            )

        def choose(batch: list[bytes]) -> list[bytes]:
            prefix_len = len(self.key) + 1
            return [
                key for key in batch
                if keys.is_record_key(self.key, key)
                and (first_kept_id is None or int(key[prefix_len:]) < first_kept_id)
            ]

        return delete_keys(self.router, keys.record_scan_pattern(self.key), choose)

