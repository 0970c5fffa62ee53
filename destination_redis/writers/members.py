"""How records become members of one collection key: the only part that differs between the
collection types (list, set, sorted_set, stream). Which key they go to (the stream key `K`, or
the staging key of a refresh) and when it is swapped in is the addressing's (collection.py).

A batch's commands either are idempotent (SADD and ZADD of the same members change nothing
the second time: a resend after a lost connection is harmless), or come with a `Guard`: the
batch then runs as one MULTI .. EXEC, and after a lost connection the guard tells whether the
server had run it, so that it is never applied twice (RPUSH, XADD).

Each type says its batch twice: `commands` (readable; what the tests compare with) and `pack`,
the same RESP bytes built without a tuple or a hiredis call per record. Packing is the I/O
thread's work, and it holds the GIL the loader's parsing needs: hiredis packs a 1,000-value
RPUSH at ~250 ns a value, pieces joined here at ~80 ns (unit_tests/test_collection_packing.py
checks both are the same bytes).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from destination_redis.commands import Command
from destination_redis.connection.server import ServerInfo
from destination_redis.topology.router import Router
from destination_redis.writers.encoding import ProbeUnits

# Values per command: a batch of 10,000 records is a few commands, none of them huge.
CHUNK = 1000
# Bulk string heads kept for values shorter than this (a few hundred distinct lengths in practice).
_KEPT_HEADS = 1 << 14

# What a record is kept as beside its data: its emitted_at, or a score (sorted_set's score_field).
Number = int | bytes


@dataclass
class Guard:
    """Makes a non-idempotent batch safe to resend: `extra` runs inside its MULTI (e.g. a batch
    counter), `applied` says after a lost connection whether the transaction ran, `done` is
    called once it is acknowledged."""

    extra: list[Command]
    applied: Callable[[], list[Any] | None]
    done: Callable[[], None]


class Members(ABC):
    """One collection type: the commands that add a batch of records to a key."""

    name: ClassVar[str]
    verb: ClassVar[bytes]  # the command that adds members: what an error reply is about

    def __init__(
        self, router: Router, stream_key: bytes, key_prefix: str = "", score_field: str | None = None
    ) -> None:
        self.router = router
        self.server: ServerInfo = router.server
        self.stream_key = stream_key  # `K`: bookkeeping keys are named after it, in its slot
        self.key_prefix = key_prefix
        self.score_field = score_field
        # Set where a record is kept as more than its emitted_at (sorted_set's score_field):
        # (emitted_at, data) -> its number, or RecordError if it cannot be stored. Called as each
        # record arrives, so the error names its line; None (most types) costs no call per record.
        self.number: Callable[[int, bytes], Number] | None = None

    @abstractmethod
    def commands(self, key: bytes, numbers: list[Number], datas: list[bytes]) -> list[Command]:
        """The batch's writes to `key` (no MULTI, no EXPIRE: the addressing adds them);
        `numbers[i]` is record i's emitted_at, or what `number` made of it."""

    @abstractmethod
    def pack(self, key: bytes, numbers: list[Number], datas: list[bytes], out: list[bytes]) -> int:
        """Append the RESP of `commands(key, numbers, datas)` to `out` (pieces to be joined);
        return how many commands that is (their replies)."""

    def guard(self, key: bytes) -> Guard | None:
        """After `pack`: None if its commands are idempotent and resent as they are after a
        lost connection, else the batch's Guard."""
        return None

    def forget(self) -> None:  # noqa: B027  # optional: only types that track the key's state
        """The key was deleted or renamed over: what the type knew about it is stale."""

    @abstractmethod
    def probe(self, key: str) -> ProbeUnits:
        """What `check` sends to prove the ACL user may run this type's commands, on `key`."""


def chunks(values: list[Any], size: int = CHUNK) -> list[list[Any]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


class _Heads(dict[int, bytes]):
    """`\\r\\n$<n>\\r\\n` for n: the end of the argument before, then a bulk string head."""

    def __missing__(self, n: int) -> bytes:
        head = b"\r\n$%d\r\n" % n
        if n < _KEPT_HEADS:
            self[n] = head
        return head


HEADS = _Heads()


def variadic(out: list[bytes], verb: bytes, key: bytes, columns: Sequence[Sequence[bytes]]) -> int:
    """Append `verb key <row 1> <row 2> ..` commands of at most CHUNK rows each, a row being one
    value of each column (RPUSH: the data; ZADD: score, data); return how many commands."""
    rows = len(columns[0])
    width = 2 * len(columns)  # pieces per row: a head and a value per column
    commands = 0
    heads = HEADS.__getitem__
    for start in range(0, rows, CHUNK):
        end = min(start + CHUNK, rows)
        pieces: list[bytes] = [b""] * (width * (end - start))
        for offset, column in enumerate(columns):
            part = column[start:end]
            pieces[2 * offset :: width] = map(heads, map(len, part))
            pieces[2 * offset + 1 :: width] = part
        out.append(b"*%d\r\n$%d\r\n%s\r\n$%d\r\n%s" % (
            2 + len(columns) * (end - start), len(verb), verb, len(key), key))
        out += pieces
        out.append(b"\r\n")
        commands += 1
    return commands
