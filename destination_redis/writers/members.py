"""How records become members of one collection key: the only part that differs between the
collection types (list, set, sorted_set, stream). Which key they go to (the stream key `K`, or
the staging key of a refresh) and when it is swapped in is the addressing's (collection.py).

A batch's commands either are idempotent (SADD and ZADD of the same members change nothing
the second time: a resend after a lost connection is harmless), or come with a `Guard`: the
batch then runs as one MULTI .. EXEC, and after a lost connection the guard tells whether the
server had run it, so that it is never applied twice (RPUSH, XADD).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from destination_redis.commands import Command
from destination_redis.connection.server import ServerInfo
from destination_redis.topology.router import Router
from destination_redis.writers.encoding import ProbeUnits

# Values per command: a batch of 10,000 records is a few commands, none of them huge.
CHUNK = 1000


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

    def __init__(
        self, router: Router, stream_key: bytes, key_prefix: str = "", score_field: str | None = None
    ) -> None:
        self.router = router
        self.server: ServerInfo = router.server
        self.stream_key = stream_key  # `K`: bookkeeping keys are named after it, in its slot
        self.key_prefix = key_prefix
        self.score_field = score_field

    def member(self, emitted_at: int, data: bytes) -> Any:
        """What a record is buffered as; raise RecordError if it cannot be stored. Called as
        each record arrives, so the error names its line."""
        return data

    @abstractmethod
    def commands(self, key: bytes, emitted: list[int], members: list[Any]) -> list[Command]:
        """The batch's writes to `key` (no MULTI, no EXPIRE: the addressing adds them)."""

    def guard(self, key: bytes, commands: list[Command]) -> Guard | None:
        """None: the commands are idempotent and resent as they are after a lost connection."""
        return None

    def forget(self) -> None:  # noqa: B027  # optional: only types that track the key's state
        """The key was deleted or renamed over: what the type knew about it is stale."""

    @abstractmethod
    def probe(self, key: str) -> ProbeUnits:
        """What `check` sends to prove the ACL user may run this type's commands, on `key`."""


def chunks(values: list[Any], size: int = CHUNK) -> list[list[Any]]:
    return [values[i : i + size] for i in range(0, len(values), size)]
