"""Find and delete exactly a stream's keys: SCAN (never KEYS) on every primary + UNLINK (DEL on
servers before 4.0).

SCAN's MATCH is only a coarse filter; every batch of keys it returns goes through the layout's
`choose`, which keeps only keys the stream owns (and, for generations, only old ones).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from destination_redis.topology.router import Router

SCAN_COUNT = 1000
DELETE_BATCH = 1000


def delete_keys(router: Router, pattern: bytes, choose: Callable[[list[bytes]], list[bytes]]) -> int:
    """Delete the keys matching `pattern` that `choose` picks from each batch; returns how many."""
    chosen = (key for batch in _batches(router.scan(pattern, SCAN_COUNT)) for key in choose(batch))
    return delete_named(router, chosen)


def delete_named(router: Router, names: Iterable[bytes]) -> int:
    """Delete keys known by name, in pipelined batches; returns how many existed."""
    verb = b"UNLINK" if router.server.has_unlink else b"DEL"
    return sum(_delete(router, verb, batch) for batch in _batches(names))


def _batches(keys: Iterable[bytes]) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for key in keys:
        batch.append(key)
        if len(batch) >= DELETE_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _delete(router: Router, verb: bytes, keys: list[bytes]) -> int:
    """One command per key, so that each touches one hash slot (Redis Cluster)."""
    replies = router.run([(verb, key) for key in keys])
    return sum(int(r) for r in replies)
