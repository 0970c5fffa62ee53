"""`list`: `RPUSH K <data JSON>` in record order; applications read it with LRANGE or consume it
with LPOP / BLPOP.

RPUSH is not idempotent: a batch whose reply was lost with the connection would be pushed twice
if simply resent. So a batch is one `MULTI; RPUSH ..; INCR <batch counter>; EXEC`, atomic, and
the counter (`<prefix>{K}:_airbyte_batch`, in K's hash slot) tells afterwards whether it ran: it
holds the number of batches pushed, so a GET after a lost connection reads either the value we
expect (it ran: not resent) or the one before (resent). Counting the list's length instead would
be fooled by applications popping from it while the sync runs.
"""

from __future__ import annotations

from typing import Any

from destination_redis import keys
from destination_redis.commands import Command
from destination_redis.writers.encoding import ProbeUnits
from destination_redis.writers.members import Guard, Members, Number, chunks, variadic


class ListMembers(Members):
    name = "list"
    verb = b"RPUSH"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counter = keys.sibling_key(self.stream_key, keys.BATCHES, self.key_prefix)
        self._known: int | None = None  # the counter as last seen, read before the first batch

    def commands(self, key: bytes, numbers: list[Number], datas: list[bytes]) -> list[Command]:
        return [(b"RPUSH", key, *part) for part in chunks(datas)]

    def pack(self, key: bytes, numbers: list[Number], datas: list[bytes], out: list[bytes]) -> int:
        return variadic(out, b"RPUSH", key, [datas])

    def guard(self, key: bytes) -> Guard:
        if self._known is None:
            self._known = self._read()
        expected = self._known + 1

        def applied() -> list[Any] | None:
            return [] if self._read() == expected else None

        def done() -> None:
            self._known = expected

        return Guard([(b"INCR", self.counter)], applied, done)

    def _read(self) -> int:
        (value,) = self.router.run([(b"GET", self.counter)])
        # Not a number: INCR inside the batch gets the server's refusal, which names the key.
        return int(value) if value is not None and value.isdigit() else 0

    def probe(self, key: str) -> ProbeUnits:
        counter = self.counter.decode()  # the stream key's batch counter, as a sync uses it
        return [
            [("GET", counter)],
            [("MULTI",), ("RPUSH", key, "{}"), ("INCR", counter), ("EXEC",)],
            [("DEL", counter)],
        ]
