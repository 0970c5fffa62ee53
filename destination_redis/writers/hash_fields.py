"""`hash_fields`: one hash field per top-level property of `data`, plus the id and emitted_at.

Values: a string as its text, anything else as its JSON text as sent (numbers exact, true/false,
objects and arrays compact); a null property writes no field. Applications read single fields
(HGET K:1 email) without parsing JSON. A property named `_airbyte_ab_id` or `_airbyte_emitted_at`
is overwritten by ours (they come last in the HSET).
"""

from __future__ import annotations

from destination_redis.commands import Command
from destination_redis.connection.server import ServerInfo
from destination_redis.writers.encoding import (
    F_EMITTED_AT,
    F_ID,
    Encoding,
    ProbeUnits,
    json_text,
    record_object,
)

# The id and emitted_at fields that end every record's HSET: (len, id, len, emitted_at).
_TAIL = b"$14\r\n_airbyte_ab_id\r\n$%d\r\n%s\r\n$19\r\n_airbyte_emitted_at\r\n$%d\r\n%s\r\n"


def property_texts(data: bytes) -> list[tuple[str, bytes]]:
    """The record's top-level properties that become fields, each with its value's text (a null
    property writes no field)."""
    return [(name, json_text(text)) for name, raw in record_object(data).items()
            if (text := bytes(raw)) != b"null"]


class HashFieldsEncoding(Encoding):
    name = "hash_fields"

    def __init__(self, server: ServerInfo) -> None:
        super().__init__(server)
        self._names: dict[str, bytes] = {}  # property name -> its RESP bulk string

    def commands(self, key: bytes, record_id: int, emitted_at: int, data: bytes) -> list[Command]:
        command: list[bytes | int] = [self.server.hset_verb, key]
        for name, text in property_texts(data):
            command += [name.encode(), text]
        command += [F_ID, record_id, F_EMITTED_AT, emitted_at]
        return [tuple(command)]

    def pack_at(self, key: bytes, record_id: int, emitted_at: int, data: bytes) -> bytes:
        """The RESP of `commands(...)`, built in one pass (no tuple, no generic packing): each
        property name's bulk string is made once per sync and reused."""
        names = self._names
        parts: list[bytes] = []
        for name, text in property_texts(data):
            bulk = names.get(name)
            if bulk is None:
                encoded = name.encode()
                bulk = names[name] = b"$%d\r\n%s\r\n" % (len(encoded), encoded)
            parts.append(bulk)
            parts.append(b"$%d\r\n%s\r\n" % (len(text), text))
        verb = self.server.hset_verb
        id_text = b"%d" % record_id
        emitted_text = b"%d" % emitted_at
        head = b"*%d\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(parts) + 6, len(verb), verb, len(key), key)
        return head + b"".join(parts) + _TAIL % (len(id_text), id_text, len(emitted_text), emitted_text)

    def id_command(self, key: bytes) -> Command:
        return (b"HGET", key, F_ID)

    def probe(self, key: str) -> ProbeUnits:
        return [
            [(self.server.hset_verb.decode(), key, "_airbyte_ab_id", "1", "_airbyte_emitted_at", "0")],
            [("HGET", key, "_airbyte_ab_id")],
        ]
