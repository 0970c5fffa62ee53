"""Generation bookkeeping for refresh-aware catalogs (`generation_id` / `minimum_generation_id`).

Record ids come from the stream's counter and only grow, so "written by generation g or later"
is "id >= the first id of generation g". A small hash per stream, `<prefix>_airbyte_meta:<ns>:<s>`, keeps
the first id of each generation and whether the current one completed:

- A sync that resumes a generation that never completed (a retried attempt) keeps that
  generation's first id, so what the failed attempt wrote counts as current data.
- A generation seen again after it completed (PyAirbyte sends generation 1 on every run) is the
  same generation for `append` and `append_dedup`: its first id is kept, nothing it wrote goes.
  For `overwrite` it is a new replace: a new range starts at the counter + 1.
- A new generation starts a new range at the counter + 1.
- Only when the stream completes are keys below the first id of the oldest generation still
  wanted (`minimum_generation_id`) deleted; a failed sync deletes nothing.
- After a cleanup no key has an id below its cutoff: kept as `floor`, so the next cleanup of the
  id-named layout deletes just the range [floor, cutoff) without scanning the database.
Cost per record: none (ids are written anyway); per sync: a few commands on the meta hash, and
the deletion of what is old.
"""

from __future__ import annotations

import logging

from destination_redis.catalog import Stream
from destination_redis.topology.router import Router

logger = logging.getLogger("airbyte")

F_GENERATION = b"generation_id"
F_STATUS = b"status"
F_FLOOR = b"floor"
START_PREFIX = b"start:"
RUNNING = b"running"
COMPLETE = b"complete"


class Generations:
    def __init__(self, stream: Stream, stream_key: bytes | None, meta_key: bytes, router: Router) -> None:
        """`stream_key`: the id counter; None for the collection types, which have no ids (their
        refresh swaps a staged key in instead of deleting old ids)."""
        if stream.generation_id is None:
            raise ValueError("Generations need a catalog with generation_id")
        self.stream = stream
        self.generation: int = stream.generation_id
        self.counter_key = stream_key
        self.meta_key = meta_key
        self.router = router
        self.first_id = 0
        # How begin() found the generation: continued (a retried attempt, or a completed one run
        # again by append), and whether it was still running (a retried attempt).
        self.continued = False
        self.was_running = False
        self._start_fields: list[bytes] = []  # the meta's start:<g> fields, as old_range read them

    def begin(self) -> None:
        """Decide where this sync's ids start, and mark the generation as running."""
        commands: list[tuple[bytes, ...]] = [(b"HGETALL", self.meta_key)]
        if self.counter_key is not None:
            commands.append((b"GET", self.counter_key))
        meta_reply, counter = [*self.router.run(commands), None][:2]
        meta = _pairs(meta_reply)
        start_field = START_PREFIX + b"%d" % self.generation
        known = meta.get(F_GENERATION) == b"%d" % self.generation and start_field in meta
        running = meta.get(F_STATUS) == RUNNING
        if known and (running or self.stream.sync_mode != "overwrite"):
            # A retried attempt, or (append, append_dedup) the same generation run again after it
            # completed: PyAirbyte sends generation 1 on every run, and an incremental run sends
            # only what changed, so what the generation wrote before stays current data.
            self.first_id = int(meta[start_field])
            self.continued, self.was_running = True, running
            why = "resuming generation" if running else "generation already completed, continuing"
            kept = f"records from id {self.first_id}" if self.counter_key is not None else "records"
            logger.info(
                f"Stream '{self.stream.label}': {why} {self.generation}; {kept} written by earlier "
                f"syncs of it are kept."
            )
            if not running:
                self.router.run([(b"HMSET", self.meta_key, F_STATUS, RUNNING)])
            return
        # A new generation, or an overwrite of a generation that completed: that sync replaces
        # the stream ("replace" run twice leaves one copy).
        self.first_id = int(counter or 0) + 1
        # HMSET: every server version has it (HSET takes several fields only from 4.0).
        self.router.run([
            (b"HMSET", self.meta_key, F_GENERATION, self.generation, F_STATUS, RUNNING,
             start_field, self.first_id),
        ])
        at = f" at id {self.first_id}" if self.counter_key is not None else ""
        logger.info(f"Stream '{self.stream.label}': generation {self.generation} starts{at}.")

    def old_range(self) -> tuple[int, int] | None:
        """(floor, cutoff): ids in [floor, cutoff) belong to generations older than
        minimum_generation_id and go; None when nothing can be old. No key of the stream has an
        id below `floor`, the cutoff of the last cleanup (1 before the first one)."""
        minimum = self.stream.oldest_kept_generation
        if minimum <= 0:
            return None
        (meta_reply,) = self.router.run([(b"HGETALL", self.meta_key)])
        meta = _pairs(meta_reply)
        self._start_fields = [field for field in meta if field.startswith(START_PREFIX)]
        floor = int(meta.get(F_FLOOR, b"1"))
        starts = {
            int(field[len(START_PREFIX):]): int(value)
            for field, value in meta.items()
            if field.startswith(START_PREFIX)
        }
        wanted = [start for generation, start in starts.items() if generation >= minimum]
        if not wanted or min(wanted) <= floor:
            return None
        return floor, min(wanted)

    def finish(self, cleaned_below: int | None) -> None:
        """Mark the generation complete; remember the cleanup's cutoff as the new floor, and
        forget the ranges of generations already removed."""
        minimum = self.stream.oldest_kept_generation
        stale = [field for field in self._start_fields if int(field[len(START_PREFIX):]) < minimum]
        done: tuple[bytes | int, ...] = (b"HMSET", self.meta_key, F_STATUS, COMPLETE)
        if cleaned_below is not None:
            done += (F_FLOOR, cleaned_below)
        commands: list[tuple[bytes | int, ...]] = [done]
        commands += [(b"HDEL", self.meta_key, field) for field in stale]
        self.router.run(commands)


def _pairs(reply: object) -> dict[bytes, bytes]:
    """HGETALL's flat [field, value, ...] reply as a dict."""
    if not isinstance(reply, list):
        return {}
    return {reply[i]: reply[i + 1] for i in range(0, len(reply) - 1, 2)}
