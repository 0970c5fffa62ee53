"""Find and delete exactly a stream's keys: SCAN (never KEYS) + UNLINK, DEL on servers before 4.0.

SCAN's MATCH is only a coarse filter; every batch of keys it returns goes through the layout's
`choose`, which keeps only keys the stream owns (and, for generations, only old ones).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from destination_redis.commands import CommandRunner
from destination_redis.connection import RedisTarget

SCAN_COUNT = 1000
DELETE_BATCH = 1000


def scan_keys(target: RedisTarget, pattern: bytes) -> Iterator[bytes]:
    """Every key matching the glob pattern, over SCAN cursors (one server for now)."""
    cursor = 0
    client = target.client
    while True:
        cursor, found = client.scan(cursor=cursor, match=pattern, count=SCAN_COUNT)
        yield from (key if isinstance(key, bytes) else key.encode() for key in found)
        if cursor == 0:
            return


def delete_keys(
    target: RedisTarget,
    runner: CommandRunner,
    pattern: bytes,
    choose: Callable[[list[bytes]], list[bytes]],
) -> int:
    """Delete the keys matching `pattern` that `choose` picks from each batch; returns how many."""
    chosen = (key for batch in _batches(scan_keys(target, pattern)) for key in choose(batch))
    return delete_named(target, runner, chosen)


def delete_named(target: RedisTarget, runner: CommandRunner, names: Iterable[bytes]) -> int:
    """Delete keys known by name, in pipelined batches; returns how many existed."""
    verb = b"UNLINK" if target.server.has_unlink else b"DEL"
    return sum(_delete(runner, verb, batch) for batch in _batches(names))


def _batches(keys: Iterable[bytes]) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for key in keys:
        batch.append(key)
        if len(batch) >= DELETE_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _delete(runner: CommandRunner, verb: bytes, keys: list[bytes]) -> int:
    """One command per key, so that each touches one hash slot (Redis Cluster)."""
    replies = runner.run([(verb, key) for key in keys])
    return sum(int(r) for r in replies)
