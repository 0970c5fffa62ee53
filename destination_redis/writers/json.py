"""`json`: `JSON.SET K:<id> $ <doc>`, the doc being `data` with `_airbyte_ab_id` and
`_airbyte_emitted_at` added as JSON numbers (they replace properties of those names).

Needs the JSON module (Redis 8, Redis Stack, valkey-json); gates.py refuses before anything is
written. The module stores numbers as 64-bit integers or doubles: an integer beyond 2^63 comes
back rounded (RedisJSON's choice, not ours); use `hash`/`string` where such numbers must be exact.
The doc is built on the raw bytes (no decode and re-encode) unless `data` already holds one of
our two property names.

A vector property of the stream's search index (`vectors`: name -> dimensions) stays the array
it is (the query engine indexes a JSON array of numbers as a VECTOR field); `check_record`
refuses one that is not `dims` numbers within float32 range.
"""

from __future__ import annotations

from typing import Any

import msgspec

from destination_redis.commands import Command
from destination_redis.writers.encoding import Encoding, ProbeUnits, record_object

_OURS = (b'"_airbyte_ab_id"', b'"_airbyte_emitted_at"')


class JsonEncoding(Encoding):
    name = "json"

    def commands(self, key: bytes, record_id: int, emitted_at: int, data: bytes) -> list[Command]:
        fields = record_object(data)  # also refuses a non-object
        if any(name in data for name in _OURS):
            fields = {k: v for k, v in fields.items() if k not in ("_airbyte_ab_id", "_airbyte_emitted_at")}
            data = msgspec.json.encode(fields)
        ours = b'"_airbyte_ab_id":%d,"_airbyte_emitted_at":%d}' % (record_id, emitted_at)
        doc = data[:-1] + (b"," if data != b"{}" else b"") + ours
        return [(b"JSON.SET", key, b"$", doc)]

    def id_command(self, key: bytes) -> Command:
        return (b"JSON.GET", key, b"$._airbyte_ab_id")

    def parse_id(self, reply: Any) -> int | None:
        """JSON.GET with a `$` path answers a JSON array: `[12]`, or `[]` where there is none."""
        if not isinstance(reply, bytes):
            return None
        text = reply.strip(b"[]")
        return int(text) if text.isdigit() else None

    def probe(self, key: str) -> ProbeUnits:
        return [
            [("JSON.SET", key, "$", '{"_airbyte_ab_id":1}')],
            [("JSON.GET", key, "$._airbyte_ab_id")],
        ]
