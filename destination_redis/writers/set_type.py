"""`set`: `SADD K <data JSON>`; applications test membership (SISMEMBER) or read it whole
(SMEMBERS, SSCAN). Identical records are one member. Adding a member twice changes nothing, so
a batch resent after a lost connection is harmless as it is."""

from __future__ import annotations

from destination_redis.commands import Command
from destination_redis.writers.encoding import ProbeUnits
from destination_redis.writers.members import Members, Number, chunks, variadic


class SetMembers(Members):
    name = "set"
    verb = b"SADD"

    def commands(self, key: bytes, numbers: list[Number], datas: list[bytes]) -> list[Command]:
        return [(b"SADD", key, *part) for part in chunks(datas)]

    def pack(self, key: bytes, numbers: list[Number], datas: list[bytes], out: list[bytes]) -> int:
        return variadic(out, b"SADD", key, [datas])

    def probe(self, key: str) -> ProbeUnits:
        return [[("SADD", key, "{}")]]
