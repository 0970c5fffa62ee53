"""`hash_fields`: one hash field per top-level property of `data`, plus the id and emitted_at.

Values: a string as its text, anything else as its JSON text as sent (numbers exact, true/false,
objects and arrays compact); a null property writes no field. Applications read single fields
(HGET K:1 email) without parsing JSON. A property named `_airbyte_ab_id` or `_airbyte_emitted_at`
is overwritten by ours (they come last in the HSET).
"""

from __future__ import annotations

import msgspec

from destination_redis.commands import Command
from destination_redis.writers.encoding import F_EMITTED_AT, F_ID, Encoding, ProbeUnits, record_object


class HashFieldsEncoding(Encoding):
    name = "hash_fields"

    def commands(self, key: bytes, record_id: int, emitted_at: int, data: bytes) -> list[Command]:
        command: list[bytes | int] = [self.server.hset_verb, key]
        for name, raw in record_object(data).items():
            text = bytes(raw)
            if text == b"null":
                continue
            if text[:1] == b'"':
                # A JSON string without escapes is its UTF-8 text between the quotes as it is.
                text = text[1:-1] if b"\\" not in text else msgspec.json.decode(text, type=str).encode()
            command += [name.encode(), text]
        command += [F_ID, record_id, F_EMITTED_AT, emitted_at]
        return [tuple(command)]

    def id_command(self, key: bytes) -> Command:
        return (b"HGET", key, F_ID)

    def probe(self, key: str) -> ProbeUnits:
        return [
            [(self.server.hset_verb.decode(), key, "_airbyte_ab_id", "1", "_airbyte_emitted_at", "0")],
            [("HGET", key, "_airbyte_ab_id")],
        ]
