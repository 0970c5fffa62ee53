"""`set`: `SADD K <data JSON>`; applications test membership (SISMEMBER) or read it whole
(SMEMBERS, SSCAN). Identical records are one member. Adding a member twice changes nothing, so
a batch resent after a lost connection is harmless as it is."""

from __future__ import annotations

from typing import Any

from destination_redis.commands import Command
from destination_redis.writers.encoding import ProbeUnits
from destination_redis.writers.members import Members, chunks


class SetMembers(Members):
    name = "set"

    def commands(self, key: bytes, emitted: list[int], members: list[Any]) -> list[Command]:
        return [(b"SADD", key, *part) for part in chunks(members)]

    def probe(self, key: str) -> ProbeUnits:
        return [[("SADD", key, "{}")]]
