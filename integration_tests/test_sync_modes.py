"""append_dedup, CDC deletes, refreshes with generation ids, and TTL, against a real redis-server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import redis

from integration_tests.cli import Result, lines, record, run_connector, stream_state
from integration_tests.servers import RedisServer


def configured(
    name: str,
    mode: str,
    primary_key: list[list[str]] | None = None,
    generation: int | None = None,
    minimum: int | None = None,
    namespace: str | None = None,
) -> dict[str, Any]:
    stream: dict[str, Any] = {"name": name, "json_schema": {}, "supported_sync_modes": ["incremental"]}
    if namespace is not None:
        stream["namespace"] = namespace
    entry: dict[str, Any] = {"stream": stream, "sync_mode": "incremental", "destination_sync_mode": mode}
    if primary_key is not None:
        entry["primary_key"] = primary_key
    if generation is not None:
        entry.update(generation_id=generation, minimum_generation_id=minimum, sync_id=generation)
    return entry


def status(name: str, state: str) -> str:
    return json.dumps(
        {
            "type": "TRACE",
            "trace": {
                "type": "STREAM_STATUS",
                "emitted_at": 1,
                "stream_status": {"stream_descriptor": {"name": name, "namespace": None}, "status": state},
            },
        }
    )


def write(
    server: RedisServer, tmp_path: Path, streams: list[dict[str, Any]], stdin: str, **config: Any
) -> Result:
    result = run_connector(
        ["write", "--config", "{config}", "--catalog", "{catalog}"],
        tmp_path,
        config=server.config(**config),
        catalog={"streams": streams},
        stdin=stdin,
    )
    return result


def data_of(client: redis.Redis, key: str) -> Any:
    stored = client.hgetall(key)
    assert set(stored) == {b"_airbyte_ab_id", b"_airbyte_emitted_at", b"_airbyte_data"}, stored
    return json.loads(stored[b"_airbyte_data"])


def user_keys(client: redis.Redis) -> set[bytes]:
    found = [k for k in client.keys("*") if isinstance(k, bytes)]
    return {k for k in found if not k.startswith(b"_airbyte_meta:")}


# --- append_dedup -----------------------------------------------------------------------------


def test_dedup_newer_record_replaces_whole_value(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    streams = [configured("users", "append_dedup", [["id"]])]
    first = write(
        redis_server,
        tmp_path,
        streams,
        lines(
            record("users", {"id": 1, "name": "ann", "city": "Bern"}),
            record("users", {"id": 2, "name": "bob", "city": "Genf"}),
            stream_state("users", {"cursor": 2}),
        ),
    )
    assert first.returncode == 0, first.stdout
    redis_client.hset(":users:1", "stale_field", "from elsewhere")
    second = write(
        redis_server,
        tmp_path,
        streams,
        lines(
            record("users", {"id": 1, "name": "ann-2"}, emitted_at=5),
            stream_state("users", {"cursor": 3}),
        ),
    )
    assert second.returncode == 0, second.stdout
    assert user_keys(redis_client) == {b":users", b":users:1", b":users:2"}
    assert data_of(redis_client, ":users:1") == {"id": 1, "name": "ann-2"}  # no "city", no stale field
    assert redis_client.hget(":users:1", "_airbyte_emitted_at") == b"5"
    assert redis_client.hget(":users:1", "_airbyte_ab_id") == b"3"  # ids keep counting across syncs
    assert data_of(redis_client, ":users:2") == {"id": 2, "name": "bob", "city": "Genf"}
    assert [s["state"]["destinationStats"]["recordCount"] for s in second.states] == [1.0]


def test_dedup_later_record_in_same_sync_wins(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    streams = [configured("users", "append_dedup", [["id"]])]
    result = write(
        redis_server,
        tmp_path,
        streams,
        lines(
            record("users", {"id": "x", "v": 1}),
            record("users", {"id": "x", "v": 2}),
            record("users", {"id": "x", "v": 3, "extra": True}),
        ),
    )
    assert result.returncode == 0, result.stdout
    assert user_keys(redis_client) == {b":users", b":users:x"}
    assert data_of(redis_client, ":users:x") == {"id": "x", "v": 3, "extra": True}


def test_dedup_composite_keys_with_colons_and_unicode(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    streams = [configured("orders", "append_dedup", [["org"], ["id"]], namespace="shop")]
    result = write(
        redis_server,
        tmp_path,
        streams,
        lines(
            record("orders", {"org": "a:b", "id": 1}, namespace="shop"),
            record("orders", {"org": "a", "id": "b:1"}, namespace="shop"),
            record("orders", {"org": "zürich ☃", "id": 7}, namespace="shop"),
            record("orders", {"org": "back\\slash", "id": 2}, namespace="shop"),
        ),
    )
    assert result.returncode == 0, result.stdout
    assert user_keys(redis_client) == {
        b"shop:orders",
        b"shop:orders:a\\:b:1",
        b"shop:orders:a:b\\:1",
        "shop:orders:zürich ☃:7".encode(),
        b"shop:orders:back\\\\slash:2",
    }
    assert data_of(redis_client, "shop:orders:a\\:b:1") == {"org": "a:b", "id": 1}
    assert data_of(redis_client, "shop:orders:a:b\\:1") == {"org": "a", "id": "b:1"}


def test_dedup_nested_primary_key(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    streams = [configured("users", "append_dedup", [["meta", "uid"]])]
    result = write(redis_server, tmp_path, streams, lines(record("users", {"meta": {"uid": 42}, "n": 1})))
    assert result.returncode == 0, result.stdout
    assert data_of(redis_client, ":users:42") == {"meta": {"uid": 42}, "n": 1}


def test_dedup_key_fields_of_any_name_and_two_paths_under_one_property(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """The key's properties are decoded alone (a struct renamed to them): names that are no
    identifier, that look like the struct's own field names, or shared by two paths all work."""
    streams = [configured("users", "append_dedup", [["f0"], ["my id"], ["meta", "org"], ["meta", "uid"]])]
    data = {"meta": {"uid": 7, "org": "x"}, "my id": 1.50, "f0": "a b", "n": 1}
    result = write(redis_server, tmp_path, streams, lines(record("users", data)))
    assert result.returncode == 0, result.stdout
    assert data_of(redis_client, ":users:a b:1.5:x:7") == data


