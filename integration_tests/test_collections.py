"""The collection cache types (list, set, sorted_set, stream) against real servers: each stream's
records are members of one key K = `<key_prefix><namespace>:<stream>`. The stored layout byte for
byte, every sync mode (a staged refresh that fails, is retried and completes; PyAirbyte's
generation 1 run twice), the refusals before anything is written, the score_field errors naming
their line, check's probes of exactly the chosen types' commands, and one core test of every type
on every server of the matrix (the stream gate below Redis 5.0, the cluster's slots).

Cases are grouped into few CLI runs (several streams per run, one stream per case); checks run
in this process (`check_here`), as the ACL and TLS tests do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from destination_redis import keys
from integration_tests.cli import lines, record, stream_state
from integration_tests.connector_runs import check_here
from integration_tests.matrix import ServerBinary
from integration_tests.servers import RedisServer
from integration_tests.test_cache_types import COMPACT, DATA, EMITTED, keys_of, write, write_run
from integration_tests.test_sync_modes import configured, status

TYPES = ("list", "set", "sorted_set", "stream")
DATA2 = {"id": 2}
COMPACT2 = b'{"id":2}'


def compact(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def stage_of(key: str, prefix: str = "") -> str:
    """The staging key of a refresh of K: `<prefix>{K}:_airbyte_stage` (K's hash slot)."""
    return keys.sibling_key(key.encode(), keys.STAGE, prefix).decode()


def counter_of(key: str, prefix: str = "") -> str:
    """A list's batch counter: `<prefix>{K}:_airbyte_batch`."""
    return keys.sibling_key(key.encode(), keys.BATCHES, prefix).decode()


def stored(client: redis.Redis, cache_type: str, key: str) -> list[bytes]:
    """K's members as stored, in the type's order: LRANGE; SMEMBERS sorted; ZRANGE (by score);
    XRANGE (by id), its `_airbyte_data` fields."""
    if cache_type == "list":
        return list(client.lrange(key, 0, -1))  # type: ignore[arg-type]
    if cache_type == "set":
        return sorted(client.smembers(key))  # type: ignore[arg-type]
    if cache_type == "sorted_set":
        return list(client.zrange(key, 0, -1))  # type: ignore[arg-type]
    return [fields[b"_airbyte_data"] for _, fields in entries(client, key)]


def entries(client: redis.Redis, key: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
    return list(client.xrange(key))  # type: ignore[arg-type]


def scored(client: redis.Redis, key: str) -> list[bytes]:
    """ZRANGE .. WITHSCORES as the server sends it: member, score text, member, ..."""
    return list(client.execute_command("ZRANGE", key, 0, -1, "WITHSCORES"))


def vs(client: redis.Redis, cache_type: str, key: str) -> list[str]:
    """The records' "v" in K (a set: sorted, it has no order)."""
    values = [str(json.loads(member)["v"]) for member in stored(client, cache_type, key)]
    return sorted(values) if cache_type == "set" else values


def expect(cache_type: str, values: list[str]) -> list[str]:
    return sorted(values) if cache_type == "set" else values


def count_of(state: dict[str, Any]) -> float:
    return float(state["state"]["destinationStats"]["recordCount"])


# --- the layouts, byte for byte ------------------------------------------------------------------


def test_layouts_byte_for_byte_with_prefix_overrides_ttl_and_a_staged_swap(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """One run, a stream per case: list (duplicates kept), set (one member per distinct record),
    sorted_set by emitted_at (a record sent again keeps the later score) and by a score_field
    override (numbers as the source wrote them, float scores), a stream in a namespace (ids from
    emitted_at, seq + 1 where it does not grow), and a refresh staged and swapped over an older K
    with a TTL; all under key_prefix 'app:', types and TTLs by `streams` overrides."""
    client = redis_client
    client.rpush("app::staged", b"older sync")
    streams = [
        configured("l", "append"),
        configured("s", "append"),
        configured("z", "append"),
        configured("ranked", "append"),
        configured("events", "append", namespace="shop"),
        configured("events", "append"),  # same name, no namespace: the top-level list
        configured("staged", "overwrite", generation=1, minimum=1),
    ]
    overrides = [
        {"name": "s", "cache_type": "set", "ttl_seconds": 500},
        {"name": "z", "cache_type": "sorted_set"},
        {"name": "ranked", "cache_type": "sorted_set", "score_field": "rank"},
        {"name": "events", "namespace": "shop", "cache_type": "stream"},
        {"name": "staged", "ttl_seconds": 300},
    ]

    def raw(stream: str, data: str, emitted_at: int) -> str:
        """A record line with `data` as written (numbers such as 1e2 kept as text)."""
        return f'{{"type":"RECORD","record":{{"stream":"{stream}","data":{data},"emitted_at":{emitted_at}}}}}'

    ranked = [
        '{"id":1,"rank":2.5}',
        '{"id":2,"rank":-1}',
        '{"id":3,"rank":1e2}',
        '{"id":4, "rank": 12345678901234567890, "name": "Zo\\u00eb"}',
        '{"id":5,"rank":0.25}',
    ]
    result = write_run(
        redis_server,
        tmp_path,
        streams,
        *(record(n, d, emitted_at=EMITTED + i) for n in "lsz" for i, d in enumerate([DATA, DATA2, DATA])),
        *(raw("ranked", d, EMITTED) for d in ranked),
        record("events", DATA, emitted_at=EMITTED, namespace="shop"),
        record("events", {"id": 2}, emitted_at=EMITTED, namespace="shop"),  # same ms: seq 1
        record("events", {"id": 3}, emitted_at=EMITTED - 5, namespace="shop"),  # earlier: seq 2
        record("events", {"id": 4}, emitted_at=EMITTED + 10, namespace="shop"),
        record("events", {"id": 5}, emitted_at=EMITTED + 10, namespace="shop"),
        record("events", {"id": 9}),
        record("staged", {"id": 1, "v": "new1"}),
        record("staged", {"id": 2, "v": "new2"}),
        stream_state("l", {"cursor": 3}),
        cache_type="list",
        key_prefix="app:",
        streams=overrides,
    )
    assert [count_of(s) for s in result.states] == [3.0]
    assert keys_of(client) == {
        "app::l",
        counter_of("app::l", "app:"),
        "app::s",
        "app::z",
        "app::ranked",
        "app:shop:events",
        "app::events",
        counter_of("app::events", "app:"),
        "app::staged",
        counter_of("app::staged", "app:"),
        "app:_airbyte_meta::staged",
    }
    assert counter_of("app::l", "app:") == "app:{app::l}:_airbyte_batch"
    assert stage_of("app::staged", "app:") == "app:{app::staged}:_airbyte_stage"
    assert client.lrange("app::l", 0, -1) == [COMPACT, COMPACT2, COMPACT]
    assert client.get("app:{app::l}:_airbyte_batch") == b"1"  # one batch
    assert client.smembers("app::s") == {COMPACT, COMPACT2}
    assert scored(client, "app::z") == [COMPACT2, b"1700000000001", COMPACT, b"1700000000002"]
    assert scored(client, "app::ranked") == [
        b'{"id":2,"rank":-1}', b"-1",
        b'{"id":5,"rank":0.25}', b"0.25",
        b'{"id":1,"rank":2.5}', b"2.5",
        b'{"id":3,"rank":1e2}', b"100",
        '{"id":4,"rank":12345678901234567890,"name":"Zoë"}'.encode(), b"1.2345678901234567e+19",
    ]
    emitted, data = b"_airbyte_emitted_at", b"_airbyte_data"
    assert [(i, list(f.items())) for i, f in entries(client, "app:shop:events")] == [
        (b"1700000000000-0", [(emitted, b"1700000000000"), (data, COMPACT)]),
        (b"1700000000000-1", [(emitted, b"1700000000000"), (data, COMPACT2)]),
        (b"1700000000000-2", [(emitted, b"1699999999995"), (data, b'{"id":3}')]),
        (b"1700000000010-0", [(emitted, b"1700000000010"), (data, b'{"id":4}')]),
        (b"1700000000010-1", [(emitted, b"1700000000010"), (data, b'{"id":5}')]),
    ]
    assert client.lrange("app::events", 0, -1) == [b'{"id":9}']
    # The refresh: the older content is gone, the stage renamed over K with its TTL.
    assert client.lrange("app::staged", 0, -1) == [b'{"id":1,"v":"new1"}', b'{"id":2,"v":"new2"}']
    assert 0 < client.ttl("app::staged") <= 300
    assert client.hget("app:_airbyte_meta::staged", "status") == b"complete"
    assert 0 < client.ttl("app::s") <= 500
    for key in ("app::l", "app::z", "app::ranked", "app:shop:events", "app::events"):
        assert client.ttl(key) == -1, key


# --- the sync modes ------------------------------------------------------------------------------


def test_sync_modes_a_failed_refresh_its_retry_and_pyairbyte_generations(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Three syncs of five streams per type, `<case>_<type>`, under key_prefix 'p:':
    a: append twice adds (a stream's ids keep growing past an earlier emitted_at);
    o: legacy overwrite replaces;
    r: refresh overwrite: generation 1; then generation 2 fails before it completes (a line that
       is not JSON), leaving K as generation 1 and the stage holding what it wrote; its retried
       attempt keeps the stage, adds to it and swaps it in;
    p: PyAirbyte's append with generation = minimum = 1 onto a K from a legacy append: replaced
       at completion; run again: appends into K, no staging;
    e: an overwrite that completes with no records deletes K;
    n: a refresh whose input ends without its COMPLETE while other streams send statuses: K stays,
       the stage holds the records."""
    client = redis_client
    prefix = "p:"
    config = {
        "key_prefix": prefix,
        "streams": [{"name": f"{c}_{t}", "cache_type": t} for c in "aorpen" for t in TYPES],
    }
    emitted: dict[tuple[str, str], int] = {}

    def recs(case: str, *values: str) -> list[str]:
        out = []
        for v in values:
            for t in TYPES:
                at = EMITTED + 10 * (len(emitted) + 1)
                emitted[(f"{case}_{t}", v)] = at
                out.append(record(f"{case}_{t}", {"v": v}, emitted_at=at))
        return out

    def cat(case: str, mode: str, generation: int | None = None) -> list[dict[str, Any]]:
        return [configured(f"{case}_{t}", mode, generation=generation, minimum=generation) for t in TYPES]

    def done(*cases: str) -> list[str]:
        return [status(f"{c}_{t}", "COMPLETE") for c in cases for t in TYPES]

    def contents(case: str) -> dict[str, list[str]]:
        return {t: vs(client, t, f"p::{case}_{t}") for t in TYPES}

    def wanted(*values: str) -> dict[str, list[str]]:
        return {t: expect(t, list(values)) for t in TYPES}

    # Sync 1: no statuses, so the end of input completes every stream.
    write_run(
        redis_server,
        tmp_path,
        cat("a", "append") + cat("o", "overwrite") + cat("r", "overwrite", 1) + cat("p", "append")
        + cat("e", "overwrite", 1) + cat("n", "append"),
        *recs("a", "a1", "a2"), *recs("o", "o1", "o2"), *recs("r", "r1", "r2"), *recs("p", "p0"),
        *recs("e", "e1"), *recs("n", "n0"),
        **config,
    )
    assert contents("r") == wanted("r1", "r2")
    assert contents("e") == wanted("e1")
    assert not [k for k in keys_of(client) if "_airbyte_stage" in k]

    # Sync 2: a, o, p complete; r (generation 2) gets a state, then a line that is not JSON.
    a3_at = EMITTED  # a_stream: below its last id, from which the ids go on
    sent = [
        *(m for m in recs("a", "a3") if '"a_stream"' not in m),
        record("a_stream", {"v": "a3"}, emitted_at=a3_at),
        *recs("o", "o3"),
        *recs("p", "p1"),
        *recs("r", "r3"),
        *done("a", "o", "p"),
        *recs("r", "r4"),
        stream_state("r_list", {"cursor": 4}),
        *recs("r", "r5"),
    ]
    failed = write(
        redis_server,
        tmp_path,
        cat("a", "append") + cat("o", "overwrite") + cat("r", "overwrite", 2) + cat("p", "append", 1),
        lines(*sent, "this is not JSON"),
        **config,
    )
    assert failed.returncode != 0
    (error,) = failed.errors
    assert error["message"].startswith(f"Input line {len(sent) + 1} is not a valid Airbyte message: not JSON")
    assert [(s["state"]["stream"]["stream_descriptor"]["name"], count_of(s)) for s in failed.states] == [
        ("r_list", 2.0)
    ]
    assert contents("a") == wanted("a1", "a2", "a3")
    a1, a2 = emitted[("a_stream", "a1")], emitted[("a_stream", "a2")]
    assert [(i, f[b"_airbyte_emitted_at"]) for i, f in entries(client, "p::a_stream")] == [
        (b"%d-0" % a1, b"%d" % a1), (b"%d-0" % a2, b"%d" % a2), (b"%d-1" % a2, b"%d" % a3_at)
    ]
    assert contents("o") == wanted("o3")
    assert contents("p") == wanted("p1")  # the legacy p0 replaced when generation 1 completed
    assert contents("r") == wanted("r1", "r2")  # K whole: generation 2 did not complete
    assert {t: vs(client, t, stage_of(f"p::r_{t}", prefix)) for t in TYPES} == wanted("r3", "r4", "r5")
    assert client.hget("p:_airbyte_meta::r_list", "status") == b"running"
    assert contents("e") == wanted("e1")

    # Sync 3: the retried attempt of generation 2; p's generation 1 again; e's generation 2 empty;
    # n's generation 1 never completes.
    write_run(
        redis_server,
        tmp_path,
        cat("r", "overwrite", 2) + cat("p", "append", 1) + cat("e", "overwrite", 2)
        + cat("n", "overwrite", 1),
        *recs("r", "r6"), *recs("p", "p2"), *recs("n", "n1"), *done("r", "p", "e"),
        **config,
    )
    assert contents("r") == wanted("r3", "r4", "r5", "r6")
    assert contents("p") == wanted("p1", "p2")
    assert [i for i, _ in entries(client, "p::r_stream")] == [
        b"%d-0" % emitted[("r_stream", v)] for v in ("r3", "r4", "r5", "r6")
    ]
    assert contents("n") == wanted("n0")
    assert {t: vs(client, t, stage_of(f"p::n_{t}", prefix)) for t in TYPES} == wanted("n1")
    found = keys_of(client)
    assert found == {
        *(f"p::{c}_{t}" for c in "aorpn" for t in TYPES),
        *(stage_of(f"p::n_{t}", prefix) for t in TYPES),
        *(counter_of(f"p::{c}_list", prefix) for c in "aorpen"),
        *(f"p:_airbyte_meta::{c}_{t}" for c in "rpen" for t in TYPES),
    }, found  # e's K deleted, the completed stages renamed away
    statuses = {(c, client.hget(f"p:_airbyte_meta::{c}_{t}", "status")) for c in "rpen" for t in TYPES}
    assert statuses == {("r", b"complete"), ("p", b"complete"), ("e", b"complete"), ("n", b"running")}


# --- refusals ------------------------------------------------------------------------------------


def test_refusals_before_anything_is_written(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """append_dedup with a collection type, and an append keeping generations 2 to 3 of a
    collection: config errors before any write, not even the other stream's."""
    redis_client.set("unrelated", b"x")
    dedup = write(
        redis_server,
        tmp_path,
        [configured("a", "append"), configured("d", "append_dedup", [["id"]])],
        lines(record("a", {"id": 1}), record("d", {"id": 1})),
        streams=[{"name": "d", "cache_type": "sorted_set"}],
    )
    assert dedup.returncode != 0
    (error,) = dedup.errors
    assert error["failure_type"] == "config_error"
    assert error["message"].startswith(
        "Stream 'd': cache_type 'sorted_set' cannot take append_dedup: the stream's records are "
        "members of one key"
    ), error
    partial = write(
        redis_server,
        tmp_path,
        [configured("a", "append"), configured("g", "append", generation=3, minimum=2)],
        lines(record("a", {"id": 1}), record("g", {"id": 1})),
        cache_type="list",
    )
    assert partial.returncode != 0
    (error,) = partial.errors
    assert error["failure_type"] == "config_error"
    assert error["message"].startswith(
        "Stream 'g': cache_type 'list' cannot keep generations 2 to 3 and remove older ones "
        "(minimum_generation_id 2)"
    ), error
    assert keys_of(redis_client) == {"unrelated"}


def test_score_field_refuses_a_record_without_a_number_naming_its_line(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """A record whose score_field is missing (then: a string) ends the sync at its line: what came
    before is in Redis (other streams too) and its state emitted, nothing after it is written."""
    streams = [configured("ranked", "append"), configured("l", "append")]
    config = {
        "cache_type": "sorted_set", "score_field": "rank", "streams": [{"name": "l", "cache_type": "list"}]
    }
    missing = write(
        redis_server,
        tmp_path,
        streams,
        lines(
            record("ranked", {"id": 1, "rank": 3}),
            record("l", {"id": 1}),
            stream_state("ranked", {"cursor": 1}),
            record("ranked", {"id": 2, "rank": -0.5}),
            record("ranked", {"id": 3, "other": 1}),  # line 5
            record("ranked", {"id": 4, "rank": 4}),
            record("l", {"id": 2}),
        ),
        **config,
    )
    assert missing.returncode != 0
    (error,) = missing.errors
    assert error["message"] == (
        "Input line 5: cache_type 'sorted_set' scores records by 'rank' (score_field), and this "
        "record's 'rank' is missing or null, not a number. Everything before it was written and its "
        "states emitted."
    )
    assert [count_of(s) for s in missing.states] == [1.0]
    assert scored(redis_client, ":ranked") == [b'{"id":2,"rank":-0.5}', b"-0.5", b'{"id":1,"rank":3}', b"3"]
    assert redis_client.lrange(":l", 0, -1) == [b'{"id":1}']
    text = write(
        redis_server,
        tmp_path,
        streams,
        lines(record("ranked", {"id": 5, "rank": 5}), record("ranked", {"id": 6, "rank": "12"})),
        **config,
    )
    assert text.returncode != 0
    (error,) = text.errors
    assert error["message"].startswith(
        "Input line 2: cache_type 'sorted_set' scores records by 'rank' (score_field), and this "
        "record's 'rank' is a string, not a number."
    ), error
    assert scored(redis_client, ":ranked")[-2:] == [b'{"id":5,"rank":5}', b"5"]
    assert redis_client.zcard(":ranked") == 3


# --- check ---------------------------------------------------------------------------------------


def test_check_probes_exactly_the_chosen_types_commands_and_their_sibling_keys(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """Every collection type passes on 7.0 and leaves no probe key; a user without XADD and RENAME
    fails naming them (RENAME for any collection: the refresh's swap; not for hash); a user
    limited to ~app:* passes with key_prefix 'app:' (stage and counter start with it); a user
    limited to the probe keys' own pattern is refused the sibling keys `{K}:...` it needs."""
    overrides = [
        {"name": "s", "cache_type": "set"},
        {"name": "z", "cache_type": "sorted_set", "score_field": "rank"},
        {"name": "x", "cache_type": "stream"},
    ]
    result, message = check_here(redis_server.config(cache_type="list", streams=overrides))
    assert result == "SUCCEEDED", message
    assert "the layouts 'list', 'set', 'sorted_set', 'stream' can be written" in message
    assert redis_client.dbsize() == 0
    users = {
        "no-xadd-rename": ["~*", "+@all", "-xadd", "-rename"],
        "app": ["~app:*", "+@all"],
        "probe-only": ["~_airbyte_check:*", "+@all"],
    }
    for user, rules in users.items():
        redis_client.execute_command("ACL", "SETUSER", user, "on", ">pw", *rules)
    try:
        def as_user(user: str, **config: Any) -> tuple[str, str]:
            return check_here(redis_server.config(username=user, password="pw", **config))  # noqa: S106

        result, message = as_user("no-xadd-rename", cache_type="stream")
        assert result == "FAILED", message
        assert "the ACL user 'no-xadd-rename' may not run RENAME, XADD, which the 'stream' layout needs" in (
            message
        ), message
        result, message = as_user("no-xadd-rename", cache_type="set")
        assert result == "FAILED", message
        assert "may not run RENAME, which the 'set' layout needs" in message, message
        assert as_user("no-xadd-rename", cache_type="hash")[0] == "SUCCEEDED"
        result, message = as_user("app", cache_type="list", key_prefix="app:")
        assert result == "SUCCEEDED", message
        result, message = as_user("probe-only", cache_type="list")
        assert result == "FAILED", message
        assert "may not access the probe keys '_airbyte_check:*'" in message, message
        assert "~_airbyte_check:* ~<namespace>:* ~_airbyte_meta:* ~{*" in message, message
        assert redis_client.dbsize() == 0
    finally:
        for user in users:
            redis_client.execute_command("ACL", "DELUSER", user)


def test_a_user_granted_the_key_patterns_check_asks_for_can_run_a_staged_refresh(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """check's advice to a user refused the probe keys names key patterns; a user given exactly
    those passes check, so a refresh of a collection (stage, counter, generation bookkeeping
    `_airbyte_meta:<namespace>:<stream>`) must then run."""
    redis_client.execute_command("ACL", "SETUSER", "narrow", "on", ">pw", "~_airbyte_check:*", "+@all")
    try:
        config = {"username": "narrow", "password": "pw", "cache_type": "list"}
        result, message = check_here(redis_server.config(**config))
        assert result == "FAILED", message
        advice = message.split("(e.g. ACL SETUSER narrow ", 1)[1].split(")", 1)[0]
        patterns = advice.replace("<namespace>", "").split()  # the stream below has no namespace
        assert all(p.startswith("~") for p in patterns), advice
        redis_client.execute_command("ACL", "SETUSER", "narrow", "resetkeys", *patterns)
        result, message = check_here(redis_server.config(**config))
        assert result == "SUCCEEDED", (patterns, message)
        refresh = write(
            redis_server,
            tmp_path,
            [configured("s", "overwrite", generation=1, minimum=1)],
            lines(record("s", {"id": 1})),
            **config,
        )
        assert refresh.errors == [], (patterns, refresh.errors)
        assert refresh.returncode == 0
        assert redis_client.lrange(":s", 0, -1) == [b'{"id":1}']
    finally:
        redis_client.execute_command("ACL", "DELUSER", "narrow")


# --- every server of the matrix ------------------------------------------------------------------


@pytest.mark.core
def test_collections_on_this_server(
    redis_server: RedisServer, redis_client: redis.Redis, redis_binary: ServerBinary, tmp_path: Path
) -> None:
    """list, set, sorted_set and (Redis 5.0+) stream: one run that appends onto a K already
    holding a member (a stream's ids go on from its last one) and refreshes another K by a staged
    swap (with TTL), per type; a name with a brace gets a sibling key found by slot. Then check
    passes and leaves no key. Before 5.0, stream fails check with the gate and write refuses it
    before writing. On the cluster: K, stage and counter in one slot."""
    client = redis_client
    has_xadd = redis_binary.redis_version >= (5, 0, 0)
    types = [t for t in TYPES if has_xadd or t != "stream"]
    prefix = "c:"

    def settings(*chosen: str) -> dict[str, Any]:
        overrides: list[dict[str, Any]] = [{"name": f"a_{t}", "cache_type": t} for t in chosen]
        overrides += [{"name": f"r_{t}", "cache_type": t, "ttl_seconds": 300} for t in chosen]
        overrides.append({"name": "a_sorted_set", "score_field": "rank"})
        return {"key_prefix": prefix, "cache_type": "list", "streams": overrides}

    client.rpush("c::a_list", b"old")
    client.sadd("c::a_set", b"old")
    client.zadd("c::a_sorted_set", {b"old": 1})
    client.rpush("c::r_list", b"old")
    client.sadd("c::r_set", b"old")
    client.zadd("c::r_sorted_set", {b"old": 1})
    client.rpush("c::a}b", b"old")
    if has_xadd:
        # The append reads K's last id with XINFO STREAM K, whose key is its third word: on the
        # cluster it must be routed by K (slot 7146), not by "STREAM" (slot 11226, another primary).
        client.xadd("c::a_stream", {b"old": b"1"}, id=b"1700000000100-0")
        client.xadd("c::r_stream", {b"old": b"1"}, id=b"1-1")
    streams = [configured(f"a_{t}", "append") for t in types]
    streams += [configured(f"r_{t}", "overwrite", generation=1, minimum=1) for t in types]
    streams.append(configured("a}b", "overwrite", generation=1, minimum=1))
    data = {v: {"v": v, "rank": rank} for v, rank in (("a1", 2.5), ("a2", -1), ("r1", 0), ("r2", 0))}
    write_run(
        redis_server,
        tmp_path,
        streams,
        *(
            record(f"{c}_{t}", data[f"{c}{n}"], emitted_at=EMITTED + n)
            for c in "ar" for t in types for n in (1, 2)
        ),
        record("a}b", {"v": "x"}),
        **settings(*types),
    )
    a1, a2, r1, r2 = (compact(data[v]) for v in ("a1", "a2", "r1", "r2"))
    assert client.lrange("c::a_list", 0, -1) == [b"old", a1, a2]
    assert client.smembers("c::a_set") == {b"old", a1, a2}
    assert scored(client, "c::a_sorted_set") == [a2, b"-1", b"old", b"1", a1, b"2.5"]
    assert client.lrange("c::r_list", 0, -1) == [r1, r2]
    assert client.smembers("c::r_set") == {r1, r2}
    assert scored(client, "c::r_sorted_set") == [r1, b"1700000000001", r2, b"1700000000002"]
    assert client.lrange("c::a}b", 0, -1) == [b'{"v":"x"}']
    if has_xadd:
        emitted = b"_airbyte_emitted_at"
        assert entries(client, "c::a_stream") == [
            (b"1700000000100-0", {b"old": b"1"}),  # ids go on from the last one (XINFO)
            (b"1700000000100-1", {emitted: b"1700000000001", b"_airbyte_data": a1}),
            (b"1700000000100-2", {emitted: b"1700000000002", b"_airbyte_data": a2}),
        ]
        assert entries(client, "c::r_stream") == [
            (b"1700000000001-0", {emitted: b"1700000000001", b"_airbyte_data": r1}),
            (b"1700000000002-0", {emitted: b"1700000000002", b"_airbyte_data": r2}),
        ]
    lists = ["c::a_list", "c::r_list", "c::a}b"]
    found = keys_of(client)
    assert found == {
        *(f"c::{c}_{t}" for c in "ar" for t in types),
        "c::a}b",
        *(counter_of(key, prefix) for key in lists),
        *(f"c:_airbyte_meta::r_{t}" for t in types),
        "c:_airbyte_meta::a}b",
    }, found  # no stage left
    for key in lists:  # the counter (and the stage, gone now) hash like K: one MULTI, one RENAME
        assert key_slot(counter_of(key, prefix).encode()) == key_slot(key.encode())
        assert key_slot(stage_of(key, prefix).encode()) == key_slot(key.encode())
    assert stage_of("c::a}b", prefix).startswith("c::a}b:_airbyte_stage:")  # no usable hash tag
    for t in types:
        assert 0 < client.ttl(f"c::r_{t}") <= 300, t
        assert client.ttl(f"c::a_{t}") == -1, t

    result, message = check_here(redis_server.config(**settings(*types)))
    assert result == "SUCCEEDED", message
    assert keys_of(client) == found  # the probe keys are gone
    if has_xadd:
        return
    gate = (
        f"cache_type 'stream' needs Redis 5.0 or later (XADD); this server is Redis "
        f"{redis_binary.version_text}. Upgrade the server, or choose another cache type"
    )
    result, message = check_here(redis_server.config(**settings(*TYPES)))
    assert (result, message[: len(gate)]) == ("FAILED", gate), message
    refused = write(
        redis_server,
        tmp_path,
        [configured("a_list", "append"), configured("a_stream", "append")],
        lines(record("a_list", {"v": "late"}), record("a_stream", {"v": "late"})),
        **settings(*TYPES),
    )
    assert refused.returncode != 0
    (error,) = refused.errors
    assert error["failure_type"] == "config_error"
    assert error["message"].startswith(gate), error
    assert keys_of(client) == found
    assert client.lrange("c::a_list", 0, -1) == [b"old", a1, a2]
