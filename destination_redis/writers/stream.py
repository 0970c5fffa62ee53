"""`stream`: `XADD K <id> _airbyte_emitted_at <ms> _airbyte_data <data JSON>` (Redis 5.0 or
later); applications consume it with XREAD / XREADGROUP, or read ranges by time with XRANGE.

Entry ids grow with the records and follow their `emitted_at` where it grows: `<ms>-<seq>`, ms the
record's emitted_at or, when that is not above the last id's, the last id's ms with seq + 1.
XADD is not idempotent, so a batch is one MULTI .. EXEC whose ids are fixed before it is sent:
after a lost connection the stream's last-generated-id (XINFO STREAM) tells whether it ran, and
were it resent anyway, Redis would refuse ids at or below that one rather than add them twice.
"""

from __future__ import annotations

from typing import Any

from destination_redis.commands import Command
from destination_redis.writers.encoding import F_DATA, F_EMITTED_AT, ProbeUnits
from destination_redis.writers.members import Guard, Members

EntryId = tuple[int, int]


class StreamMembers(Members):
    name = "stream"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last: EntryId | None = None  # the target's last-generated-id, read before the first batch
        self._sent: EntryId = (0, 0)  # the last id of the batch being written

    def commands(self, key: bytes, emitted: list[int], members: list[Any]) -> list[Command]:
        if self._last is None:
            self._last = self._read_last(key)
        ms, seq = self._last
        commands: list[Command] = []
        for emitted_at, data in zip(emitted, members, strict=True):
            if emitted_at > ms:
                ms, seq = emitted_at, 0
            else:
                seq += 1
            commands.append((b"XADD", key, b"%d-%d" % (ms, seq), F_EMITTED_AT, emitted_at, F_DATA, data))
        self._sent = (ms, seq)
        return commands

    def guard(self, key: bytes, commands: list[Command]) -> Guard:
        sent = self._sent

        def applied() -> list[Any] | None:
            return [] if self._read_last(key) >= sent else None

        def done() -> None:
            self._last = sent

        return Guard([], applied, done)

    def _read_last(self, key: bytes) -> EntryId:
        """The stream's last-generated-id (kept by Redis even when entries are deleted or
        trimmed); (0, 0) for no key. Another type at the key: XADD's WRONGTYPE names it."""
        (kind,) = self.router.run([(b"TYPE", key)])
        if kind != b"stream":
            return (0, 0)
        (info,) = self.router.run([(b"XINFO", b"STREAM", key)])
        fields = dict(zip(info[::2], info[1::2], strict=True))
        ms, _, seq = bytes(fields[b"last-generated-id"]).partition(b"-")
        return int(ms), int(seq or 0)

    def forget(self) -> None:
        self._last = None

    def probe(self, key: str) -> ProbeUnits:
        return [
            [("TYPE", key)],
            [("MULTI",), ("XADD", key, "1-1", "_airbyte_emitted_at", "1", "_airbyte_data", "{}"), ("EXEC",)],
            [("XINFO", "STREAM", key)],
        ]
