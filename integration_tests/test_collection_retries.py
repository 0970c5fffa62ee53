"""The collection cache types after a lost reply, and their sibling keys on a real Redis Cluster.

RPUSH and XADD are not idempotent: a list or stream batch whose EXEC ran on the server but whose
reply was lost with the connection (integration_tests/proxy.py) must not be pushed again. The
connector asks the server instead (list: the batch counter `<prefix>{K}:_airbyte_batch`; stream:
XINFO STREAM's last-generated-id). Likewise a refresh's `RENAME stage K` whose reply was lost
must not be resent (the stage is gone: "no such key"). On a cluster, the stage and the counter
must hash to K's slot, or RENAME and the MULTI fail with CROSSSLOT.

Each retry test pre-seeds K (and the counter) as an earlier sync would have left them, so the
connector's expectations start from existing values, not from zero.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.cluster
from redis.crc import key_slot

from destination_redis import keys
from integration_tests.cli import Result, lines, record, run_connector, stream_state
from integration_tests.cluster import RedisCluster
from integration_tests.proxy import ReplyDroppingProxy
from integration_tests.servers import RedisServer
from integration_tests.test_cluster import assert_on_their_primaries, where_keys_live
from integration_tests.test_sync_modes import configured

WRITE_ARGS = ["write", "--config", "{config}", "--catalog", "{catalog}"]
PREFIX = "app:"
NOT_RESENT = "Redis had run the batch before the connection was lost: not resent."


def _write(
    config: dict[str, Any], tmp_path: Path, streams: list[dict[str, Any]], messages: list[str]
) -> Result:
    return run_connector(WRITE_ARGS, tmp_path, config=config, catalog={"streams": streams},
                         stdin=lines(*messages))


def _logs(result: Result) -> list[str]:
    return [str(m["log"]["message"]) for m in result.of_type("LOG")]


def _batches(stream: str, groups: list[list[tuple[int, dict[str, Any]]]]) -> list[str]:
    """The records of each group, then a STATE: one flush (one MULTI .. EXEC) per group."""
    messages = []
    for number, group in enumerate(groups, start=1):
        messages += [record(stream, data, emitted_at=emitted) for emitted, data in group]
        messages.append(stream_state(stream, {"batch": number}))
    return messages


def _assert_ok_after_a_lost_reply(result: Result, proxy: ReplyDroppingProxy, states: int) -> None:
    assert proxy.dropped.is_set(), "the proxy never lost the reply: the test tested nothing"
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    batches = [s["state"]["stream"]["stream_state"]["batch"] for s in result.states]
    assert batches == list(range(1, states + 1))


def _assert_found_it_had_run(result: Result) -> None:
    """The server had run it, and the connector found that out rather than resending blindly
    (checked last: a blind resend shows first in what Redis holds)."""
    assert NOT_RESENT in _logs(result), _logs(result)


# --- a lost EXEC reply: list and stream ---------------------------------------------------------


def test_a_list_batch_whose_exec_reply_is_lost_is_pushed_once(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Four batches; the 2nd batch's EXEC runs but its reply is lost. A blind resend would push
    that batch twice: the list holds each record exactly once, in order, and the batch counter
    (7 from earlier syncs) grew by one per batch."""
    key = keys.stream_key("", "events", PREFIX)
    counter = keys.sibling_key(key, keys.BATCHES, PREFIX)
    assert counter == b"app:{app::events}:_airbyte_batch"
    redis_client.rpush(key, '{"old":true}')
    redis_client.set(counter, 7)
    # Small batches: each MULTI .. EXEC is one write, so the proxy sees EXEC with the rest of it.
    groups = [[(1_000 + 10 * g + i, {"g": g, "i": i}) for i in range(3)] for g in range(4)]
    with ReplyDroppingProxy(redis_server.port) as proxy:
        proxy.drop_reply_to("EXEC", occurrence=2)
        result = _write(
            redis_server.config(port=proxy.port, cache_type="list", key_prefix=PREFIX),
            tmp_path, [configured("events", "append")], _batches("events", groups),
        )
    _assert_ok_after_a_lost_reply(result, proxy, states=4)
    stored = [json.loads(value) for value in redis_client.lrange(key, 0, -1)]
    assert stored == [{"old": True}] + [data for group in groups for _, data in group]
    assert redis_client.get(counter) == b"11"
    assert set(redis_client.keys("*")) == {key, counter}
    _assert_found_it_had_run(result)


