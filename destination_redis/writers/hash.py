"""`hash` (the default, the seed's layout): one hash per record with three fields,
`_airbyte_ab_id`, `_airbyte_emitted_at` and `_airbyte_data` (the record as compact JSON).

The id layout's hot path: one bytes formatting per record from a RESP template with the stream
key baked in, instead of building and packing command tuples (see `pack_record`).
"""

from __future__ import annotations

from functools import partial

from destination_redis.commands import Command
from destination_redis.writers.encoding import (
    DEL,
    EXEC,
    F_DATA,
    F_EMITTED_AT,
    F_ID,
    MULTI,
    Encoding,
    Packer,
    ProbeUnits,
)


class HashEncoding(Encoding):
    name = "hash"

    def commands(self, key: bytes, record_id: int, emitted_at: int, data: bytes) -> list[Command]:
        return [(self.server.hset_verb, key, F_ID, record_id, F_EMITTED_AT, emitted_at, F_DATA, data)]

    def id_command(self, key: bytes) -> Command:
        return (b"HGET", key, F_ID)

    def pack_replace(
        self, key: bytes, record_id: int, emitted_at: int, data: bytes, tail: bytes = b""
    ) -> bytes:
        verb = self.server.hset_verb
        id_text = b"%d" % record_id
        emitted_text = b"%d" % emitted_at
        key_len = len(key)
        return _REPLACE % (
            key_len, key, len(verb), verb, key_len, key, len(id_text), id_text, len(emitted_text),
            emitted_text, len(data), data, tail,
        )

    def pack_at(self, key: bytes, record_id: int, emitted_at: int, data: bytes) -> bytes:
        verb = self.server.hset_verb
        id_text = b"%d" % record_id
        emitted_text = b"%d" % emitted_at
        return _HSET_AT % (
            len(verb), verb, len(key), key, len(id_text), id_text, len(emitted_text), emitted_text,
            len(data), data,
        )

    def probe(self, key: str) -> ProbeUnits:
        return [
            [(self.server.hset_verb.decode(), key, "_airbyte_ab_id", "1", "_airbyte_data", "{}")],
            [("HGET", key, "_airbyte_ab_id")],
        ]

    def packer(self, stream_key: bytes, ttl_seconds: int | None) -> Packer:
        template = hset_template(self.server.hset_verb, stream_key)
        key_len = len(stream_key) + 1
        if ttl_seconds:  # EXPIRE right after each HSET, in the same pipeline
            template += expire_template(stream_key, ttl_seconds)
            return partial(pack_record_with_expire, template, key_len)
        return partial(pack_record, template, key_len)  # partial: cheaper per call than a lambda


_HSET_AT = (
    b"*8\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$14\r\n_airbyte_ab_id\r\n$%d\r\n%s\r\n"
    b"$19\r\n_airbyte_emitted_at\r\n$%d\r\n%s\r\n$13\r\n_airbyte_data\r\n$%d\r\n%s\r\n"
)


_REPLACE = MULTI + DEL + _HSET_AT + b"%s" + EXEC  # one formatting for the whole unit (+ its tail)


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
