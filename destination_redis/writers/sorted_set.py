"""`sorted_set`: `ZADD K <score> <data JSON>`; applications rank and page it (ZRANGE, ZRANGEBYSCORE,
ZREVRANGE ... WITHSCORES). The score is the record's `emitted_at` (ms), or with `score_field` the
record's numeric top-level property of that name: a record without a number there is refused,
naming its line. Identical records are one member (with the later score). ZADD of the same
member and score changes nothing, so a resent batch is harmless as it is."""

from __future__ import annotations

from typing import Any, cast

from destination_redis.commands import Command
from destination_redis.writers.base import RecordError
from destination_redis.writers.encoding import ProbeUnits, record_object
from destination_redis.writers.members import CHUNK, Members, Number, chunks, variadic

_JSON_KINDS = {b'"': "a string", b"{": "an object", b"[": "an array", b"t": "a boolean", b"f": "a boolean"}


class SortedSetMembers(Members):
    name = "sorted_set"
    verb = b"ZADD"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.score_field is not None:  # else a record's number is its emitted_at, its score
            self.number = self.score

    def score(self, emitted_at: int, data: bytes) -> Number:
        """The record's score: emitted_at, or its score_field's number as the text of a double."""
        if self.score_field is None:
            return emitted_at
        raw = record_object(data).get(self.score_field)
        text = bytes(raw) if raw is not None else b"null"
        if text[:1] not in b"-0123456789" or not text:
            kind = "missing or null" if text == b"null" else _JSON_KINDS.get(text[:1], "not a number")
            raise RecordError(
                f"cache_type 'sorted_set' scores records by '{self.score_field}' (score_field), and "
                f"this record's '{self.score_field}' is {kind}, not a number"
            )
        # A double, as Redis keeps scores; repr is exact for it and Redis parses it (also inf).
        return repr(float(text)).encode()

    def commands(self, key: bytes, numbers: list[Number], datas: list[bytes]) -> list[Command]:
        pairs = [value for pair in zip(numbers, datas, strict=True) for value in pair]
        return [(b"ZADD", key, *part) for part in chunks(pairs, 2 * CHUNK)]

    def pack(self, key: bytes, numbers: list[Number], datas: list[bytes], out: list[bytes]) -> int:
        scores = cast(list[bytes], numbers)  # score_field: the texts of doubles
        if self.score_field is None:  # emitted_at: the decimal text (an int as hiredis sends it),
            emitted = cast(list[int], numbers)
            texts = {at: b"%d" % at for at in set(emitted)}  # once for the records of one ms
            scores = list(map(texts.__getitem__, emitted))
        return variadic(out, b"ZADD", key, [scores, datas])

    def probe(self, key: str) -> ProbeUnits:
        return [[("ZADD", key, "0", "{}")]]
