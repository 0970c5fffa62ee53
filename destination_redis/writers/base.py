"""The small interface every cache type implements; the loader knows nothing else of Redis.

Concrete writers are an addressing (by_id.py: `K:<id>`; by_key.py: `K:<pk>`; collection.py: one
key `K`) combined with an encoding of the value (encoding.py and one module per
type). The base class owns what is the same for every layout: the stream key and counter, the
up-front clear of a legacy overwrite, and the generation bookkeeping of refresh-aware catalogs.
A layout implements buffering and writing (`add`, `take`) and its two deletions.

`take` hands the buffered records over as a job that writes them: the loader runs jobs on its
I/O thread, one at a time and in order, while it reads the next records (inflight.py). So a job
may rely on what the job before it reserved (the id counter's last value), and nothing but jobs,
and `start` / `complete` (which run when no job is in flight), talks to Redis. A job may send its
batch and return the landing that reads the replies later (router.send_units): batches of every
stream are then in flight in the order taken, on one connection per node.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

from destination_redis import keys
from destination_redis.catalog import Stream
from destination_redis.generations import Generations
from destination_redis.search.index import SearchIndex
from destination_redis.topology.router import Router, Sent

logger = logging.getLogger("airbyte")

# Writes a batch taken from a writer: waits for Redis to acknowledge it and returns None, or
# sends it and returns the landing that reads the acknowledgement later (router.send_units).
Job = Callable[[], Sent | None]


class RecordError(Exception):
    """A record this layout cannot store (e.g. a missing primary key); the loader adds the line."""


class StreamWriter(ABC):
    """Owns one stream's keys: prepares them, buffers records, hands them over to be written (take)."""

    has_counter: ClassVar[bool] = True  # whether `K` is the stream's id counter (not for collections)
    index: SearchIndex | None = None  # the stream's search index, if it has one (make_writers)

    def __init__(
        self, stream: Stream, router: Router, ttl_seconds: int | None = None, key_prefix: str = ""
    ) -> None:
        self.stream = stream
        self.router = router
        self.ttl_seconds = ttl_seconds
        self.key = keys.stream_key(stream.namespace, stream.name, key_prefix)  # also the id counter
        meta = keys.meta_key(keys.stream_key(stream.namespace, stream.name), key_prefix)
        counter = self.key if self.has_counter else None
        self.generations = Generations(stream, counter, meta, router) if stream.tracks_generations else None

    def start(self) -> None:
        """Runs once before any record of the sync."""
        if self.generations is not None:
            self.generations.begin()
        elif self.stream.sync_mode == "overwrite":
            # Legacy catalog (no generation ids): the seed's up-front delete; ids restart at 1.
            deleted = self.delete_older_than(None)
            self.router.run([(b"DEL", self.key)])
            logger.info(f"Overwrite of stream '{self.stream.label}': deleted {deleted} existing records.")

    def prepare(self) -> None:
        """Runs once before any stream of the sync starts (deletes or writes anything): what
        may refuse the sync is done first (a search index an ACL user may not create)."""
        if self.index is not None:
            self.index.ensure()

    def settle(self) -> None:
        """Before a state of the stream is released, when no job is in flight: what Redis does in
        the background for it (a search index indexing what existed) is done."""
        if self.index is not None:
            self.index.settle()

    def complete(self) -> None:
        """The stream completed successfully: now, and only now, old generations are removed."""
        self._remove_old_generations()
        if self.index is not None:
            logger.info(self.index.report())

    def _remove_old_generations(self) -> None:
        if self.generations is None:
            return
        old = self.generations.old_range()
        if old is not None:
            floor, cutoff = old
            deleted = self.delete_older_than(cutoff, floor)
            logger.info(
                f"Stream '{self.stream.label}' completed generation {self.generations.generation}: "
                f"deleted {deleted} records of older generations."
            )
        self.generations.finish(old[1] if old else None)

    @abstractmethod
    def add(self, emitted_at: int, data: bytes) -> None:
        """Buffer one record (`data`: compact JSON); raise RecordError if it cannot be stored."""

    @abstractmethod
    def take(self) -> tuple[int, Job | None]:
        """Hand over what is buffered: its record count and the job that writes it (None when
        nothing is buffered). The buffer is empty afterwards; the job owns the records."""

    @abstractmethod
    def delete_older_than(self, first_kept_id: int | None, floor: int = 1) -> int:
        """Delete this stream's records with an id below `first_kept_id` (None: all of them);
        none has an id below `floor`."""
