"""How one record's value is stored at its key: the only part that differs between the
per-record cache types. Where the key comes from (an id from the counter, or the primary key) is
the addressing's job (by_id.py, by_key.py), so a type is one small Encoding.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import msgspec

from destination_redis import keys
from destination_redis.commands import Command, pack_command
from destination_redis.connection.server import ServerInfo
from destination_redis.writers.base import RecordError
from destination_redis.writers.fields import object_fields
from destination_redis.writers.vectors import Vectors

F_ID = b"_airbyte_ab_id"
F_EMITTED_AT = b"_airbyte_emitted_at"
F_DATA = b"_airbyte_data"


MULTI = b"*1\r\n$5\r\nMULTI\r\n"
EXEC = b"*1\r\n$4\r\nEXEC\r\n"
DEL = b"*2\r\n$3\r\nDEL\r\n$%d\r\n%s\r\n"  # (len(key), key)
REPLACE = MULTI + DEL + b"%s%s" + EXEC  # (len(key), key, the write, what follows it in the MULTI)

# (record_id, emitted_at, data) -> the RESP of the record's write (+ EXPIRE): the hot path.
Packer = Callable[[int, int, bytes], bytes]
ProbeUnits = list[list[tuple[Any, ...]]]


class Encoding(ABC):
    """One per-record cache type: the commands that store a record's whole value at a key."""

    name: ClassVar[str]

    def __init__(self, server: ServerInfo, vectors: Mapping[str, int] | None = None) -> None:
        self.server = server
        # The top-level properties a search index reads as VECTOR fields: name -> dimensions
        # (only hash_fields and json are given any: the types a search index can cover).
        self.vectors: dict[str, int] = dict(vectors or {})
        self._vectors = Vectors(self.vectors) if self.vectors else None

    def check_record(self, data: bytes) -> None:
        """Raise RecordError if `data` cannot be stored as this type's search index expects
        (its vector properties); called for every record before it is buffered, only when
        `self.vectors` is non-empty."""
        if self._vectors is not None:
            self._vectors.check(data)

    @abstractmethod
    def commands(self, key: bytes, record_id: int, emitted_at: int, data: bytes) -> list[Command]:
        """Write the record at `key`, which holds nothing (a new id, or deleted first): one
        command (its reply is one of the unit's replies). `data` is the record's compact JSON
        object. Raise RecordError if it cannot be stored."""

    def pack_at(self, key: bytes, record_id: int, emitted_at: int, data: bytes) -> bytes:
        """RESP of `commands(...)`: generic packing; types on the hot path pack by hand."""
        commands = self.commands(key, record_id, emitted_at, data)
        return b"".join([pack_command(tuple(command)) for command in commands])

    def pack_replace(
        self, key: bytes, record_id: int, emitted_at: int, data: bytes, tail: bytes = b""
    ) -> bytes:
        """RESP of `MULTI; DEL key; <the write>; <tail>; EXEC`: the dedup layout's atomic replace
        (`tail`: packed commands of the same key's slot, e.g. its expiry)."""
        return REPLACE % (len(key), key, self.pack_at(key, record_id, emitted_at, data), tail)

    def id_command(self, key: bytes) -> Command | None:
        """The command whose reply is the record id stored at `key` (for the cleanup of old
        generations of primary-key keys); None when the value does not carry its id."""
        return None

    def parse_id(self, reply: Any) -> int | None:
        """The id in `id_command`'s reply; None when the key is not one of ours."""
        return int(reply) if isinstance(reply, bytes) and reply.isdigit() else None

    @abstractmethod
    def probe(self, key: str) -> ProbeUnits:
        """What `check` sends to prove the ACL user may run this type's commands, on `key`."""

    def packer(self, stream_key: bytes, ttl_seconds: int | None) -> Packer:
        """RESP of one record of the id layout at `K:<id>`: generic packing; hash packs faster."""
        pack_at = self.pack_at
        record_key = keys.record_key

        def pack(record_id: int, emitted_at: int, data: bytes) -> bytes:
            key = record_key(stream_key, record_id)
            packed = pack_at(key, record_id, emitted_at, data)
            return packed + expire(key, ttl_seconds) if ttl_seconds else packed

        return pack


def expire(key: bytes, ttl_seconds: int) -> bytes:
    """RESP of `EXPIRE key ttl`."""
    ttl = b"%d" % ttl_seconds
    return b"*3\r\n$6\r\nEXPIRE\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(ttl), ttl)


def json_text(text: bytes) -> bytes:
    """A JSON value as text: a string's own UTF-8 text (without escapes it is the bytes between
    its quotes, as they are), anything else its JSON text exactly as the source wrote it."""
    if text[:1] != b'"':
        return text
    return text[1:-1] if b"\\" not in text else msgspec.json.decode(text, type=str).encode()


def record_object(data: bytes) -> dict[str, msgspec.Raw]:
    """The record's top-level properties, raw; RecordError if `data` is no JSON object."""
    try:
        return object_fields(data)
    except msgspec.DecodeError:
        raise RecordError("the record's data is not a JSON object") from None
