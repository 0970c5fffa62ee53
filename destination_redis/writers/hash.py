"""The seed's hash layout: counter `K`, one hash per record at `K:<id>` with three fields.

Ids are reserved per batch with one INCRBY (IdCounter, itself safe to retry) before the batch is
written, so a batch that is retried after a lost connection rewrites the same keys instead of
duplicating records.
"""

from __future__ import annotations

from destination_redis import keys
from destination_redis.catalog import Stream
from destination_redis.keyspace import delete_keys, delete_named
from destination_redis.topology.router import Router
from destination_redis.writers.base import StreamWriter
from destination_redis.writers.ids import IdCounter

F_ID = b"_airbyte_ab_id"
F_EMITTED_AT = b"_airbyte_emitted_at"
F_DATA = b"_airbyte_data"


class HashWriter(StreamWriter):
    def __init__(self, stream: Stream, router: Router, ttl_seconds: int | None = None) -> None:
        super().__init__(stream, router, ttl_seconds)
        self.set_verb = self.router.server.hset_verb
        self._template = hset_template(self.set_verb, self.key)
        self._pack = pack_record
        if ttl_seconds:  # EXPIRE right after each HSET, in the same pipeline
            self._template += expire_template(self.key, ttl_seconds)
            self._pack = pack_record_with_expire
        self._ids = IdCounter(self.key, router)
        self._emitted: list[int] = []
        self._data: list[bytes] = []

    def add(self, emitted_at: int, data: bytes) -> None:
        self._emitted.append(emitted_at)
        self._data.append(data)

    def flush(self) -> int:
        count = len(self._data)
        if not count:
            return 0
        first_id = self._ids.reserve(count)
        template, key_len, pack = self._template, len(self.key) + 1, self._pack
        parts = [
            pack(template, key_len, record_id, emitted_at, data)
            for record_id, emitted_at, data in zip(
                range(first_id, first_id + count), self._emitted, self._data, strict=True
            )
        ]
        self.router.run_units(
            parts,
            2 if self.ttl_seconds else 1,  # HSET (+ EXPIRE): one unit per record, one key
            lambda i: keys.record_key(self.key, first_id + i),
            lambda i: self._command(first_id, i),
            want_replies=False,
        )
        self._emitted = []
        self._data = []
        return count

    def _command(self, first_id: int, index: int) -> tuple[bytes, ...]:
        """The HSET of record `index` of the batch being flushed, for error messages."""
        record_id = first_id + index
        return (
            self.set_verb, keys.record_key(self.key, record_id), F_ID, b"%d" % record_id,
            F_EMITTED_AT, b"%d" % self._emitted[index], F_DATA, self._data[index],
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


def hset_template(verb: bytes, stream_key: bytes) -> bytes:
    """RESP of one record's HSET/HMSET with the stream key baked in, for `pack_record`."""
    return (
        b"*8\r\n$%d\r\n%s\r\n$%%d\r\n" % (len(verb), verb)
        + stream_key.replace(b"%", b"%%")
        + b":%s\r\n$14\r\n_airbyte_ab_id\r\n$%d\r\n%s\r\n$19\r\n_airbyte_emitted_at\r\n"
        b"$%d\r\n%s\r\n$13\r\n_airbyte_data\r\n$%d\r\n%s\r\n"
    )


def expire_template(stream_key: bytes, ttl_seconds: int) -> bytes:
    """RESP of `EXPIRE K:<id> ttl`, appended to the HSET template (takes id length and id)."""
    ttl = b"%d" % ttl_seconds
    return (
        b"*3\r\n$6\r\nEXPIRE\r\n$%d\r\n" + stream_key.replace(b"%", b"%%")
        + b":%%s\r\n$%d\r\n%s\r\n" % (len(ttl), ttl)
    )


def pack_record(template: bytes, key_len: int, record_id: int, emitted_at: int, data: bytes) -> bytes:
    """The same bytes as hiredis.pack_command((verb, K:id, F_ID, id, ...)) (+ EXPIRE), faster.

    The hot path: one bytes formatting per record instead of building and packing tuples.
    `key_len` is len(stream key) + 1 for the ':'.
    """
    id_text = b"%d" % record_id
    emitted_text = b"%d" % emitted_at
    return template % (
        key_len + len(id_text), id_text, len(id_text), id_text,
        len(emitted_text), emitted_text, len(data), data,
    )


def pack_record_with_expire(
    template: bytes, key_len: int, record_id: int, emitted_at: int, data: bytes
) -> bytes:
    """`pack_record` for the HSET + EXPIRE template (the key appears once more)."""
    id_text = b"%d" % record_id
    emitted_text = b"%d" % emitted_at
    key_part = key_len + len(id_text)
    return template % (
        key_part, id_text, len(id_text), id_text,
        len(emitted_text), emitted_text, len(data), data, key_part, id_text,
    )
