"""append_dedup on the hash layout: one hash per primary key at `K:<pk>` (see keys.dedup_key).

Each upsert is `MULTI; DEL K:<pk>; HSET K:<pk> ...; [EXPIRE K:<pk> ttl]; EXEC`: an atomic
replace, so no field of an older version survives, and every command of it touches one key (one
hash slot on Redis Cluster). A record whose `_ab_cdc_deleted_at` is set deletes its key instead.
Both run in record order in one pipeline, so a later record for the same key wins.
"""

from __future__ import annotations

import msgspec

from destination_redis import keys
from destination_redis.catalog import Stream
from destination_redis.commands import Command
from destination_redis.keyspace import delete_keys
from destination_redis.topology.router import Router
from destination_redis.writers.base import RecordError, StreamWriter
from destination_redis.writers.hash import F_DATA, F_EMITTED_AT, F_ID
from destination_redis.writers.ids import IdCounter

CDC_DELETED_AT = "_ab_cdc_deleted_at"

# A JSON object's fields as raw JSON: only what the key needs is decoded, and numbers keep their text.
_fields = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode


class HashDedupWriter(StreamWriter):
    def __init__(self, stream: Stream, router: Router, ttl_seconds: int | None = None) -> None:
        super().__init__(stream, router, ttl_seconds)
        self.set_verb = self.router.server.hset_verb
        self._ids = IdCounter(self.key, router)
        self._ops: list[tuple[bytes, int, bytes] | bytes] = []  # (key, emitted_at, data) or a key to delete
        self._upserts = 0

    def add(self, emitted_at: int, data: bytes) -> None:
        record = _fields(data)
        key = keys.dedup_key(self.key, [self._component(record, path) for path in self.stream.primary_key])
        deleted_at = record.get(CDC_DELETED_AT)
        if deleted_at is not None and bytes(deleted_at) != b"null":
            self._ops.append(key)
        else:
            self._ops.append((key, emitted_at, data))
            self._upserts += 1

    def _component(self, record: dict[str, msgspec.Raw], path: tuple[str, ...]) -> str:
        """One primary key value as text: a string as it is, anything else as its JSON text
        exactly as the source wrote it (no float rounding, integers of any size)."""
        raw: msgspec.Raw | None = None
        fields: dict[str, msgspec.Raw] | None = record
        for part in path:
            raw = fields.get(part) if fields is not None else None
            fields = _fields(raw) if raw is not None and bytes(raw)[:1] == b"{" else None
        text = bytes(raw) if raw is not None else b"null"
        if text == b"null":
            raise RecordError(
                f"the primary key field '{'.'.join(path)}' of stream '{self.stream.label}' is missing "
                f"or null, so the record has no key to be deduplicated on"
            )
        if text[:1] == b'"':
            return str(msgspec.json.decode(text))
        return text.decode()

    def flush(self) -> int:
        if not self._ops:
            return 0
        next_id = self._ids.reserve(self._upserts) if self._upserts else 0
        commands: list[Command] = []
        for op in self._ops:
            if isinstance(op, bytes):
                commands.append((b"DEL", op))
                continue
            key, emitted_at, data = op
            commands += [
                (b"MULTI",),
                (b"DEL", key),
                (self.set_verb, key, F_ID, next_id, F_EMITTED_AT, emitted_at, F_DATA, data),
            ]
            if self.ttl_seconds:
                commands.append((b"EXPIRE", key, self.ttl_seconds))
            commands.append((b"EXEC",))
            next_id += 1
        self.router.run(commands)
        count = len(self._ops)
        self._ops = []
        self._upserts = 0
        return count

    def delete_older_than(self, first_kept_id: int | None, floor: int = 1) -> int:
        """Keys are named by primary key, so old ones are found by SCAN and their stored ids."""
        components = len(self.stream.primary_key)

        def choose(batch: list[bytes]) -> list[bytes]:
            owned = [key for key in batch if keys.is_dedup_key(self.key, key, components)]
            if first_kept_id is None:
                return owned
            # A key's generation is told by its record id: read them, skip keys that are not ours.
            ids = self.router.run([(b"HGET", key, F_ID) for key in owned], tolerate_errors=True)
            return [
                key for key, record_id in zip(owned, ids, strict=True)
                if isinstance(record_id, bytes) and record_id.isdigit() and int(record_id) < first_kept_id
            ]

        return delete_keys(self.router, keys.dedup_scan_pattern(self.key), choose)