def test_cdc_deletes_in_order(redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path) -> None:
    streams = [configured("users", "append_dedup", [["id"]])]
    result = write(
        redis_server,
        tmp_path,
        streams,
        lines(
            record("users", {"id": 1, "v": "a", "_ab_cdc_deleted_at": None}),
            record("users", {"id": 2, "v": "b"}),
            record("users", {"id": 1, "_ab_cdc_deleted_at": "2026-11-25T00:00:00Z"}),
            record("users", {"id": 3, "_ab_cdc_deleted_at": "2026-11-25T00:00:00Z"}),  # never existed
            record("users", {"id": 2, "_ab_cdc_deleted_at": "2026-11-25T00:00:00Z"}),
            record("users", {"id": 2, "v": "b2", "_ab_cdc_deleted_at": None}),  # re-created after delete
            stream_state("users", {"lsn": 9}),
        ),
    )
    assert result.returncode == 0, result.stdout
    assert user_keys(redis_client) == {b":users", b":users:2"}
    assert data_of(redis_client, ":users:2") == {"id": 2, "v": "b2", "_ab_cdc_deleted_at": None}
    assert result.states[0]["state"]["destinationStats"]["recordCount"] == 6.0


def test_dedup_without_primary_key_is_config_error_before_writing(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    streams = [configured("users", "append"), configured("events", "append_dedup", [])]
    result = write(redis_server, tmp_path, streams, lines(record("users", {"id": 1})))
    assert result.returncode != 0
    (error,) = result.errors
    assert error["failure_type"] == "config_error"
    assert "events" in error["message"]
    assert "primary key" in error["message"]
    assert redis_client.dbsize() == 0


def test_dedup_record_missing_its_primary_key_names_the_line(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    streams = [configured("users", "append_dedup", [["id"]])]
    result = write(
        redis_server,
        tmp_path,
        streams,
        lines(
            record("users", {"id": 1}),
            stream_state("users", {"c": 1}),
            record("users", {"id": 2}),
            record("users", {"name": "no id"}),
            record("users", {"id": 4}),
        ),
    )
    assert result.returncode != 0
    (error,) = result.errors
    assert "line 4" in error["message"]
    assert "'id'" in error["message"]
    assert len(result.states) == 1
    assert user_keys(redis_client) == {b":users", b":users:1", b":users:2"}


# --- refreshes with generation ids -----------------------------------------------------------


def refresh(
    server: RedisServer,
    tmp_path: Path,
    generation: int,
    values: list[int],
    tail: list[str],
    mode: str = "append",
) -> Result:
    streams = [
        configured(
            "users",
            mode,
            [["id"]] if mode == "append_dedup" else None,
            generation=generation,
            minimum=generation,
        )
    ]
    body = [status("users", "STARTED")] if tail and tail[-1] != "NO_STATUS" else []
    body += [record("users", {"id": v, "gen": generation}) for v in values]
    body += [t for t in tail if t != "NO_STATUS"]
    return write(server, tmp_path, streams, lines(*body))


def generations_stored(client: redis.Redis) -> list[tuple[int, int]]:
    out = []
    for key in user_keys(client):
        if key != b":users":
            data = data_of(client, key.decode())
            out.append((data["gen"], data["id"]))
    return sorted(out)


def test_refresh_keeps_old_generation_until_complete_and_keeps_failed_attempt(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    done = [stream_state("users", {"c": 1}), status("users", "COMPLETE")]
    assert refresh(redis_server, tmp_path, 1, [1, 2, 3], done).returncode == 0
    assert generations_stored(redis_client) == [(1, 1), (1, 2), (1, 3)]

    # Generation 2, attempt 1: the input ends without COMPLETE (statuses were being sent).
    failed = refresh(redis_server, tmp_path, 2, [10, 11], [stream_state("users", {"c": 2})])
    assert failed.returncode == 0
    assert generations_stored(redis_client) == [(1, 1), (1, 2), (1, 3), (2, 10), (2, 11)]

    # Attempt 2 of generation 2 dies on a bad line: still nothing deleted.
    crashed = refresh(redis_server, tmp_path, 2, [12], ["this is not json"])
    assert crashed.returncode != 0
    assert generations_stored(redis_client) == [(1, 1), (1, 2), (1, 3), (2, 10), (2, 11), (2, 12)]

    # Attempt 3 completes: exactly generation 2 remains, including what the failed attempts wrote.
    assert refresh(redis_server, tmp_path, 2, [13], done).returncode == 0
    assert generations_stored(redis_client) == [(2, 10), (2, 11), (2, 12), (2, 13)]


def test_refresh_without_statuses_completes_at_end_of_input(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    assert refresh(redis_server, tmp_path, 1, [1, 2], ["NO_STATUS"]).returncode == 0
    assert refresh(redis_server, tmp_path, 2, [3], ["NO_STATUS"]).returncode == 0
    assert generations_stored(redis_client) == [(2, 3)]


# PyAirbyte sends generation_id = minimum_generation_id = sync_id = 1 on every run (DESIGN.md,
# "Refreshes and repeated generation ids"): a completed generation seen again is the same
# generation for append and append_dedup (keep all), and a new replace for overwrite.
DONE = [stream_state("users", {"c": 1}), status("users", "COMPLETE")]


def test_overwrite_run_twice_with_generation_1_leaves_one_copy(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    for _ in range(2):
        result = refresh(redis_server, tmp_path, 1, [1, 2, 3], DONE, mode="overwrite")
        assert result.returncode == 0, result.stdout
    assert generations_stored(redis_client) == [(1, 1), (1, 2), (1, 3)]
    assert len(user_keys(redis_client)) == 4  # three records and the counter


def test_append_run_twice_with_generation_1_keeps_both_runs(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    assert refresh(redis_server, tmp_path, 1, [1, 2, 3], DONE).returncode == 0
    second = refresh(redis_server, tmp_path, 1, [4], DONE)
    assert second.returncode == 0, second.stdout
    assert generations_stored(redis_client) == [(1, 1), (1, 2), (1, 3), (1, 4)]
    assert "deleted" not in second.stdout


def test_dedup_run_twice_with_generation_1_keeps_what_the_second_run_did_not_resend(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """The reported case: run 2 (incremental) sends only id 4; ids 1-3 must stay."""
    assert refresh(redis_server, tmp_path, 1, [1, 2, 3], DONE, mode="append_dedup").returncode == 0
    second = refresh(redis_server, tmp_path, 1, [4, 2], DONE, mode="append_dedup")
    assert second.returncode == 0, second.stdout
    assert generations_stored(redis_client) == [(1, 1), (1, 2), (1, 3), (1, 4)]
    assert user_keys(redis_client) == {b":users", b":users:1", b":users:2", b":users:3", b":users:4"}
    assert json.loads(redis_client.hget(":users:2", "_airbyte_ab_id") or b"0") == 5  # the newer copy


def test_failed_repeat_of_a_completed_generation_deletes_nothing_either(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    assert refresh(redis_server, tmp_path, 1, [1, 2], DONE, mode="append_dedup").returncode == 0
    crashed = refresh(redis_server, tmp_path, 1, [3], ["this is not json"], mode="append_dedup")
    assert crashed.returncode != 0
    assert refresh(redis_server, tmp_path, 1, [4], DONE, mode="append_dedup").returncode == 0
    assert generations_stored(redis_client) == [(1, 1), (1, 2), (1, 3), (1, 4)]


def incremental(server: RedisServer, tmp_path: Path, mode: str, generation: int, values: list[int]) -> Result:
    """A platform sync: generation ids grow on refreshes only, minimum_generation_id 0."""
    streams = [configured("users", mode, [["id"]] if mode == "append_dedup" else None,
                          generation=generation, minimum=0)]
    body = [record("users", {"id": v, "gen": generation}) for v in values]
    return write(server, tmp_path, streams, lines(*body, *DONE))


def test_growing_generations_with_minimum_0_keep_everything_in_append_and_dedup(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    for mode in ("append", "append_dedup"):
        redis_client.flushdb()
        for generation, values in ((1, [1, 2]), (1, [3]), (2, [4]), (3, [2])):
            assert incremental(redis_server, tmp_path, mode, generation, values).returncode == 0
        expected = [(1, 1), (1, 3), (2, 4), (3, 2)] if mode == "append_dedup" else [
            (1, 1), (1, 2), (1, 3), (2, 4), (3, 2)]
        assert generations_stored(redis_client) == expected, mode


def test_growing_generations_of_an_overwrite_keep_only_the_last(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    for generation, values in ((1, [1, 2]), (2, [3]), (3, [4, 5])):
        assert incremental(redis_server, tmp_path, "overwrite", generation, values).returncode == 0
        assert generations_stored(redis_client) == [(generation, v) for v in values]


def test_growing_generations_of_a_refresh_remove_the_old_ones(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """minimum_generation_id = generation_id (a refresh of an append or dedup stream)."""
    for mode in ("append", "append_dedup"):
        redis_client.flushdb()
        assert refresh(redis_server, tmp_path, 1, [1, 2], DONE, mode=mode).returncode == 0
        assert refresh(redis_server, tmp_path, 2, [2], DONE, mode=mode).returncode == 0
        assert generations_stored(redis_client) == [(2, 2)], mode


def test_dedup_refresh_removes_keys_not_in_the_new_generation(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    done = [status("users", "COMPLETE")]
    assert refresh(redis_server, tmp_path, 1, [1, 2, 3], done, mode="append_dedup").returncode == 0
    failed = refresh(redis_server, tmp_path, 2, [2], [], mode="append_dedup")
    assert failed.returncode == 0  # no statuses sent: end of input completes it
    assert generations_stored(redis_client) == [(2, 2)]
    assert user_keys(redis_client) == {b":users", b":users:2"}


def test_non_truncating_generation_keeps_everything(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    for generation, value in ((1, 1), (2, 2)):
        streams = [configured("users", "append", generation=generation, minimum=0)]
        result = write(
            redis_server, tmp_path, streams, lines(record("users", {"id": value, "gen": generation}))
        )
        assert result.returncode == 0
    assert generations_stored(redis_client) == [(1, 1), (2, 2)]


# --- TTL ---------------------------------------------------------------------------------------


def test_ttl_on_every_record_key_and_never_on_the_counter(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    streams = [configured("events", "append"), configured("users", "append_dedup", [["id"]])]
    result = write(
        redis_server,
        tmp_path,
        streams,
        lines(
            record("events", {"e": 1}),
            record("events", {"e": 2}),
            record("users", {"id": 1}),
        ),
        ttl_seconds=500,
    )
    assert result.returncode == 0, result.stdout
    for key in (":events:1", ":events:2", ":users:1"):
        assert 490 <= redis_client.ttl(key) <= 500, key
    assert redis_client.ttl(":events") == -1
    assert redis_client.ttl(":users") == -1


def test_dedup_replace_restarts_the_ttl(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    streams = [configured("users", "append_dedup", [["id"]])]
    assert (
        write(redis_server, tmp_path, streams, lines(record("users", {"id": 1})), ttl_seconds=100).returncode
        == 0
    )
    redis_client.expire(":users:1", 5)
    assert (
        write(
            redis_server, tmp_path, streams, lines(record("users", {"id": 1, "v": 2})), ttl_seconds=100
        ).returncode
        == 0
    )
    assert 95 <= redis_client.ttl(":users:1") <= 100
    assert write(redis_server, tmp_path, streams, lines(record("users", {"id": 1, "v": 3}))).returncode == 0
    assert redis_client.ttl(":users:1") == -1  # written without a TTL: the key no longer expires


def test_refresh_cleanup_by_scan_when_the_id_range_is_larger_than_the_database(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Ids far beyond the database size (a long-lived counter): old keys are found by SCAN."""
    redis_client.set(":users", 5_000_000)
    redis_client.hset(":users:abc", "keep", "me")  # a look-alike: never ours
    done = [status("users", "COMPLETE")]
    assert refresh(redis_server, tmp_path, 1, [1, 2], done).returncode == 0
    assert refresh(redis_server, tmp_path, 2, [3], done).returncode == 0
    assert generations_stored_except(redis_client, b":users:abc") == [(2, 3)]
    assert redis_client.hget(":users:abc", "keep") == b"me"
    # The cleanup's cutoff is remembered: no key below it is left to look for next time.
    assert redis_client.hget("_airbyte_meta::users", "floor") == b"5000003"


def generations_stored_except(client: redis.Redis, skip: bytes) -> list[tuple[int, int]]:
    out = []
    for key in user_keys(client) - {b":users", skip}:
        data = data_of(client, key.decode())
        out.append((data["gen"], data["id"]))
    return sorted(out)


def test_overwrite_with_generation_ids_keeps_old_data_until_complete(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """An `overwrite` stream in a refresh-aware catalog: no up-front delete, exactly the new
    records after success, even when it comes with minimum_generation_id 0."""
    for generation, values in ((1, [1, 2]), (2, [3])):
        streams = [configured("users", "overwrite", generation=generation, minimum=0)]
        body = [record("users", {"id": v, "gen": generation}) for v in values]
        failed = write(redis_server, tmp_path, streams, lines(*body, "not json"))
        assert failed.returncode != 0
        assert (generation, values[0]) in generations_stored(redis_client)
        if generation == 2:
            assert (1, 1) in generations_stored(redis_client)  # the failed sync deleted nothing
        assert write(redis_server, tmp_path, streams, lines(*body)).returncode == 0
    assert generations_stored(redis_client) == [(2, 3), (2, 3)]


def test_dedup_keys_keep_numbers_exact(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    streams = [configured("big", "append_dedup", [["id"]])]
    result = write(
        redis_server,
        tmp_path,
        streams,
        lines(
            '{"type":"RECORD","record":{"stream":"big","emitted_at":1,'
            '"data":{"id":123456789012345678901234567890,"x":1e400}}}',
            '{"type":"RECORD","record":{"stream":"big","emitted_at":1,'
            '"data":{"id":123456789012345678901234567891}}}',
            '{"type":"RECORD","record":{"stream":"big","emitted_at":1,"data":{"id":1.50}}}',
            '{"type":"RECORD","record":{"stream":"big","emitted_at":1,"data":{"id":true}}}',
        ),
    )
    assert result.returncode == 0, result.stdout
    assert user_keys(redis_client) == {
        b":big",
        b":big:123456789012345678901234567890",
        b":big:123456789012345678901234567891",
        b":big:1.50",
        b":big:true",
    }
    stored = redis_client.hget(":big:123456789012345678901234567890", "_airbyte_data")
    assert stored == b'{"id":123456789012345678901234567890,"x":1e400}'
