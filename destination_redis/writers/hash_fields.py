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

from collections.abc import Mapping

import msgspec

from destination_redis.commands import Command, pack_command
from destination_redis.connection.server import ServerInfo
from destination_redis.writers.encoding import (
    F_EMITTED_AT,
    F_ID,
    Encoding,
    ProbeUnits,
    Vectors,
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

    def __init__(self, server: ServerInfo, vectors: Mapping[str, int] | None = None) -> None:
        super().__init__(server, vectors)
        self._vectors = Vectors(self.vectors) if self.vectors else None

    def check_record(self, data: bytes) -> None:
        if self._vectors is not None:
            self._vectors.check(data)

    def commands(self, key: bytes, record_id: int, emitted_at: int, data: bytes) -> list[Command]:
        command: list[bytes | int] = [self.server.hset_verb, key]
        if self._vectors is None:
            for name, text in property_texts(data):
                command += [name.encode(), text]
        else:
            vectors = self._vectors
            for name, raw in record_object(data).items():
                text = bytes(raw)
                if text != b"null":
                    value = vectors.pack(name, text) if name in vectors.dims else json_text(text)
                    command += [name.encode(), value]
        command += [F_ID, record_id, F_EMITTED_AT, emitted_at]
        return [tuple(command)]

    def pack_at(self, key: bytes, record_id: int, emitted_at: int, data: bytes) -> bytes:
        """The RESP of `commands(...)`, on the hot path: `property_texts` and `json_text` inlined
        (a string without escapes is the bytes between its quotes), packed by hiredis."""
        if self._vectors is not None:
            return self._pack_with_vectors(key, record_id, emitted_at, data, self._vectors)
        command: list[bytes | str | int] = [self.server.hset_verb, key]
        append = command.append
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

    def _pack_with_vectors(
        self, key: bytes, record_id: int, emitted_at: int, data: bytes, vectors: Vectors
    ) -> bytes:
        """`pack_at` for a stream with vector properties (kept out of the loop without them)."""
        command: list[bytes | str | int] = [self.server.hset_verb, key]
        append = command.append
        dims = vectors.dims
        for name, raw in record_object(data).items():
            text = bytes(raw)
            first = text[0]
            if first == 0x6E and text == b"null":
                continue  # a null property writes no field (a null vector: no vector)
            if name in dims:
                text = vectors.pack(name, text)
            elif first == 0x22:  # a string
                text = text[1:-1] if b"\\" not in text else _decode_str(text).encode()
            append(name)
            append(text)
        append(F_ID)
        append(record_id)
        append(F_EMITTED_AT)
        append(emitted_at)
        return _pack(tuple(command))

    def id_command(self, key: bytes) -> Command:
        return (b"HGET", key, F_ID)

    def probe(self, key: str) -> ProbeUnits:
        return [
            [(self.server.hset_verb.decode(), key, "_airbyte_ab_id", "1", "_airbyte_emitted_at", "0")],
            [("HGET", key, "_airbyte_ab_id")],
        ]
