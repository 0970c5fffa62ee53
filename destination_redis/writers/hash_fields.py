"""`hash_fields`: one hash field per top-level property of `data`, plus the id and emitted_at.

Values: a string as its text, anything else as its JSON text as sent (numbers exact, true/false,
objects and arrays compact); a null property writes no field. Applications read single fields
(HGET K:1 email) without parsing JSON. A property named `_airbyte_ab_id` or `_airbyte_emitted_at`
is overwritten by ours (they come last in the HSET).

A vector property of the stream's search index (`vectors`: name -> dimensions) is stored as what
the query engine's VECTOR field reads from a hash: FLOAT32 little endian, 4 bytes per number
(`check_record` refuses a vector that is not `dims` numbers within float32 range).
"""

from __future__ import annotations

import msgspec

from destination_redis.commands import Command, pack_command
from destination_redis.writers.encoding import (
    F_EMITTED_AT,
    F_ID,
    Encoding,
    ProbeUnits,
    json_text,
    record_object,
)

_pack = pack_command


def _decode_str(text: bytes) -> str:
    return msgspec.json.decode(text, type=str)


def property_texts(data: bytes) -> list[tuple[str, bytes]]:
    """The record's top-level properties that become fields, each with its value's text (a null
    property writes no field)."""
    return [(name, json_text(text)) for name, raw in record_object(data).items()
            if (text := bytes(raw)) != b"null"]


class HashFieldsEncoding(Encoding):
    name = "hash_fields"

    def commands(self, key: bytes, record_id: int, emitted_at: int, data: bytes) -> list[Command]:
        command: list[bytes | int] = [self.server.hset_verb, key]
        for name, text in self._fields(data):
            command += [name.encode(), text]
        command += [F_ID, record_id, F_EMITTED_AT, emitted_at]
        return [tuple(command)]

    def pack_at(self, key: bytes, record_id: int, emitted_at: int, data: bytes) -> bytes:
        """The RESP of `commands(...)`, on the hot path: `property_texts` and `json_text` inlined
        (a string without escapes is the bytes between its quotes), packed by hiredis."""
        command: list[bytes | str | int] = [self.server.hset_verb, key]
        append = command.append
        if self._vectors is not None:  # kept out of the loop of streams without vectors
            for name, text in self._fields(data):
                append(name)
                append(text)
        else:
            for name, raw in record_object(data).items():
                text = bytes(raw)
                first = text[0]
                if first == 0x22:  # a string
                    text = text[1:-1] if b"\\" not in text else _decode_str(text).encode()
                elif first == 0x6E and text == b"null":
                    continue  # a null property writes no field
                append(name)
                append(text)
        append(F_ID)
        append(record_id)
        append(F_EMITTED_AT)
        append(emitted_at)
        return _pack(tuple(command))

    def _fields(self, data: bytes) -> list[tuple[str, bytes]]:
        """(property, value) of each field: `property_texts`, vectors as FLOAT32 bytes."""
        vectors = self._vectors
        if vectors is None:
            return property_texts(data)
        return [
            (name, vectors.pack(name, text) if name in vectors.dims else json_text(text))
            for name, raw in record_object(data).items() if (text := bytes(raw)) != b"null"
        ]

    def id_command(self, key: bytes) -> Command:
        return (b"HGET", key, F_ID)

    def probe(self, key: str) -> ProbeUnits:
        return [
            [(self.server.hset_verb.decode(), key, "_airbyte_ab_id", "1", "_airbyte_emitted_at", "0")],
            [("HGET", key, "_airbyte_ab_id")],
        ]
