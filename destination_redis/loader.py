"""The write loop: stdin lines -> messages -> per-stream writers -> Redis -> states on stdout.

A STATE is released only after every record received before it has been acknowledged by Redis
(all writers drained), in the order received, with `destinationStats.recordCount` set. Memory is
bounded by the batch limits, not by the size of the input. A stream is complete when a TRACE
STREAM_STATUS COMPLETE arrives for it, or, when the source sends no statuses at all, at the end
of input; only then may a refresh remove older generations.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from destination_redis.catalog import Stream, StreamResolver
from destination_redis.messages import (
    InputError,
    Record,
    RefusedLine,
    StateMessage,
    StreamStatus,
    read_messages,
)
from destination_redis.writers import RecordError, StreamWriter

logger = logging.getLogger("airbyte")

BATCH_RECORDS = 10_000
BATCH_BYTES = 16 * 1024 * 1024


class _Lane:
    """One stream's writer and its records since the stream's last STATE (for recordCount)."""

    __slots__ = ("completed", "since_state", "writer")

    def __init__(self, writer: StreamWriter) -> None:
        self.writer = writer
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
        self._since_global_state = 0
        self._statuses_seen = False
        self.records_written = 0

    def run(self, lines: Iterable[bytes]) -> Iterator[bytes]:
        """Yield each STATE line to emit, once its records are in Redis; the caller emits it at once."""
        for lane in self._lanes.values():
            lane.writer.start()
        routes = self._routes
        buffered = buffered_bytes = 0
        try:
            for number, message, data, parsed in read_messages(lines):
                record = message.record
                if record is not None and message.type == "RECORD":
                    lane = routes.get((record.namespace, record.stream)) or self._route(record, number)
                    try:
                        lane.writer.add(record.emitted_at, data)
                    except RecordError as exc:
                        raise RefusedLine(number, f"{exc}.") from None
                    lane.since_state += 1
                    buffered += 1
                    buffered_bytes += len(data)
                    if buffered >= self._batch_records or buffered_bytes >= self._batch_bytes:
                        self._flush()
                        buffered = buffered_bytes = 0
                elif isinstance(parsed, StateMessage):
                    self._flush()
                    buffered = buffered_bytes = 0
                    yield self._count_state(parsed)
                elif isinstance(parsed, StreamStatus):
                    self._statuses_seen = True
                    if parsed.status == "COMPLETE":
                        self._flush()
                        buffered = buffered_bytes = 0
                        self._complete(parsed.namespace, parsed.name)
        except InputError as exc:
            self._flush()  # nothing before the bad line is lost
            raise exc.as_traced() from None
        self._flush()
        if not self._statuses_seen:  # a source without statuses: the end of input completes all
            for lane in self._lanes.values():
                self._complete_lane(lane)
        logger.info(f"Wrote {self.records_written} records.")

    def _route(self, record: Record, number: int) -> _Lane:
        stream = self._resolver.find(record.namespace, record.stream)
        if stream is None:
            raise RefusedLine(number, self._resolver.describe_missing(record.namespace, record.stream))
        lane = self._lanes[stream]
        self._routes[(record.namespace, record.stream)] = lane
        return lane

    def _flush(self) -> None:
        for lane in self._lanes.values():
            written = lane.writer.flush()
            self.records_written += written
            self._since_global_state += written

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