@pytest.mark.min_redis("5.0", reason="the stream type")
def test_a_stream_batch_whose_exec_reply_is_lost_is_added_once(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """The same for `stream`: the 2nd batch's XADDs ran, their reply lost. Each record is an
    entry once, with the id fixed before sending (emitted_at, or the last id's ms with seq + 1
    where emitted_at does not grow), continuing after the entry an earlier sync left."""
    key = keys.stream_key("", "events", PREFIX)
    redis_client.xadd(key, {"_airbyte_emitted_at": "1000", "_airbyte_data": '{"old":true}'}, id="1000-4")
    groups = [
        [(1_000, {"n": 1}), (1_000, {"n": 2}), (1_001, {"n": 3})],
        [(1_001, {"n": 4}), (999, {"n": 5}), (2_000, {"n": 6})],  # the batch whose reply is lost
        [(2_000, {"n": 7}), (3_000, {"n": 8})],
    ]
    expected_ids = [b"1000-4", b"1000-5", b"1000-6", b"1001-0", b"1001-1", b"1001-2", b"2000-0",
                    b"2000-1", b"3000-0"]
    with ReplyDroppingProxy(redis_server.port) as proxy:
        proxy.drop_reply_to("EXEC", occurrence=2)
        result = _write(
            redis_server.config(port=proxy.port, cache_type="stream", key_prefix=PREFIX),
            tmp_path, [configured("events", "append")], _batches("events", groups),
        )
    _assert_ok_after_a_lost_reply(result, proxy, states=3)
    entries: Any = redis_client.xrange(key)
    assert [entry_id for entry_id, _ in entries] == expected_ids
    assert [json.loads(fields[b"_airbyte_data"]) for _, fields in entries] == [{"old": True}] + [
        data for group in groups for _, data in group
    ]
    assert [int(fields[b"_airbyte_emitted_at"]) for _, fields in entries[1:]] == [
        emitted for group in groups for emitted, _ in group
    ]
    assert set(redis_client.keys("*")) == {key}  # no counter: the ids are the guard
    _assert_found_it_had_run(result)


# --- batches of many values per command (CHUNK per RPUSH / SADD / ZADD) ---------------------------

# 2,500 records of ~10 bytes: three RPUSH / SADD / ZADD in one batch, packed by hand (members.py),
# and the list's MULTI .. EXEC still small enough (~45 kB) to reach the proxy in one write.
BIG = 2_500


def _big_groups(sizes: list[int]) -> list[list[tuple[int, dict[str, Any]]]]:
    """Groups of records {"n": <running number>}, 100 per emitted_at ms (stream ids: seq grows)."""
    groups, n = [], 0
    for size in sizes:
        groups.append([(5_000 + (n + i) // 100, {"n": n + i}) for i in range(size)])
        n += size
    return groups


def test_a_list_batch_of_several_rpushes_whose_exec_reply_is_lost_is_pushed_once(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """The 2nd batch (3 RPUSHes of 1,000, 1,000 and 500 values, then INCR) runs, its EXEC reply
    is lost: every record is in the list once, in order, and the counter grew by 3."""
    key = keys.stream_key("", "events", PREFIX)
    counter = keys.sibling_key(key, keys.BATCHES, PREFIX)
    groups = _big_groups([BIG, BIG, 7])
    with ReplyDroppingProxy(redis_server.port) as proxy:
        proxy.drop_reply_to("EXEC", occurrence=2)
        result = _write(
            redis_server.config(port=proxy.port, cache_type="list", key_prefix=PREFIX),
            tmp_path, [configured("events", "append")], _batches("events", groups),
        )
    _assert_ok_after_a_lost_reply(result, proxy, states=3)
    assert [json.loads(v)["n"] for v in redis_client.lrange(key, 0, -1)] == list(range(2 * BIG + 7))
    assert redis_client.get(counter) == b"3"
    _assert_found_it_had_run(result)


@pytest.mark.min_redis("5.0", reason="the stream type")
def test_a_large_stream_batch_whose_exec_reply_is_lost_is_added_once(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """The same for a stream batch of 400 XADDs (ids `<ms>-0` .. `<ms>-99` per emitted_at; ~50 kB,
    so that the proxy sees its EXEC in the one write with the rest)."""
    key = keys.stream_key("", "events", PREFIX)
    groups = _big_groups([400, 400, 7])
    with ReplyDroppingProxy(redis_server.port) as proxy:
        proxy.drop_reply_to("EXEC", occurrence=2)
        result = _write(
            redis_server.config(port=proxy.port, cache_type="stream", key_prefix=PREFIX),
            tmp_path, [configured("events", "append")], _batches("events", groups),
        )
    _assert_ok_after_a_lost_reply(result, proxy, states=3)
    entries: Any = redis_client.xrange(key)
    assert [json.loads(fields[b"_airbyte_data"])["n"] for _, fields in entries] == list(range(807))
    ids = [b"%d-%d" % (5_000 + n // 100, n % 100) for n in range(807)]
    assert [entry_id for entry_id, _ in entries] == ids
    _assert_found_it_had_run(result)


@pytest.mark.parametrize(("cache_type", "verb"), [("set", "SADD"), ("sorted_set", "ZADD")])
def test_a_batch_of_several_adds_cut_by_a_lost_connection_is_resent_without_duplicates(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path, cache_type: str, verb: str
) -> None:
    """The connection is lost after the 2nd of the first batch's three SADDs / ZADDs (some of it
    may have run): the batch is resent as it is, and the key holds each record once (a sorted
    set with its emitted_at as the score), with the TTL."""
    key = keys.stream_key("", "events", PREFIX)
    groups = _big_groups([BIG, 7])
    with ReplyDroppingProxy(redis_server.port) as proxy:
        proxy.drop_reply_to(verb, occurrence=2)
        result = _write(
            redis_server.config(port=proxy.port, cache_type=cache_type, key_prefix=PREFIX, ttl_seconds=500),
            tmp_path, [configured("events", "append")], _batches("events", groups),
        )
    _assert_ok_after_a_lost_reply(result, proxy, states=2)
    if cache_type == "set":
        assert sorted(json.loads(v)["n"] for v in redis_client.smembers(key)) == list(range(BIG + 7))
    else:
        ranked: Any = redis_client.zrange(key, 0, -1, withscores=True)
        assert sorted((json.loads(v)["n"], int(score)) for v, score in ranked) == [
            (n, 5_000 + n // 100) for n in range(BIG + 7)
        ]
    assert 0 < redis_client.ttl(key) <= 500
    assert any("resending" in line for line in _logs(result)), _logs(result)


# --- a lost RENAME reply at the end of a refresh --------------------------------------------------


def test_a_refresh_whose_rename_reply_is_lost_completes(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Overwrite with generation ids (list): records are staged, and `RENAME stage K` runs but
    its reply is lost. Resent, RENAME would fail (the stage is gone): the sync succeeds, K holds
    exactly the new records (with the TTL), the stage is gone, the generation is complete."""
    key = keys.stream_key("", "events", PREFIX)
    stage = keys.sibling_key(key, keys.STAGE, PREFIX)
    assert stage == b"app:{app::events}:_airbyte_stage"
    redis_client.rpush(key, '{"old":1}', '{"old":2}')
    groups = [[(1_000 + i, {"g": g, "i": i}) for i in range(2)] for g in range(2)]
    with ReplyDroppingProxy(redis_server.port) as proxy:
        proxy.drop_reply_to("RENAME", occurrence=1)
        result = _write(
            redis_server.config(port=proxy.port, cache_type="list", key_prefix=PREFIX, ttl_seconds=500),
            tmp_path, [configured("events", "overwrite", generation=1, minimum=1)],
            _batches("events", groups),
        )
    _assert_ok_after_a_lost_reply(result, proxy, states=2)
    assert [json.loads(v) for v in redis_client.lrange(key, 0, -1)] == [
        data for group in groups for _, data in group
    ]
    assert not redis_client.exists(stage)
    assert 0 < redis_client.ttl(key) <= 500
    meta = keys.meta_key(b":events", PREFIX)
    assert redis_client.hget(meta, "status") == b"complete"
    assert redis_client.hget(meta, "generation_id") == b"1"
    _assert_found_it_had_run(result)


# --- Redis Cluster: stage and batch counter in K's slot --------------------------------------------

# (stream name, cache type): one stream per collection type, and list streams whose names hold
# braces: `a{b}c` (K has a hash tag of its own: siblings `K:<suffix>`), `x}y` (the wrapped form's
# tag would stop at that `}`: siblings `K:<suffix>:<n>`), and a stream with an empty tag `{}`.
CLUSTER_STREAMS = [
    ("l", "list"), ("s", "set"), ("z", "sorted_set"), ("x", "stream"),
    ("a{b}c", "list"), ("x}y", "list"), ("{}q", "stream"),
]
NAMESPACE = "ns"


def _cluster_messages(run: int) -> list[str]:
    """Two batches per stream (a STATE after each group), records that differ between runs."""
    messages = []
    for batch in (1, 2):
        for name, _ in CLUSTER_STREAMS:
            messages += [
                record(name, {"run": run, "batch": batch, "i": i}, namespace=NAMESPACE,
                       emitted_at=1_000_000 * run + 10 * batch + i)
                for i in range(2)
            ]
        messages += [stream_state(name, {"batch": batch}, namespace=NAMESPACE) for name, _ in CLUSTER_STREAMS]
    return messages


def _expected(run: int) -> list[tuple[int, dict[str, Any]]]:
    return [(1_000_000 * run + 10 * batch + i, {"run": run, "batch": batch, "i": i})
            for batch in (1, 2) for i in range(2)]


def _content(client: redis.cluster.RedisCluster, cache_type: str, key: bytes) -> list[Any]:
    """K's members as (emitted_at or None, data), in the type's order (sets: sorted)."""
    if cache_type == "list":
        return [(None, json.loads(v)) for v in client.lrange(key, 0, -1)]
    if cache_type == "set":
        return sorted(((None, json.loads(v)) for v in client.smembers(key)), key=json.dumps)
    if cache_type == "sorted_set":
        ranked: Any = client.zrange(key, 0, -1, withscores=True)
        return [(int(score), json.loads(v)) for v, score in ranked]
    entries: Any = client.xrange(key)
    assert [i for i, _ in entries] == [b"%d-0" % int(f[b"_airbyte_emitted_at"]) for _, f in entries]
    return [(int(f[b"_airbyte_emitted_at"]), json.loads(f[b"_airbyte_data"])) for _, f in entries]


def _want(cache_type: str, run: int) -> list[Any]:
    if cache_type == "list":
        return [(None, data) for _, data in _expected(run)]
    if cache_type == "set":
        return sorted(((None, data) for _, data in _expected(run)), key=json.dumps)
    return _expected(run)


def test_refreshes_of_every_collection_type_swap_within_ks_slot_on_a_cluster(
    redis_cluster: RedisCluster, cluster_client: redis.cluster.RedisCluster, tmp_path: Path
) -> None:
    """Two overwrites with generation ids (1, then 2) of one stream per collection type, and of
    streams with braces in their names, on a real 3-primary cluster. The MULTI of a list batch
    (RPUSH stage, INCR counter) and `RENAME stage K` would fail with CROSSSLOT were the stage or
    the counter in another slot: both runs succeed, each K holds exactly its run's records, no
    stage is left, every key lives on the primary of its slot, and the counters count 4 batches."""
    config = redis_cluster.config(
        key_prefix=PREFIX, cache_type="list",
        streams=[{"name": name, "cache_type": kind} for name, kind in CLUSTER_STREAMS],
    )
    streams = {name: keys.stream_key(NAMESPACE, name, PREFIX) for name, _ in CLUSTER_STREAMS}
    stages = {name: keys.sibling_key(key, keys.STAGE, PREFIX) for name, key in streams.items()}
    counters = {name: keys.sibling_key(streams[name], keys.BATCHES, PREFIX)
                for name, kind in CLUSTER_STREAMS if kind == "list"}
    # The three forms of sibling_key are all here (the unit tests check each form's slot).
    assert stages["l"] == b"app:{app:ns:l}:_airbyte_stage"
    assert stages["a{b}c"] == b"app:ns:a{b}c:_airbyte_stage"
    assert stages["x}y"].startswith(b"app:ns:x}y:_airbyte_stage:")
    assert stages["{}q"].startswith(b"app:ns:{}q:_airbyte_stage:")
    # The server agrees on the slots (CLUSTER KEYSLOT), not only redis-py's key_slot.
    with redis_cluster.node_client(redis_cluster.primaries()[0]) as node:
        for name, key in streams.items():
            siblings = [stages[name], *([counters[name]] if name in counters else [])]
            slots = {node.execute_command("CLUSTER", "KEYSLOT", k) for k in [key, *siblings]}
            assert slots == {key_slot(key)}, (name, key, siblings, slots)

    for run in (1, 2):
        catalog = [configured(name, "overwrite", generation=run, minimum=run, namespace=NAMESPACE)
                   for name, _ in CLUSTER_STREAMS]
        result = _write(config, tmp_path, catalog, _cluster_messages(run))
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert len(result.states) == 2 * len(CLUSTER_STREAMS)
        for name, kind in CLUSTER_STREAMS:
            assert _content(cluster_client, kind, streams[name]) == _want(kind, run), (run, name)
        found = where_keys_live(redis_cluster, f"{PREFIX}*")
        metas = {keys.meta_key(f"{NAMESPACE}:{name}".encode(), PREFIX) for name, _ in CLUSTER_STREAMS}
        assert set(found) == set(streams.values()) | set(counters.values()) | metas, run  # no stage
        assert_on_their_primaries(redis_cluster, found, everywhere=False)
        for counter in counters.values():
            assert cluster_client.get(counter) == b"%d" % (2 * run), counter
