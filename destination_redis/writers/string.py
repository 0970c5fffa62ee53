"""`string`: `SET K:<id> <data as compact JSON>`: the cheapest in memory, one GET to read.

The value is the record's data alone, so it carries no id: with append_dedup a refresh cannot
tell which keys older generations wrote, and make_writer refuses that combination (see
writers/__init__.py) rather than delete current data or keep old data silently.
"""

from __future__ import annotations

from destination_redis.commands import Command
from destination_redis.writers.encoding import Encoding, ProbeUnits


class StringEncoding(Encoding):
    name = "string"

    def commands(self, key: bytes, record_id: int, emitted_at: int, data: bytes) -> list[Command]:
        return [(b"SET", key, data)]

    def pack_at(self, key: bytes, record_id: int, emitted_at: int, data: bytes) -> bytes:
        return b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(data), data)

    def probe(self, key: str) -> ProbeUnits:
        return [[("SET", key, "{}")]]
