"""The write loop: stdin lines -> messages -> per-stream writers -> Redis -> states on stdout.

A STATE is released only after every record received before it has been acknowledged by Redis
(all writers drained), in the order received, with `destinationStats.recordCount` set. Memory is
bounded by the batch limits, not by the size of the input. A stream is complete when a TRACE
STREAM_STATUS COMPLETE arrives for it, or, when the source sends no statuses at all, at the end
of input; only then may a refresh remove older generations.

Batches are written by one I/O thread while the next records are read, several in flight at once
(inflight.py): the loader drains them before every STATE, stream completion and at the end, so
the contract above holds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from functools import partial

from destination_redis.catalog import Stream, StreamResolver
from destination_redis.inflight import InFlight
from destination_redis.messages import (
    InputError,
    Record,
    RefusedLine,
    StateMessage,
    StreamStatus,
    read_messages,
)
from destination_redis.progress import Progress
from destination_redis.writers import RecordError, StreamWriter

logger = logging.getLogger("airbyte")

BATCH_RECORDS = 10_000
BATCH_BYTES = 16 * 1024 * 1024


class _Lane:
    """One stream's writer and its records since the stream's last STATE (for recordCount)."""

    __slots__ = ("add", "completed", "since_state", "writer")

    def __init__(self, writer: StreamWriter) -> None:
        self.writer = writer
        self.add = writer.add  # bound once: called per record
        self.since_state = 0
        self.completed = False


class Loader:
    def __init__(
        self,
        streams: list[Stream],
        writers: dict[Stream, StreamWriter],
        batch_records: int = BATCH_RECORDS,
        batch_bytes: int = BATCH_BYTES,
    ) -> None:
        self._resolver = StreamResolver(streams)
        self._lanes = {stream: _Lane(writers[stream]) for stream in streams}
        self._batch_records = batch_records
        self._batch_bytes = batch_bytes
        self._routes: dict[tuple[str | None, str], _Lane] = {}
        self._indexed = [lane.writer for lane in self._lanes.values() if lane.writer.index is not None]
        self._since_global_state = 0
        self._statuses_seen = False
        self.records_written = 0
        self.progress = Progress()

    def run(self, lines: Iterable[bytes]) -> Iterator[bytes]:
        """Yield each STATE line to emit, once its records are in Redis; the caller emits it at once."""
        for lane in self._lanes.values():  # every stream's, before any stream deletes or writes
            lane.writer.prepare()
        for lane in self._lanes.values():
            lane.writer.start()
        with InFlight() as inflight:
            yield from self._load(lines, inflight)
        if not self._statuses_seen:  # a source without statuses: the end of input completes all
            for lane in self._lanes.values():
                self._complete_lane(lane)
        logger.info(self.progress.summary())

    def _load(self, lines: Iterable[bytes], inflight: InFlight) -> Iterator[bytes]:
        """The hot loop: every name it uses per record is a local."""
        routes = self._routes
        batch_records, batch_bytes = self._batch_records, self._batch_bytes
        buffered = buffered_bytes = 0
        try:
            for number, message, data, parsed in read_messages(lines):
                record = message.record
                if record is not None and message.type == "RECORD":
                    lane = routes.get((record.namespace, record.stream)) or self._route(record, number)
                    try:
                        lane.add(record.emitted_at, data)
                    except RecordError as exc:
                        raise RefusedLine(number, f"{exc}.") from None
                    lane.since_state += 1
                    buffered += 1
                    buffered_bytes += len(data)
                    if buffered >= batch_records or buffered_bytes >= batch_bytes:
                        self._flush(inflight, buffered_bytes)
                        buffered = buffered_bytes = 0
                elif isinstance(parsed, StateMessage):
                    self._flush(inflight, buffered_bytes)
                    inflight.drain()
                    buffered = buffered_bytes = 0
                    for writer in self._indexed:  # their indexes have indexed what was written
                        writer.settle()
                    yield self._count_state(parsed)
                elif isinstance(parsed, StreamStatus):
                    self._statuses_seen = True
                    if parsed.status == "COMPLETE":
                        self._flush(inflight, buffered_bytes)
                        inflight.drain()
                        buffered = buffered_bytes = 0
                        self._complete(parsed.namespace, parsed.name)
        except InputError as exc:
            self._flush(inflight, buffered_bytes)  # nothing before the bad line is lost
            inflight.drain()
            raise exc.as_traced() from None
        self._flush(inflight, buffered_bytes)
        inflight.drain()

    def _route(self, record: Record, number: int) -> _Lane:
        stream = self._resolver.find(record.namespace, record.stream)
        if stream is None:
            raise RefusedLine(number, self._resolver.describe_missing(record.namespace, record.stream))
        lane = self._lanes[stream]
        self._routes[(record.namespace, record.stream)] = lane
        return lane

    def _flush(self, inflight: InFlight, nbytes: int) -> None:
        """Hand every stream's buffered records (`nbytes` of data in all) to the I/O thread."""
        for lane in self._lanes.values():
            written, job = lane.writer.take()
            if job is not None:
                inflight.submit(
                    job, partial(self._acknowledged, lane.writer.stream.label, written, nbytes), nbytes
                )
                nbytes = 0
                self.records_written += written
                self._since_global_state += written

    def _acknowledged(self, label: str, count: int, nbytes: int) -> None:
        """Redis acknowledged a batch: count it, and log progress if a line is due."""
        self.progress.written({label: count}, nbytes)
        line = self.progress.due()
        if line is not None:
            logger.info(line)

    def _complete(self, namespace: str | None, name: str) -> None:
        stream = self._resolver.find(namespace, name)
        if stream is not None:
            self._complete_lane(self._lanes[stream])

    def _complete_lane(self, lane: _Lane) -> None:
        if not lane.completed:
            lane.completed = True
            lane.writer.complete()

    def _count_state(self, state: StateMessage) -> bytes:
        """The state line with recordCount: its stream's records since that stream's last state,
        or, for GLOBAL and LEGACY states, every record since the last such state."""
        if state.kind == "STREAM":
            descriptor = state.stream_descriptor
            stream = self._resolver.find(*descriptor) if descriptor else None
            lane = self._lanes[stream] if stream else None
            count = lane.since_state if lane else 0
            if lane:
                lane.since_state = 0
        else:
            count = self._since_global_state
            self._since_global_state = 0
        return state.with_record_count(count)
