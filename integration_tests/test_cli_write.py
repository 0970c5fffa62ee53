"""`write` end to end as a user runs it: the console script, JSON lines on stdin, states on stdout,
records checked in a real redis-server key by key and byte by byte.

Each test runs the connector as a subprocess (about a second of start-up each), so related checks
share one run where they do not interfere.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from integration_tests.cli import Result, catalog, lines, record, run_connector, stream_state
from integration_tests.servers import RedisServer

EMITTED = 1_700_000_000_000
WRITE_ARGS = ["write", "--config", "{config}", "--catalog", "{catalog}"]


def write(tmp_path: Path, server: RedisServer, configured: dict[str, Any], *messages: str) -> Result:
    return run_connector(
        WRITE_ARGS, tmp_path, config=server.config(), catalog=configured, stdin=lines(*messages)
    )


def compact(data: Any) -> str:
    """The text the connector must store: compact JSON, non-ASCII as is."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def keys_of(client: redis.Redis) -> set[str]:
    return {_text(key) for key in client.keys("*")}  # our own test server: KEYS is fine here


def hash_at(client: redis.Redis, key: str) -> dict[str, str]:
    return {_text(field): _text(value) for field, value in client.hgetall(key).items()}


def put_hash(client: redis.Redis, key: str, fields: dict[str, str]) -> None:
    # HMSET: multi-field HSET needs Redis 4.0, and these tests also run on older servers (core).
    client.execute_command("HMSET", key, *(part for item in fields.items() for part in item))


def stored(record_id: int, data: Any, emitted_at: int = EMITTED) -> dict[str, str]:
    return {
        "_airbyte_ab_id": str(record_id),
        "_airbyte_emitted_at": str(emitted_at),
        "_airbyte_data": compact(data),
    }


def stream_keys(key: str, count: int) -> set[str]:
    """The keys of the hash layout for `count` records: the counter and K:1..K:count."""
    return {key} | {f"{key}:{i}" for i in range(1, count + 1)}


def assert_stream(client: redis.Redis, key: str, records: list[Any], first_id: int = 1) -> None:
    """K:first_id.. hold exactly these records, in order, and the counter is at the last id."""
    last = first_id + len(records) - 1
    assert client.get(key) == str(last).encode(), f"counter {key}"
    for offset, data in enumerate(records):
        record_id = first_id + offset
        assert hash_at(client, f"{key}:{record_id}") == stored(record_id, data), f"{key}:{record_id}"
        # byte for byte: UTF-8, not \\u escapes
        assert client.hget(f"{key}:{record_id}", "_airbyte_data") == compact(data).encode()


def assert_ok(result: Result) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.errors == [], result.errors
    assert "Traceback" not in result.stderr, result.stderr


