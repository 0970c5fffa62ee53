"""The write loop: stdin lines -> messages -> per-stream writers -> Redis -> states on stdout.

A STATE is released only after every record received before it has been acknowledged by Redis
(all writers drained), in the order received, with `destinationStats.recordCount` set. Memory is
bounded by the batch limits, not by the size of the input.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from destination_redis.catalog import Stream, StreamResolver
from destination_redis.errors import config_error
from destination_redis.messages import InputError, Record, StateMessage, read_messages
from destination_redis.writers import StreamWriter

logger = logging.getLogger("airbyte")

BATCH_RECORDS = 10_000
BATCH_BYTES = 16 * 1024 * 1024


class Loader:
    def __init__(
        self,
        streams: list[Stream],
        writers: dict[Stream, StreamWriter],
        batch_records: int = BATCH_RECORDS,
        batch_bytes: int = BATCH_BYTES,
    ) -> None:
        self._resolver = StreamResolver(streams)
        self._writers = writers
        self._batch_records = batch_records
        self._batch_bytes = batch_bytes
        self._routes: dict[tuple[str | None, str], StreamWriter] = {}
        self._buffered = 0
        self._buffered_bytes = 0
        self._since_stream_state: dict[Stream, int] = dict.fromkeys(streams, 0)
        self._since_global_state = 0
        self.records_written = 0

    def run(self, lines: Iterable[bytes]) -> Iterator[bytes]:
        """Yield each STATE line to emit, once its records are in Redis; the caller emits it at once."""
        for writer in self._writers.values():
            writer.start()
        try:
            for _number, line, message, data in read_messages(lines):
                if message.type == "RECORD":
                    self._add(message.record, data)  # type: ignore[arg-type]  # read_messages checks it
                elif message.type == "STATE":
                    yield self._release_state(StateMessage(line))
        except InputError as exc:
            self._flush()  # nothing before the bad line is lost
            raise exc.as_traced() from None
        self._flush()
        logger.info(f"Wrote {self.records_written} records.")

    def _add(self, record: Record, data: bytes) -> None:
        route = (record.namespace, record.stream)
        writer = self._routes.get(route)
        if writer is None:
            writer = self._route(record)
        writer.add(record.emitted_at, data)
        self._since_stream_state[writer.stream] += 1
        self._since_global_state += 1
        self._buffered += 1
        self._buffered_bytes += len(data)
        if self._buffered >= self._batch_records or self._buffered_bytes >= self._batch_bytes:
            self._flush()

    def _route(self, record: Record) -> StreamWriter:
        stream = self._resolver.find(record.namespace, record.stream)
        if stream is None:
            self._flush()
            raise config_error(self._resolver.describe_missing(record.namespace, record.stream))
        writer = self._writers[stream]
        self._routes[(record.namespace, record.stream)] = writer
        return writer

    def _flush(self) -> None:
        for writer in self._writers.values():
            self.records_written += writer.flush()
        self._buffered = 0
        self._buffered_bytes = 0

    def _release_state(self, state: StateMessage) -> bytes:
        self._flush()
        if state.kind == "STREAM":
            descriptor = state.stream_descriptor
            stream = self._resolver.find(*descriptor) if descriptor else None
            count = self._since_stream_state.get(stream, 0) if stream else 0
            if stream:
                self._since_stream_state[stream] = 0
        else:  # GLOBAL and LEGACY states cover every stream
            count = self._since_global_state
            self._since_global_state = 0
        return state.with_record_count(count)
