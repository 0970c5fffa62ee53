"""How one record's value is stored at its key: the only part that differs between the
per-record cache types. Where the key comes from (an id from the counter, or the primary key) is
the addressing's job (by_id.py, by_key.py), so a type is one small Encoding.
"""

from __future__ import annotations

import struct
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import msgspec

from destination_redis import keys
from destination_redis.commands import Command, pack_command
from destination_redis.connection.server import ServerInfo
from destination_redis.writers.base import RecordError

F_ID = b"_airbyte_ab_id"
F_EMITTED_AT = b"_airbyte_emitted_at"
F_DATA = b"_airbyte_data"

# A JSON object's fields as raw JSON: only the top level is decoded, numbers keep their text.
object_fields = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode

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
        # The top-level properties a search index reads as VECTOR fields: name -> dimensions.
        self.vectors: dict[str, int] = dict(vectors or {})

    def check_record(self, data: bytes) -> None:
        """Raise RecordError if `data` cannot be stored as this type's search index expects
        (its vector properties); called for every record before it is buffered, only when
        `self.vectors` is non-empty. Types that store no vectors check nothing."""
        return None

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


# Vectors: the Redis query engine's VECTOR fields (FLOAT32) -------------------------------------

FLOAT32_MAX = 3.4028235e38  # a larger magnitude is refused (struct.pack would round or overflow)
# The largest float32 magnitudes, packed: only a packed vector holding one of them can hold a
# number between FLOAT32_MAX and the float32 overflow (which rounds to them).
_EDGES = (struct.pack("<f", FLOAT32_MAX), struct.pack("<f", -FLOAT32_MAX))

_floats = msgspec.json.Decoder(list[float]).decode  # ints too; not bools, strings, nulls
_elements = msgspec.json.Decoder(list[msgspec.Raw]).decode
_float = msgspec.json.Decoder(float).decode
_NOT_NUMBERS = {0x22: "a string", 0x6E: "null", 0x74: "true", 0x66: "false", 0x5B: "an array",
                0x7B: "an object"}  # by the first byte of a JSON value


class Vectors:
    """A stream's vector properties (top-level names -> dimensions): checks a record's vectors
    and packs one as FLOAT32 little endian (what a hash's VECTOR field holds). A vector that is
    absent or null is allowed (the record has no vector); anything else must be an array of
    exactly `dims` JSON numbers (ints too), each of magnitude at most FLOAT32_MAX."""

    def __init__(self, vectors: Mapping[str, int]) -> None:
        # fields.py imports this module: imported here, when a stream has vectors.
        from destination_redis.writers.fields import fields_decoder

        for name, dims in vectors.items():
            if dims < 1:
                raise ValueError(f"the vector field {name!r} needs at least 1 dimension, not {dims}")
        self.dims = dict(vectors)
        self.names = list(self.dims)
        self.structs = {name: struct.Struct(f"<{dims}f") for name, dims in self.dims.items()}
        self._decode = fields_decoder(self.names)  # reads only the vector properties
        self._attributes = [(f"f{index}", name) for index, name in enumerate(self.names)]

    def check(self, data: bytes) -> None:
        """RecordError naming the first vector property of `data` that is no valid vector."""
        try:
            fields = self._decode(data)
        except msgspec.DecodeError:
            raise RecordError("the record's data is not a JSON object") from None
        for attribute, name in self._attributes:
            text = bytes(getattr(fields, attribute))
            if text != b"null" and self.packed(name, text) is None:
                raise RecordError(self.problem(name, text))

    def pack(self, name: str, text: bytes) -> bytes:
        """The FLOAT32 LE bytes of the vector property `name` whose JSON text is `text` (not
        null); RecordError if it is no valid vector (normally refused by `check` before)."""
        packed = self.packed(name, text)
        if packed is None:
            raise RecordError(self.problem(name, text))
        return packed

    def packed(self, name: str, text: bytes) -> bytes | None:
        """The FLOAT32 LE bytes of a valid vector's JSON text; None if it is no valid vector.
        One decode and one pack (C); a Python comparison of each number only when the packed
        bytes hold float32's largest magnitude."""
        try:
            values = _floats(text)
            packed = self.structs[name].pack(*values)
        except (msgspec.ValidationError, struct.error, OverflowError):
            return None  # no array of numbers, not `dims` of them, or beyond float32
        if (_EDGES[0] in packed or _EDGES[1] in packed) and (
            max(values) > FLOAT32_MAX or min(values) < -FLOAT32_MAX
        ):
            return None  # within rounding of the largest float32, beyond FLOAT32_MAX
        return packed

    def problem(self, name: str, text: bytes) -> str:
        """What is wrong with the vector property `name` (JSON text `text`, `packed` refused it),
        for a RecordError. Each value first (the first one that is no number, or out of float32
        range), then the count; positions count from 0, as in `$.emb[2]`."""
        try:
            elements = _elements(text)
        except msgspec.ValidationError:
            return f"the vector field {name!r} is not an array of numbers"
        for position, element in enumerate(elements):
            raw = bytes(element)
            kind = _NOT_NUMBERS.get(raw[0])
            if kind is not None:
                return f"the vector field {name!r} holds {kind} at position {position}, not a number"
            try:
                in_range = abs(_float(raw)) <= FLOAT32_MAX
            except msgspec.ValidationError:  # beyond a double's range
                in_range = False
            if not in_range:
                return (
                    f"the vector field {name!r} holds a number out of float32 range at position "
                    f"{position} (largest magnitude {FLOAT32_MAX:g})"
                )
        count = f"{len(elements)} number" + ("" if len(elements) == 1 else "s")
        return f"the vector field {name!r} holds {count}; its search index expects {self.dims[name]}"