def assert_failed(result: Result, *expected: str) -> dict[str, Any]:
    """A failed sync: exit status non-zero, one TRACE error saying why, no traceback noise."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    for log in result.of_type("LOG"):
        assert "Traceback" not in log["log"]["message"], log
    (error,) = result.errors
    for text in expected:
        assert text in error["message"], f"{text!r} not in {error['message']!r}"
    return error


def with_count(state_line: str, count: int) -> dict[str, Any]:
    """The state as the connector must echo it: every field kept, destinationStats.recordCount set."""
    message: dict[str, Any] = json.loads(state_line)
    message["state"].setdefault("destinationStats", {})["recordCount"] = count
    return message


def global_state(shared: dict[str, Any], **extra: Any) -> str:
    return json.dumps(
        {"type": "STATE", "state": {"type": "GLOBAL", "global": {"shared_state": shared}}, **extra}
    )


# append and overwrite ---------------------------------------------------------------------------


@pytest.mark.core
def test_two_syncs_append_continues_ids_and_overwrite_replaces(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    redis_client.set("unrelated", "keep me")
    put_hash(redis_client, "other:users:1", {"x": "y"})
    configured = catalog(("users", "append"), ("orders", "overwrite"))

    def sync(run: int, users: int, orders: int) -> Result:
        return write(
            tmp_path,
            redis_server,
            configured,
            *(record("users", {"id": i, "run": run}) for i in range(1, users + 1)),
            *(record("orders", {"id": i, "run": run}) for i in range(1, orders + 1)),
        )

    assert_ok(sync(1, users=3, orders=5))
    first_users = [{"id": i, "run": 1} for i in range(1, 4)]
    assert_stream(redis_client, ":users", first_users)
    assert_stream(redis_client, ":orders", [{"id": i, "run": 1} for i in range(1, 6)])
    assert_ok(sync(2, users=3, orders=3))

    # append: ids continue 4..6, the first sync's records are untouched
    assert_stream(redis_client, ":users", first_users + [{"id": i, "run": 2} for i in range(1, 4)])
    # overwrite: exactly the second sync's records, ids 1..3 again
    assert_stream(redis_client, ":orders", [{"id": i, "run": 2} for i in range(1, 4)])
    assert keys_of(redis_client) == stream_keys(":users", 6) | stream_keys(":orders", 3) | {
        "unrelated",
        "other:users:1",
    }
    assert redis_client.get("unrelated") == b"keep me"
    assert hash_at(redis_client, "other:users:1") == {"x": "y"}


@pytest.mark.core
def test_overwrite_without_records_still_deletes_the_streams_keys(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    for i in (1, 2, 3):
        put_hash(redis_client, f":users:{i}", stored(i, {"old": i}))
        put_hash(redis_client, f"shop:orders:{i}", stored(i, {"old": i}))
    redis_client.set(":users", 3)
    redis_client.set("shop:orders", 3)
    put_hash(redis_client, ":users:abc", {"x": "y"})
    configured = catalog(("users", "overwrite"), ("orders", "overwrite", "shop"))
    state = stream_state("users", {"cursor": 1}, id=1)

    result = write(tmp_path, redis_server, configured, state)

    assert_ok(result)
    assert keys_of(redis_client) == {":users:abc"}
    assert result.states == [with_count(state, 0)]


@pytest.mark.core
def test_overwrite_touches_only_the_streams_own_keys(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    overwritten = ["users", "we*ird", "wh?t", "x[ab]", "back\\slash"]
    owned = {":users", ":users:1", ":users:2", ":users:7", ":users:123456789012"}
    for name in overwritten[1:]:
        owned |= {f":{name}", f":{name}:1", f":{name}:2"}
    look_alikes = {
        ":users:12:x": "hash",
        ":users:abc": "hash",
        ":users:1x": "string",
        ":users:": "string",
        ":users::1": "hash",
        ":users2:1": "hash",
        ":users2": "string",
        ":users-extra": "string",
        ":Users:1": "hash",
        "shop:users:1": "hash",
        "users:1": "hash",
        ":weXird": "string",
        ":weXird:1": "hash",
        ":we*irdo:1": "hash",
        ":whXt:1": "hash",
        ":xa:1": "hash",
        ":xb:1": "hash",
        ":backslash:1": "hash",
        ":back\\\\slash:1": "hash",
        ":orders": "string",  # a stream of the catalog that gets no record
        ":orders:1": "hash",
    }
    for key in owned:
        if key.rsplit(":", 1)[-1].isdigit() and key.count(":") == 2:
            put_hash(redis_client, key, stored(0, {"old": key}))
        else:
            redis_client.set(key, 99)
    for key, kind in look_alikes.items():
        if kind == "hash":
            put_hash(redis_client, key, {"_airbyte_data": f'{{"key":{json.dumps(key)}}}'})
        else:
            redis_client.set(key, "7")
    before = {key: redis_client.dump(key) for key in look_alikes}
    configured = catalog(*((name, "overwrite") for name in overwritten), ("orders", "append"))

    result = write(
        tmp_path,
        redis_server,
        configured,
        *(record(name, {"new": name, "n": n}) for name in overwritten for n in (1, 2)),
    )

    assert_ok(result)
    expected = set(look_alikes)
    for name in overwritten:
        expected |= stream_keys(f":{name}", 2)
        assert_stream(redis_client, f":{name}", [{"new": name, "n": 1}, {"new": name, "n": 2}])
    assert keys_of(redis_client) == expected
    assert {key: redis_client.dump(key) for key in look_alikes} == before


# the hash layout and what is stored -----------------------------------------------------------


@pytest.mark.core
def test_hash_layout_and_values_are_stored_exactly(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    deep: dict[str, Any] = {"leaf": "bottom"}
    for level in range(100):
        deep = {"d": deep, "level": level}
    values: list[dict[str, Any]] = [
        {"id": 1, "name": "plain"},
        {"text": "line1\nline2\r\nline3\ttab\u2028sep", "quote": 'say "hi" \\ back', "slash": "a/b"},
        {
            "emoji": "😀🎉👩‍👩‍👧",
            "cjk": "東京都 北京",
            "accents": "àéîõü ñ ç Zoë",
            "rtl": "שלום",
            "nul": "a\u0000b",
        },
        deep,
        {
            "big": 2**70,
            "max": 1e308,
            "negzero": -0.0,
            "tiny": 1.5e-300,
            "huge": 123456789012345678901234567890,
        },
        {"neg": -5, "float": 0.1, "zero": 0, "exp": 1e-7, "int64": 2**63 - 1, "below": -(2**63)},
        {"empty_obj": {}, "empty_str": "", "empty_list": [], "null": None, "t": True, "f": False},
        {},
        {"": "empty key", " ": "space key", "nested": [[[]], [{}], [""]]},
    ]
    configured = catalog(("users", "append"), ("50%off", "append"))
    configured["streams"][0]["stream"]["namespace"] = None  # explicit null namespace in the catalog
    escaped = json.dumps(  # ensure_ascii: \u escapes that must be stored as UTF-8
        {
            "type": "RECORD",
            "record": {"stream": "users", "data": {"name": "Zoë 東京 😀"}, "emitted_at": EMITTED},
        }
    )
    null_namespace = json.dumps(
        {
            "type": "RECORD",
            "record": {"stream": "users", "namespace": None, "data": {"ns": None}, "emitted_at": EMITTED},
        }
    )
    messages = [record("users", data) for data in values]
    messages += [
        escaped,
        null_namespace,
        record("users", {"ns": ""}, namespace=""),
        record("50%off", {"pct": "%s %d %%"}, emitted_at=1),
    ]

    result = write(tmp_path, redis_server, configured, *messages)

    assert_ok(result)
    assert keys_of(redis_client) == stream_keys(":users", 12) | stream_keys(":50%off", 1)
    assert_stream(redis_client, ":users", [*values, {"name": "Zoë 東京 😀"}, {"ns": None}, {"ns": ""}])
    assert hash_at(redis_client, ":50%off:1") == stored(1, {"pct": "%s %d %%"}, emitted_at=1)
    assert redis_client.get(":50%off") == b"1"
    for i, data in enumerate(values, 1):
        assert redis_client.type(f":users:{i}") == b"hash"
        assert redis_client.hlen(f":users:{i}") == 3
        assert json.loads(redis_client.hget(f":users:{i}", "_airbyte_data") or b"") == data


@pytest.mark.core
def test_namespaces_same_stream_name_and_records_without_namespace(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    configured = catalog(("users", "append", "a"), ("users", "append", "b"), ("orders", "append", "shop"))
    null_namespace = json.dumps(
        {
            "type": "RECORD",
            "record": {"stream": "orders", "namespace": None, "data": {"o": 2}, "emitted_at": EMITTED},
        }
    )
    result = write(
        tmp_path,
        redis_server,
        configured,
        record("users", {"u": "a1"}, namespace="a"),
        record("users", {"u": "b1"}, namespace="b"),
        record("orders", {"o": 1}),  # no namespace: the configured stream's, "shop"
        record("users", {"u": "a2"}, namespace="a"),
        null_namespace,
        record("orders", {"o": 3}, namespace=""),
    )

    assert_ok(result)
    assert keys_of(redis_client) == stream_keys("a:users", 2) | stream_keys("b:users", 1) | stream_keys(
        "shop:orders", 3
    )
    assert_stream(redis_client, "a:users", [{"u": "a1"}, {"u": "a2"}])
    assert_stream(redis_client, "b:users", [{"u": "b1"}])
    assert_stream(redis_client, "shop:orders", [{"o": 1}, {"o": 2}, {"o": 3}])


# the state contract ---------------------------------------------------------------------------


@pytest.mark.core
def test_interleaved_streams_state_order_ids_unknown_fields_and_counts(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    configured = catalog(("users", "append"), ("orders", "append", "shop"))
    users_state = json.dumps(
        {
            "type": "STATE",
            "id": 1,
            "x_top": {"kept": [1, "two", None]},
            "state": {
                "type": "STREAM",
                "stream": {
                    "stream_descriptor": {"name": "users", "namespace": None},
                    "stream_state": {"cursor": "2024-01-02T03:04:05Z", "nested": {"ü": [1.5, True]}},
                    "x_stream": "kept",
                },
                "sourceStats": {"recordCount": 2.0},
                "x_state": {"kept": True},
            },
        }
    )
    orders_state = stream_state("orders", {"cursor": 3}, namespace="shop", id=2)
    users_again = stream_state("users", {"cursor": "2024-01-03"}, id=3)
    orders_empty = stream_state("orders", {"cursor": 3}, namespace="shop", id=4)
    result = write(
        tmp_path,
        redis_server,
        configured,
        record("users", {"u": 1}),
        record("orders", {"o": 1}, namespace="shop"),
        record("users", {"u": 2}),
        record("orders", {"o": 2}, namespace="shop"),
        record("orders", {"o": 3}, namespace="shop"),
        users_state,
        orders_state,
        record("users", {"u": 3}),
        record("orders", {"o": 4}),
        users_again,
        orders_empty,
    )

    assert_ok(result)
    assert result.states == [
        with_count(users_state, 2),
        with_count(orders_state, 3),
        with_count(users_again, 1),
        with_count(orders_empty, 1),
    ]
    assert keys_of(redis_client) == stream_keys(":users", 3) | stream_keys("shop:orders", 4)
    assert_stream(redis_client, ":users", [{"u": 1}, {"u": 2}, {"u": 3}])
    assert_stream(redis_client, "shop:orders", [{"o": 1}, {"o": 2}, {"o": 3}, {"o": 4}])


def _script() -> str:
    found = shutil.which("destination-redis", path=str(Path(sys.executable).parent))
    assert found, "the console script is not installed next to this Python"
    return found


def _read_until_state(proc: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    """The next STATE on the connector's stdout, waiting at most `timeout` seconds."""
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not selector.select(timeout=deadline - time.monotonic()):
                break
            line = proc.stdout.readline()
            if not line:
                break
            message: dict[str, Any] = json.loads(line)
            if message["type"] == "STATE":
                return message
    finally:
        selector.close()
    raise AssertionError(f"no STATE on stdout within {timeout}s while the input stays open")


