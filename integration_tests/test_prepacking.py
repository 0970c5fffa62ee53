"""Batches packed on the loader's thread under guessed ids (IdCounter.guess), checked by the job.

Against a real server: when nothing else moves the counter, the guess is right and the records
land on ids that follow the counter; when another writer moves it between two batches, the
second batch's job finds the guess wrong and packs again, so its records take the ids the
INCRBY handed out and nothing the other writer owns is overwritten.
"""

from __future__ import annotations

import pytest
import redis

from destination_redis.catalog import Stream
from destination_redis.config import parse_config
from destination_redis.topology import open_router
from destination_redis.writers import make_writer
from destination_redis.writers.ids import IdCounter
from integration_tests.servers import RedisServer

EMITTED = 1_700_000_000_000


def _records(writer_add: object, first: int, count: int) -> None:
    for n in range(first, first + count):
        writer_add(EMITTED + n, b'{"n":%d}' % n)  # type: ignore[operator]


@pytest.mark.parametrize("sync_mode", ["append", "append_dedup"])
def test_a_guess_made_wrong_by_another_writer_is_packed_again(
    redis_server: RedisServer, redis_client: redis.Redis, sync_mode: str
) -> None:
    stream = Stream(name="users", namespace="", sync_mode=sync_mode,  # type: ignore[arg-type]
                    primary_key=(("n",),) if sync_mode == "append_dedup" else ())
    with open_router(parse_config(redis_server.config())) as router:
        writer = make_writer(stream, router)
        writer.start()
        _records(writer.add, 1, 3)
        count, job = writer.take()
        assert count == 3
        assert job is not None
        job()
        assert redis_client.get(":users") == b"3"
        redis_client.incrby(":users", 5)  # another writer takes ids 4..8 meanwhile
        _records(writer.add, 4, 2)
        count, job = writer.take()  # packed now, under the guess 4 and 5
        assert job is not None
        job()  # INCRBY answers 10: ids 9 and 10, packed again
    assert redis_client.get(":users") == b"10"
    stored = {
        key.decode(): int(redis_client.hget(key, "_airbyte_ab_id") or 0)
        for key in redis_client.scan_iter(match=":users:*")
    }
    if sync_mode == "append":
        assert stored == {":users:1": 1, ":users:2": 2, ":users:3": 3, ":users:9": 9, ":users:10": 10}
        assert redis_client.hget(":users:9", "_airbyte_data") == b'{"n":4}'
    else:
        assert stored == {":users:1": 1, ":users:2": 2, ":users:3": 3, ":users:4": 9, ":users:5": 10}


def test_guess_follows_only_the_reservation_just_before() -> None:
    counter = IdCounter(b":k", router=None)  # type: ignore[arg-type]  # guess never talks to Redis
    assert counter.guess(1) is None  # nothing reserved yet: the first batch is packed by its job
    counter._last = (1, 10_001)
    assert counter.guess(2) == 10_001
    assert counter.guess(3) is None  # reservation 2 has not run yet: no guess
    counter._last = (2, 20_001)
    assert counter.guess(3) == 20_001
