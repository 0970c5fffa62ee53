"""`write` on the command line: stdin lines -> the loader -> Redis, each STATE line out at once.

Imports nothing of the CDK, so a sync starts in a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from destination_redis.catalog import Stream
from destination_redis.config import RedisConfig
from destination_redis.loader import Loader
from destination_redis.topology import open_router
from destination_redis.writers import make_writers

CHUNK = 1 << 16


class ByteStream(Protocol):
    """What read_lines reads: sys.stdin.buffer, or any binary stream (`read1` used when it has one)."""

    def read(self, size: int, /) -> bytes: ...


def write_lines(config: RedisConfig, streams: list[Stream], lines: Iterable[bytes]) -> Iterator[bytes]:
    """Load the message lines into Redis; yields each STATE line once it may be emitted."""
    with _writers(config, streams) as writers:
        yield from Loader(streams, writers).run(lines)


@contextmanager
def _writers(config: RedisConfig, streams: list[Stream]) -> Iterator[dict[Stream, Any]]:
    with open_router(config) as router:
        yield make_writers(config, streams, router)


def read_lines(stream: ByteStream, chunk: int = CHUNK) -> Iterator[bytes]:
    """The lines of `stream` without their b"\\n", read in large chunks (a last line without
    a newline too; nothing after a final newline). No line is copied to put its newline back:
    the reader takes lines with or without it.

    `read1` returns what one read of the pipe gives (up to `chunk` bytes) without waiting for
    more, so a line that arrived is handed on at once, and a source that sends one record and a
    state then pauses gets its state back without the connector waiting for a full chunk.
    """
    read = getattr(stream, "read1", stream.read)
    # The start of a line whose newline has not come yet, in parts: a line of many chunks is
    # joined once, not copied again with every chunk.
    pending: list[bytes] = []
    while data := read(chunk):
        lines = data.split(b"\n")
        if len(lines) == 1:
            pending.append(data)
            continue
        if pending:
            pending.append(lines[0])
            lines[0] = b"".join(pending)
            pending.clear()
        last = lines.pop()
        if last:
            pending.append(last)
        yield from lines
    if pending:
        yield b"".join(pending)