@pytest.mark.core
def test_state_is_emitted_at_once_and_only_after_its_records_are_in_redis(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """The input stays open: the state must come out because of its records, not end of input."""
    (tmp_path / "config.json").write_text(json.dumps(redis_server.config()))
    (tmp_path / "catalog.json").write_text(json.dumps(catalog(("users", "append"))))
    argv = [
        _script(),
        "write",
        "--config",
        str(tmp_path / "config.json"),
        "--catalog",
        str(tmp_path / "catalog.json"),
    ]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdin is not None
    try:
        first = stream_state("users", {"cursor": 3}, id=1)
        proc.stdin.write(lines(*(record("users", {"n": n}) for n in (1, 2, 3)), first).encode())
        proc.stdin.flush()
        assert _read_until_state(proc, timeout=30) == with_count(first, 3)
        assert_stream(redis_client, ":users", [{"n": 1}, {"n": 2}, {"n": 3}])

        second = stream_state("users", {"cursor": 4}, id=2)
        proc.stdin.write(lines(record("users", {"n": 4}), second).encode())
        proc.stdin.flush()
        assert _read_until_state(proc, timeout=30) == with_count(second, 1)
        assert_stream(redis_client, ":users", [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}])
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.core
def test_big_input_crosses_batches_with_exact_ids_and_counts(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    total = 25_000
    configured = catalog(("users", "append"), ("orders", "append"))
    messages: list[str] = []
    states: list[str] = []
    for i in range(total):
        stream = "users" if i % 2 == 0 else "orders"
        messages.append(record(stream, {"i": i, "s": stream, "pad": "x" * (i % 50)}))
        if (i + 1) % 6_000 == 0:
            states.append(global_state({"at": i}, id=len(states) + 1))
            messages.append(states[-1])
    states.append(global_state({"at": "end"}, id=len(states) + 1))
    messages.append(states[-1])

    result = write(tmp_path, redis_server, configured, *messages)

    assert_ok(result)
    assert result.states == [with_count(state, 6_000) for state in states[:-1]] + [
        with_count(states[-1], 1_000)
    ]
    assert redis_client.dbsize() == total + 2
    assert redis_client.get(":users") == b"12500"
    assert redis_client.get(":orders") == b"12500"
    pipe = redis_client.pipeline(transaction=False)
    for n in range(1, 12_501):
        pipe.hmget(f":users:{n}", "_airbyte_ab_id", "_airbyte_data")
        pipe.hmget(f":orders:{n}", "_airbyte_ab_id", "_airbyte_data")
    replies = pipe.execute()
    for n in range(1, 12_501):
        for offset, stream, i in ((0, "users", 2 * (n - 1)), (1, "orders", 2 * (n - 1) + 1)):
            reply = replies[2 * (n - 1) + offset]
            assert reply == [str(n).encode(), compact({"i": i, "s": stream, "pad": "x" * (i % 50)}).encode()]


def test_non_record_messages_and_blank_lines_are_accepted_and_not_written(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """Also: the configured database index is the one written to."""

    def status(state: str) -> str:
        return json.dumps(
            {
                "type": "TRACE",
                "trace": {
                    "type": "STREAM_STATUS",
                    "emitted_at": EMITTED,
                    "stream_status": {"stream_descriptor": {"name": "users"}, "status": state},
                },
            }
        )

    log = json.dumps({"type": "LOG", "log": {"level": "INFO", "message": "source says hi"}})
    estimate = json.dumps(
        {
            "type": "TRACE",
            "trace": {
                "type": "ESTIMATE",
                "emitted_at": EMITTED,
                "estimate": {"name": "users", "type": "STREAM", "row_estimate": 2},
            },
        }
    )
    control = json.dumps(
        {
            "type": "CONTROL",
            "control": {"type": "CONNECTOR_CONFIG", "emitted_at": EMITTED, "connectorConfig": {"config": {}}},
        }
    )
    state = stream_state("users", {"cursor": 2}, id=1)
    messages = [
        log,
        status("STARTED"),
        "",
        record("users", {"n": 1}),
        "   ",
        estimate,
        control,
        status("RUNNING"),
        record("users", {"n": 2}) + "\r",  # CRLF line ending
        "\t",
        state,
        status("COMPLETE"),
        "",
    ]
    result = run_connector(
        WRITE_ARGS,
        tmp_path,
        config=redis_server.config(db=2),
        catalog=catalog(("users", "append")),
        stdin=lines(*messages),
    )

    assert_ok(result)
    assert redis_client.dbsize() == 0  # database 0 untouched
    db2 = redis_server.client(db=2)
    assert keys_of(db2) == stream_keys(":users", 2)
    assert_stream(db2, ":users", [{"n": 1}, {"n": 2}])
    assert result.states == [with_count(state, 2)]
    db2.close()


# bad input and refused writes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ('{"type": "RECORD", "record": {"stream": "users", "data": {"a": 4}', "not JSON"),
        (json.dumps({"type": "RECORD", "record": {"stream": "users", "emitted_at": EMITTED}}), "data"),
    ],
    ids=["not-json", "record-without-data"],
)
def test_bad_line_stops_the_sync_after_writing_everything_before_it(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis, bad: str, problem: str
) -> None:
    first_state = stream_state("users", {"cursor": 2}, id=1)
    result = write(
        tmp_path,
        redis_server,
        catalog(("users", "append"), ("orders", "append")),
        record("users", {"n": 1}),
        record("orders", {"o": 1}),
        record("users", {"n": 2}),
        first_state,
        record("users", {"n": 3}),  # after the state, before the bad line: written, no state
        bad,  # line 6
        record("users", {"n": 4}),
        stream_state("users", {"cursor": 4}, id=2),
    )

    assert_failed(result, "line 6", problem)
    assert result.states == [with_count(first_state, 2)]
    assert keys_of(redis_client) == stream_keys(":users", 3) | stream_keys(":orders", 1)
    assert_stream(redis_client, ":users", [{"n": 1}, {"n": 2}, {"n": 3}])
    assert_stream(redis_client, ":orders", [{"o": 1}])


