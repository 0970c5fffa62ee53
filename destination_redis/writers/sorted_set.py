"""`sorted_set`: `ZADD K <score> <data JSON>`; applications rank and page it (ZRANGE, ZRANGEBYSCORE,
ZREVRANGE ... WITHSCORES). The score is the record's `emitted_at` (ms), or with `score_field` the
record's numeric top-level property of that name: a record without a number there is refused,
naming its line. Identical records are one member (with the later score). ZADD of the same
member and score changes nothing, so a resent batch is harmless as it is."""

from __future__ import annotations

from typing import Any

from destination_redis.commands import Command
from destination_redis.writers.base import RecordError
from destination_redis.writers.encoding import ProbeUnits, record_object
from destination_redis.writers.members import CHUNK, Members, chunks

_JSON_KINDS = {b'"': "a string", b"{": "an object", b"[": "an array", b"t": "a boolean", b"f": "a boolean"}


class SortedSetMembers(Members):
    name = "sorted_set"

    def member(self, emitted_at: int, data: bytes) -> tuple[bytes | int, bytes]:
        if self.score_field is None:
            return emitted_at, data
        raw = record_object(data).get(self.score_field)
        text = bytes(raw) if raw is not None else b"null"
        if text[:1] not in b"-0123456789" or not text:
            kind = "missing or null" if text == b"null" else _JSON_KINDS.get(text[:1], "not a number")
            raise RecordError(
                f"cache_type 'sorted_set' scores records by '{self.score_field}' (score_field), and "
                f"this record's '{self.score_field}' is {kind}, not a number"
            )
        # A double, as Redis keeps scores; repr is exact for it and Redis parses it (also inf).
        return repr(float(text)).encode(), data

    def commands(self, key: bytes, emitted: list[int], members: list[Any]) -> list[Command]:
        return [
            (b"ZADD", key, *[value for pair in part for value in pair])
            for part in chunks(members, CHUNK)
        ]

    def probe(self, key: str) -> ProbeUnits:
        return [[("ZADD", key, "0", "{}")]]
