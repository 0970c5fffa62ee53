"""Addressing of the collection types (list, set, sorted_set, stream): the stream's records are
members of one key, `K` itself, added by the type's Members (members.py and one module each).

- append: members are added to `K`.
- legacy overwrite (no generation ids): `K` is deleted up front, as the seed's overwrite does.
- a refresh that replaces (overwrite with generation ids, or append whose minimum_generation_id
  is its generation_id): members go to a staging key in K's hash slot
  (`<prefix>{K}:_airbyte_stage`), RENAMEd over `K` once the stream completes. Readers see the
  old content until then, and the new one at once after; a sync that fails before completion
  leaves `K` as it was. A retried attempt of the generation keeps what the failed one staged.
  A completed generation run again by append (PyAirbyte sends 1 on every run) adds to `K`.
- TTL: EXPIRE on the key written, with every batch (RENAME carries it over to `K`).
Members of a collection carry no generation, so an append that would remove some generations
and keep others cannot be done; make_writers refuses it, and append_dedup, before writing.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from destination_redis import keys
from destination_redis.catalog import Stream
from destination_redis.commands import Command, pack_command
from destination_redis.keyspace import delete_named
from destination_redis.topology.router import Router
from destination_redis.writers.base import Job, StreamWriter
from destination_redis.writers.encoding import EXEC, MULTI, expire
from destination_redis.writers.members import Members, Number

logger = logging.getLogger("airbyte")


class CollectionWriter(StreamWriter):
    has_counter = False

    def __init__(
        self, stream: Stream, router: Router, members: Members, ttl_seconds: int | None = None,
        key_prefix: str = "",
    ) -> None:
        super().__init__(stream, router, ttl_seconds, key_prefix)
        self.members = members
        self.stage = keys.sibling_key(self.key, keys.STAGE, key_prefix)
        self.target = self.key  # where this sync's members go: `K`, or the stage of a refresh
        self._number = members.number  # None: a record's number is its emitted_at
        self._numbers: list[Number] = []
        self._datas: list[bytes] = []

    def start(self) -> None:
        if self.generations is None:
            if self.stream.sync_mode == "overwrite":
                deleted = delete_named(self.router, [self.key])
                self.members.forget()
                logger.info(f"Overwrite of stream '{self.stream.label}': deleted {self.key.decode()} "
                            f"({deleted} key).")
            return
        generations = self.generations
        generations.begin()
        replaces = self.stream.sync_mode == "overwrite" or (
            0 < self.stream.oldest_kept_generation == self.stream.generation_id
        )
        if not replaces or (generations.continued and not generations.was_running):
            return  # into `K`: nothing older goes, or the generation was completed before
        self.target = self.stage
        if not generations.was_running:  # a stage no attempt of this generation wrote
            delete_named(self.router, [self.stage])
        logger.info(
            f"Stream '{self.stream.label}': staging generation {generations.generation} in "
            f"{self.stage.decode()}; it replaces {self.key.decode()} when the stream completes."
        )

    def add(self, emitted_at: int, data: bytes) -> None:
        # Called per record by the loader's thread: no call beyond the appends for most types.
        number = self._number
        self._numbers.append(emitted_at if number is None else number(emitted_at, data))
        self._datas.append(data)

    def take(self) -> tuple[int, Job | None]:
        count = len(self._datas)
        if not count:
            return 0, None
        numbers, datas = self._numbers, self._datas
        self._numbers, self._datas = [], []
        return count, partial(self._write, numbers, datas)

    def _write(self, numbers: list[Number], datas: list[bytes]) -> None:
        """The members' commands on K's node, with EXPIRE after them; one MULTI .. EXEC with the
        guard's commands where the type needs one."""
        target, members, ttl = self.target, self.members, self.ttl_seconds
        out = [MULTI]  # kept only where the batch is a transaction
        count = members.pack(target, numbers, datas, out)
        guard = members.guard(target)
        described: list[Command] = [(members.verb, target), (b"EXPIRE", target)]
        if guard is None:  # idempotent: resent as it is after a lost connection
            out[0] = b""
            parts, counts = [b"".join(out)], [count]
            if ttl:
                parts.append(expire(target, ttl))
                counts.append(1)
            self.router.run_units(parts, counts, lambda _: target, described.__getitem__, want_replies=False)
            return
        if ttl:
            out.append(expire(target, ttl))
            count += 1
        out += [pack_command(tuple(command)) for command in guard.extra]
        out.append(EXEC)
        self.router.run_units(
            [b"".join(out)], count + len(guard.extra) + 2, lambda _: target, described.__getitem__,
            applied=guard.applied, want_replies=False,
        )
        guard.done()

    def complete(self) -> None:
        if self.generations is None:
            return
        if self.target == self.stage:
            self._swap()
        self.generations.old_range()  # read only so that finish forgets older generations' fields
        self.generations.finish(None)

    def _swap(self) -> None:
        """The staged content replaces `K` in one step; no stage: this sync had no records."""
        (staged,) = self.router.run([(b"EXISTS", self.stage)])
        if not staged:
            delete_named(self.router, [self.key])
            logger.info(
                f"Stream '{self.stream.label}' completed without records: {self.key.decode()} deleted."
            )
            return

        def applied() -> list[Any] | None:  # the RENAME's reply was lost: did it run?
            (still,) = self.router.run([(b"EXISTS", self.stage)])
            return None if still else [b"OK"]

        self.router.run([(b"RENAME", self.stage, self.key)], applied=applied)
        self.members.forget()
        logger.info(
            f"Stream '{self.stream.label}' completed: the staged content replaced {self.key.decode()}."
        )

    def delete_older_than(self, first_kept_id: int | None, floor: int = 1) -> int:
        """Members have no ids: only all of them can go (the key)."""
        return delete_named(self.router, [self.key]) if first_kept_id is None else 0