def test_record_of_an_unknown_stream_is_a_clear_error(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    first_state = stream_state("users", {"cursor": 1}, id=1)
    result = write(
        tmp_path,
        redis_server,
        catalog(("users", "append")),
        record("users", {"n": 1}),
        first_state,
        record("payments", {"p": 1}),
        record("users", {"n": 2}),
        stream_state("users", {"cursor": 2}, id=2),
    )

    error = assert_failed(result, "Input line 3:", "'payments'", "configured streams: 'users'")
    assert error["failure_type"] == "config_error"
    assert result.states == [with_count(first_state, 1)]
    assert keys_of(redis_client) == stream_keys(":users", 1)


@pytest.mark.core
@pytest.mark.parametrize(
    ("taken", "kind"),
    [(":users:1", "string"), (":users", "hash")],
    ids=["record-key-is-a-string", "counter-is-a-hash"],
)
def test_existing_key_of_another_type_is_a_clear_error_and_no_state_follows(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis, taken: str, kind: str
) -> None:
    if kind == "string":
        redis_client.set(taken, "not a hash")
    else:
        put_hash(redis_client, taken, {"not": "a counter"})
    before = redis_client.dump(taken)
    first_state = stream_state("users", {"cursor": 0}, id=1)
    result = write(
        tmp_path,
        redis_server,
        catalog(("users", "append")),
        first_state,
        record("users", {"n": 1}),
        record("users", {"n": 2}),
        stream_state("users", {"cursor": 2}, id=2),
    )

    error = assert_failed(result, f"'{taken}'", "WRONGTYPE")
    assert error["failure_type"] == "config_error"
    assert result.states == [with_count(first_state, 0)]
    assert redis_client.dump(taken) == before


@pytest.mark.core
def test_out_of_memory_is_a_clear_error_and_no_state_follows(
    tmp_path: Path, fresh_server: RedisServer
) -> None:
    client = fresh_server.client()
    client.config_set("maxmemory-policy", "noeviction")
    used = int(client.info("memory")["used_memory"])
    limit = max(2 * 1024 * 1024, used + 1024 * 1024)
    client.config_set("maxmemory", str(limit))
    first_state = stream_state("users", {"cursor": 5}, id=1)
    big = "x" * 2_000
    messages = [record("users", {"n": n}) for n in range(1, 6)] + [first_state]
    messages += [record("users", {"n": n, "big": big}) for n in range(6, 3_006)]  # ~6 MB, over the limit
    messages.append(stream_state("users", {"cursor": 3005}, id=2))

    result = run_connector(
        WRITE_ARGS,
        tmp_path,
        config=fresh_server.config(),
        catalog=catalog(("users", "append")),
        stdin=lines(*messages),
    )

    error = assert_failed(result, "maxmemory")
    assert error["failure_type"] == "config_error"
    assert result.states == [with_count(first_state, 5)]
    for n in range(1, 6):
        assert hash_at(client, f":users:{n}") == stored(n, {"n": n})
    client.close()


@pytest.mark.core
def test_a_refused_connection_is_retried_without_duplicating_records(
    tmp_path: Path, fresh_server: RedisServer
) -> None:
    """Between two batches the server drops the connector's connection and refuses new ones
    (maxclients reached): the batch is resent after a backoff, every record is stored once and
    the ids stay 1..N."""
    (tmp_path / "config.json").write_text(json.dumps(fresh_server.config()))
    (tmp_path / "catalog.json").write_text(json.dumps(catalog(("users", "append"))))
    argv = [
        _script(),
        "write",
        "--config",
        str(tmp_path / "config.json"),
        "--catalog",
        str(tmp_path / "catalog.json"),
    ]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    admin = fresh_server.client()
    try:
        proc.stdin.write(lines(record("users", {"n": 1}), stream_state("users", {"c": 1}, id=1)).encode())
        proc.stdin.flush()
        _read_until_state(proc, timeout=30)
        admin.config_set("maxclients", 1)  # only this admin connection fits
        assert int(admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")) >= 1
        refused_before = int(admin.info("stats")["rejected_connections"])
        second = stream_state("users", {"c": 3}, id=2)
        proc.stdin.write(lines(record("users", {"n": 2}), record("users", {"n": 3}), second).encode())
        proc.stdin.flush()
        deadline = time.monotonic() + 20
        while int(admin.info("stats")["rejected_connections"]) == refused_before:
            assert time.monotonic() < deadline, "the connector never tried to reconnect"
            time.sleep(0.02)
        admin.config_set("maxclients", 1000)
        assert _read_until_state(proc, timeout=30) == with_count(second, 2)
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stored = [json.loads(admin.hget(f":users:{i}", "_airbyte_data") or b"null") for i in (1, 2, 3)]
    assert stored == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert admin.get(":users") == b"3"
    assert admin.dbsize() == 4
    admin.close()
