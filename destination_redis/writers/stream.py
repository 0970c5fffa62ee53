"""`stream`: `XADD K <id> _airbyte_emitted_at <ms> _airbyte_data <data JSON>` (Redis 5.0 or
later); applications consume it with XREAD / XREADGROUP, or read ranges by time with XRANGE.

Entry ids grow with the records and follow their `emitted_at` where it grows: `<ms>-<seq>`, ms the
record's emitted_at or, when that is not above the last id's, the last id's ms with seq + 1.
XADD is not idempotent, so a batch is one MULTI .. EXEC whose ids are fixed before it is sent:
after a lost connection the stream's last-generated-id (XINFO STREAM) tells whether it ran, and
were it resent anyway, Redis would refuse ids at or below that one rather than add them twice.

One XADD per record (XADD takes one entry), packed from pieces: per record only its id is
formatted; the rest is the key's, the emitted_at's (shared by the records of one ms) and the
data's length head (members.HEADS).
"""

from __future__ import annotations

from typing import Any, cast

from destination_redis.commands import Command
from destination_redis.writers.encoding import F_DATA, F_EMITTED_AT, ProbeUnits
from destination_redis.writers.members import HEADS, Guard, Members, Number

EntryId = tuple[int, int]


class StreamMembers(Members):
    name = "stream"
    verb = b"XADD"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last: EntryId | None = None  # the target's last-generated-id, read before the first batch
        self._sent: EntryId = (0, 0)  # the last id of the batch being written

    def commands(self, key: bytes, numbers: list[Number], datas: list[bytes]) -> list[Command]:
        ids = self._ids(key, cast(list[int], numbers))
        return [
            (b"XADD", key, entry_id, F_EMITTED_AT, emitted_at, F_DATA, data)
            for entry_id, emitted_at, data in zip(ids, numbers, datas, strict=True)
        ]

    def pack(self, key: bytes, numbers: list[Number], datas: list[bytes], out: list[bytes]) -> int:
        ids = self._ids(key, cast(list[int], numbers))
        count = len(ids)
        # Per record: [XADD, key, the id's head], id, [emitted_at field, value, data field], the
        # data's head, data; each piece opens with the \r\n ending the argument before it.
        opening = b"\r\n*7\r\n$4\r\nXADD\r\n$%d\r\n%s" % (len(key), key)
        openings = {n: opening + HEADS[n] for n in set(map(len, ids))}
        middles = {at: _middle(at) for at in set(numbers)}
        pieces: list[bytes] = [b""] * (5 * count)
        pieces[0::5] = map(openings.__getitem__, map(len, ids))
        pieces[1::5] = ids
        pieces[2::5] = map(middles.__getitem__, numbers)
        pieces[3::5] = map(HEADS.__getitem__, map(len, datas))
        pieces[4::5] = datas
        if pieces:
            pieces[0] = pieces[0][2:]  # nothing before the first command to end
            pieces.append(b"\r\n")
        out += pieces
        return count

    def _ids(self, key: bytes, emitted: list[int]) -> list[bytes]:
        """The batch's entry ids, after the last one written; the batch's last is kept for the guard."""
        if self._last is None:
            self._last = self._read_last(key)
        ms, seq = self._last
        ms_dash = b"%d-" % ms
        ids: list[bytes] = []
        append = ids.append
        for emitted_at in emitted:
            if emitted_at > ms:
                ms, seq, ms_dash = emitted_at, 0, b"%d-" % emitted_at
            else:
                seq += 1
            append(ms_dash + b"%d" % seq)
        self._sent = (ms, seq)
        return ids

    def guard(self, key: bytes) -> Guard:
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


def _middle(emitted_at: Number) -> bytes:
    """From the end of the id to the data's head: the emitted_at field and value, the data field."""
    text = b"%d" % emitted_at if isinstance(emitted_at, int) else emitted_at  # always an int here
    return b"\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s" % (
        len(F_EMITTED_AT), F_EMITTED_AT, len(text), text, len(F_DATA), F_DATA)
