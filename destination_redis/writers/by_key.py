"""Addressing by primary key (append_dedup): one key per primary key at `K:<pk>` (keys.dedup_key).

Each upsert is `MULTI; DEL K:<pk>; <the encoding's write>; [EXPIRE K:<pk> ttl]; EXEC`: an atomic
replace, so no field of an older version survives (nor a value of another type), and every
command of it touches one key (one hash slot on Redis Cluster). Ids still come from the counter
`K` and are stored in the value where the encoding can, which is how a refresh tells old
generations' keys apart. A record whose `_ab_cdc_deleted_at` is set deletes its key instead.
Both run in record order in one pipeline, so a later record for the same key wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import ClassVar, cast

import msgspec
from msgspec.structs import astuple

from destination_redis import keys
from destination_redis.catalog import Stream
from destination_redis.commands import Command
from destination_redis.keyspace import delete_keys
from destination_redis.topology.router import Router, Sent
from destination_redis.writers.base import Job, RecordError, StreamWriter
from destination_redis.writers.encoding import DEL, Encoding, json_text
from destination_redis.writers.expiry import Expiry
from destination_redis.writers.fields import fields_decoder, follow
from destination_redis.writers.ids import IdCounter

CDC_DELETED_AT = "_ab_cdc_deleted_at"

_Ops = list[tuple[bytes, int, bytes, bytes] | bytes]
# A batch packed: its units, their reply counts, their keys, and each upsert's id.
_Packed = tuple[list[bytes], int | list[int], list[bytes], Sequence[int]]


class KeyWriter(StreamWriter):
    def __init__(
        self, stream: Stream, router: Router, encoding: Encoding, ttl_seconds: int | None = None,
        key_prefix: str = "", expiry: Expiry | None = None,
    ) -> None:
        super().__init__(stream, router, ttl_seconds, key_prefix)
        self.encoding = encoding
        self.expiry = expiry or Expiry(None, None, ttl_seconds)
        self._ids = IdCounter(self.key, router)
        self._ops: _Ops = []  # (key, emitted_at, data, expire) or a key to delete
        self._upserts = 0
        self._taken = 0  # batches with upserts handed over (each reserves ids)
        # The record's top-level properties the key and its expiry need, then _ab_cdc_deleted_at:
        # decoded into a struct of just those (msgspec skips the other properties).
        paths = self.key_paths()
        names = list(dict.fromkeys([*(path[0] for path in paths), *self.expiry.fields, CDC_DELETED_AT]))
        self._paths = [(names.index(path[0]), path) for path in paths]
        self._expiry_at = [names.index(name) for name in self.expiry.fields]
        self._deleted_at = names.index(CDC_DELETED_AT)
        self._key_fields = fields_decoder(names)
        self._expires = self.expiry.active
        self._checks = bool(encoding.vectors)
        self._expire = self.expiry.pack

    def key_paths(self) -> Sequence[tuple[str, ...]]:
        """The paths of the values a record's key is made of: the primary key."""
        return self.stream.primary_key

    def address(self, found: tuple[msgspec.Raw, ...]) -> bytes:
        """The record's key from its decoded properties (`found`, indexed as `self._paths`):
        `K:<pk>`."""
        return keys.dedup_key(self.key, [self._component(found[top], path) for top, path in self._paths])

    def record_extra(self, key: bytes, record_id: int) -> bytes:
        """Commands written in the record's MULTI after its write and expiry (one reply each)."""
        return b""

    extra_replies: ClassVar[int] = 0  # how many commands `record_extra` packs

    def delete_unit(self, key: bytes) -> tuple[bytes, int]:
        """A CDC delete of `key`: its RESP and reply count."""
        return DEL % (len(key), key), 1

    def add(self, emitted_at: int, data: bytes) -> None:
        found = astuple(self._key_fields(data))  # only the fields the key needs are decoded
        key = self.address(found)
        if bytes(found[self._deleted_at]) != b"null":
            self._ops.append(key)
            return
        if self._checks:  # e.g. the lengths of vectors a search index needs
            self.encoding.check_record(data)
        expire = self._expire(key, [found[i] for i in self._expiry_at]) if self._expires else b""
        self._ops.append((key, emitted_at, data, expire))
        self._upserts += 1

    def _component(self, raw: msgspec.Raw, path: tuple[str, ...]) -> bytes:
        """One primary key value as UTF-8 text: a string as it is, anything else as its JSON
        text exactly as the source wrote it (no float rounding, integers of any size). `raw` is
        the value of the path's first property; the rest of the path is followed from there."""
        value = raw if len(path) == 1 else follow(raw, path)
        text = bytes(value) if value is not None else b"null"
        if text == b"null":
            raise RecordError(
                f"the primary key field '{'.'.join(path)}' of stream '{self.stream.label}' is missing "
                f"or null, so the record has no key to be deduplicated on"
            )
        return json_text(text)

    def take(self) -> tuple[int, Job | None]:
        """Packed here, on the loader's thread, under the ids the batch will most likely get
        (IdCounter.guess); the job reserves, checks and sends."""
        if not self._ops:
            return 0, None
        ops, upserts = self._ops, self._upserts
        self._ops, self._upserts = [], 0
        number = guess = 0
        packed: _Packed | None = None
        if upserts:
            self._taken += 1
            number = self._taken
            guess = self._ids.guess(number) or 0
            packed = self._pack(ops, guess) if guess else None
        return len(ops), partial(self._write, ops, upserts, number, guess, packed)

    def _write(
        self, ops: _Ops, upserts: int, number: int, guess: int, packed: _Packed | None
    ) -> Sent:
        first_id = self._ids.reserve(upserts, number) if upserts else 0
        if packed is None or first_id != guess:
            packed = self._pack(ops, first_id)
        parts, replies, unit_keys, ids = packed

        def describe(index: int) -> Command:  # the unit's main command, for error messages
            op = ops[index]
            if isinstance(op, bytes):
                return (b"DEL", op)
            key, emitted_at, data, _ = op
            return self.encoding.commands(key, ids[index], emitted_at, data)[0]

        return self.router.send_units(parts, replies, unit_keys.__getitem__, describe)

    def _pack(self, ops: _Ops, next_id: int) -> _Packed:
        """One unit per op, packed by hand (no command tuples): `MULTI; DEL; write; [expiry];
        [extra]; EXEC` under ids from `next_id` on, or a delete; every command of a unit touches
        its one key's hash slot."""
        pack_replace = self.encoding.pack_replace
        extra = self.extra_replies
        if not self.expiry.active and not extra and all(op.__class__ is tuple for op in ops):
            # the usual batch: upserts only, nothing but the replace
            upserts = cast(list[tuple[bytes, int, bytes, bytes]], ops)
            parts = [pack_replace(key, record_id, emitted_at, data)
                     for record_id, (key, emitted_at, data, _) in enumerate(upserts, next_id)]
            return parts, 4, [op[0] for op in upserts], range(next_id, next_id + len(ops))
        parts = []
        replies: list[int] = []
        unit_keys: list[bytes] = []
        ids: list[int] = []
        upsert_replies = 4 + extra + bool(self.expiry.active)
        record_extra = self.record_extra
        for op in ops:
            if isinstance(op, bytes):
                part, count = self.delete_unit(op)
                parts.append(part)
                replies.append(count)
                unit_keys.append(op)
                ids.append(0)
                continue
            key, emitted_at, data, expire = op
            # the expiry and the extra go inside the MULTI, before its EXEC
            parts.append(pack_replace(key, next_id, emitted_at, data, expire + record_extra(key, next_id)))
            replies.append(upsert_replies)
            unit_keys.append(key)
            ids.append(next_id)
            next_id += 1
        return parts, replies, unit_keys, ids

    def delete_older_than(self, first_kept_id: int | None, floor: int = 1) -> int:
        """Keys are named by primary key, so old ones are found by SCAN and their stored ids."""
        components = len(self.stream.primary_key)

        def choose(batch: list[bytes]) -> list[bytes]:
            owned = [key for key in batch if keys.is_dedup_key(self.key, key, components)]
            if first_kept_id is None:
                return owned
            # A key's generation is told by its record id: read them, skip keys that are not ours.
            replies = self.router.run([self._id_command(key) for key in owned], tolerate_errors=True)
            ids = [self.encoding.parse_id(reply) for reply in replies]
            return [
                key for key, record_id in zip(owned, ids, strict=True)
                if record_id is not None and record_id < first_kept_id
            ]

        return delete_keys(self.router, keys.dedup_scan_pattern(self.key), choose)

    def _id_command(self, key: bytes) -> Command:
        command = self.encoding.id_command(key)
        if command is None:  # make_writer refuses such a type with a refresh that deletes
            raise ValueError(f"cache type '{self.encoding.name}' stores no record id")
        return command
