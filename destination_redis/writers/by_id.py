"""Addressing by id: counter `K`, one key per record at `K:<id>` (append and overwrite).

Ids are reserved per batch with one INCRBY (IdCounter, itself safe to retry) before the batch is
written, so a batch that is retried after a lost connection rewrites the same keys instead of
duplicating records. The value at each key is the Encoding's.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from msgspec.structs import astuple

from destination_redis import keys
from destination_redis.catalog import Stream
from destination_redis.commands import Command, first_command
from destination_redis.keyspace import delete_keys, delete_named
from destination_redis.topology.router import Router, Sent
from destination_redis.writers.base import Job, StreamWriter
from destination_redis.writers.encoding import Encoding, Packer
from destination_redis.writers.expiry import Expiry
from destination_redis.writers.fields import fields_decoder
from destination_redis.writers.ids import IdCounter

_Column = list[int] | list[bytes]


class IdWriter(StreamWriter):
    def __init__(
        self, stream: Stream, router: Router, encoding: Encoding, ttl_seconds: int | None = None,
        key_prefix: str = "", expiry: Expiry | None = None,
    ) -> None:
        super().__init__(stream, router, ttl_seconds, key_prefix)
        self.encoding = encoding
        self._ids = IdCounter(self.key, router)
        self._emitted: list[int] = []
        self._data: list[bytes] = []
        self._taken = 0  # batches handed over
        self._checks = bool(encoding.vectors)
        self._expiries: list[bytes] = []  # per record: its expiry command, the key left open
        self._expires_from_data = expiry is not None and expiry.from_data
        if expiry is not None and self._expires_from_data:
            # Expiry from the data: the properties are read (and checked) as each record is added,
            # so a bad value names its line; the record's write is followed by its own command.
            self._resolve = expiry.resolve
            self._expiry_values = fields_decoder(list(expiry.fields))
            write = encoding.packer(self.key, None)
            self._pack: Callable[..., bytes] = partial(_with_expiry, write, self.key)
        else:
            self._pack = encoding.packer(self.key, ttl_seconds)  # EXPIRE baked in

    def add(self, emitted_at: int, data: bytes) -> None:
        # The reader has checked that `data` is a JSON object: every encoding can store it.
        if self._checks:  # e.g. the lengths of vectors a search index needs
            self.encoding.check_record(data)
        self._emitted.append(emitted_at)
        self._data.append(data)
        if self._expires_from_data:
            self._expiries.append(self._resolve(astuple(self._expiry_values(data))))

    def take(self) -> tuple[int, Job | None]:
        """The batch is packed here, on the loader's thread, under the ids it will most likely
        get (IdCounter.guess): its job then only reserves, checks and sends."""
        count = len(self._data)
        if not count:
            return 0, None
        # What `_pack` takes after the id, per record: emitted_at, data (and the expiry command).
        columns: list[_Column] = [self._emitted, self._data]
        if self._expires_from_data:
            columns.append(self._expiries)
            self._expiries = []
        self._emitted, self._data = [], []
        self._taken += 1
        guess = self._ids.guess(self._taken)
        parts = None if guess is None else list(map(self._pack, range(guess, guess + count), *columns))
        return count, partial(self._write, self._taken, guess, parts, columns)

    def _write(
        self, number: int, guess: int | None, parts: list[bytes] | None, columns: list[_Column]
    ) -> Sent:
        count = len(columns[1])
        first_id = self._ids.reserve(count, number)
        if parts is None or first_id != guess:
            parts = list(map(self._pack, range(first_id, first_id + count), *columns))
        columns.clear()  # the records are in `parts` now: not held twice while the batch is in flight
        record_key = keys.record_key
        key = self.key
        return self.router.send_units(
            parts,
            2 if self.ttl_seconds or self._expires_from_data else 1,  # the write (+ expiry), one key
            lambda i: record_key(key, first_id + i),
            partial(_first_command_of, parts),  # record i's write, for error messages
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


def _first_command_of(parts: list[bytes], index: int) -> Command:
    return first_command(parts[index])


def _with_expiry(
    write: Packer, stream_key: bytes, record_id: int, emitted_at: int, data: bytes, expiry: bytes
) -> bytes:
    """The record's write, then its expiry command completed with its key `K:<id>`."""
    key = keys.record_key(stream_key, record_id)
    return write(record_id, emitted_at, data) + expiry % (len(key), key)
