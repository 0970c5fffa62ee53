"""What the connector adapts to the server's version, proven on each server of the matrix.

Run on every server with `REDIS_MATRIX=all` (scripts/test_matrix.sh); without it, on the default.
- UNLINK (Redis 4.0+) or DEL, and multi-field HSET (4.0+) or HMSET: counted in INFO commandstats,
  so the test shows which command the server really got, not just that the data came out right.
- AUTH with a username (ACL users, 6.0+): on older servers `check` and `write` fail before any
  record, with a message that names the server's version; on newer ones the ACL user works.
- append_dedup (MULTI/EXEC), generations (refresh) and TTL, which use further commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis

from integration_tests.cli import Result, catalog, lines, record, run_connector, stream_state
from integration_tests.matrix import ServerBinary
from integration_tests.servers import RedisServer

pytestmark = pytest.mark.core

WRITE_ARGS = ["write", "--config", "{config}", "--catalog", "{catalog}"]
PASSWORD = "Pw-3c81d2-matrix"  # noqa: S105  # a test server's


def redis_version(client: redis.Redis) -> str:
    """The version the connector sees (INFO's redis_version; Valkey reports the Redis it forked)."""
    return str(client.info("server")["redis_version"])


def calls(client: redis.Redis) -> dict[str, int]:
    """Calls per command since the last CONFIG RESETSTAT, from INFO commandstats."""
    stats: dict[str, Any] = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def keys_of(client: redis.Redis, pattern: str = "*") -> list[str]:
    """Sorted key names; KEYS is fine on the test's own server."""
    return sorted(k.decode() if isinstance(k, bytes) else k for k in client.keys(pattern))


def assert_ok(result: Result) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.errors == [], result.errors
    assert "Traceback" not in result.stderr, result.stderr


def data_at(client: redis.Redis, key: str) -> Any:
    stored = client.hgetall(key)
    assert set(stored) == {b"_airbyte_ab_id", b"_airbyte_emitted_at", b"_airbyte_data"}, (key, stored)
    return json.loads(stored[b"_airbyte_data"])


@pytest.mark.standalone_only("the check message of a standalone server")
def test_check_succeeds_and_names_the_servers_version(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis, redis_binary: ServerBinary
) -> None:
    result = run_connector(["check", "--config", "{config}"], tmp_path, config=redis_server.config())

    status = result.connection_status
    assert status["status"] == "SUCCEEDED", status
    info = redis_client.info("server")
    if redis_binary.product == "Valkey":  # the Valkey version, and the Redis one its INFO reports
        label = f"Valkey {info['valkey_version']} (Redis {info['redis_version']} compatible)"
    else:
        label = f"Redis {info['redis_version']}"
    assert f"Connected to {label} (standalone) at 127.0.0.1:{redis_server.port}" in status["message"]
    assert redis_client.dbsize() == 0  # the probe keys are gone


@pytest.mark.standalone_only("one server's INFO commandstats")
def test_write_sends_the_commands_the_server_has(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis, redis_binary: ServerBinary
) -> None:
    """Overwrite deletes with UNLINK from 4.0 and DEL before; records are HSET from 4.0, HMSET before."""
    for i in range(1, 4):
        redis_client.execute_command("HMSET", f":users:{i}", "_airbyte_data", "{}")
    redis_client.set(":users", 3)
    redis_client.set("keep", "me")
    redis_client.config_resetstat()
    configured = catalog(("users", "overwrite"), ("orders", "append", "shop"))
    state = stream_state("orders", {"cursor": 2}, namespace="shop")

    result = run_connector(
        WRITE_ARGS, tmp_path, config=redis_server.config(), catalog=configured,
        stdin=lines(
            record("users", {"u": 1}), record("orders", {"o": 1}, namespace="shop"),
            record("users", {"u": 2}), record("orders", {"o": 2}, namespace="shop"), state,
        ),
    )

    assert_ok(result)
    sent = calls(redis_client)
    modern = redis_binary.redis_version >= (4, 0, 0)
    assert sent.get("unlink", 0) == (3 if modern else 0), sent  # the three old :users records
    assert sent.get("hset" if modern else "hmset", 0) == 4, sent
    assert sent.get("hmset" if modern else "hset", 0) == 0, sent
    assert keys_of(redis_client) == [
        ":users", ":users:1", ":users:2", "keep", "shop:orders", "shop:orders:1", "shop:orders:2",
    ]
    assert [data_at(redis_client, f":users:{i}") for i in (1, 2)] == [{"u": 1}, {"u": 2}]
    assert [data_at(redis_client, f"shop:orders:{i}") for i in (1, 2)] == [{"o": 1}, {"o": 2}]
    (echoed,) = result.states
    assert echoed["state"]["destinationStats"]["recordCount"] == 2


def test_username_needs_acl_users_of_redis_6(
    tmp_path: Path, fresh_server: RedisServer, redis_binary: ServerBinary
) -> None:
    """Before 6.0: check and write fail before any record, naming the version. From 6.0: it works."""
    admin = fresh_server.client()
    version = redis_version(admin)
    has_acl = redis_binary.redis_version >= (6, 0, 0)
    if has_acl:
        admin.execute_command("ACL", "SETUSER", "app", "on", f">{PASSWORD}", "~*", "+@all")
    admin.config_set("requirepass", PASSWORD)
    admin.close()
    with_user = fresh_server.config(username="app", password=PASSWORD)
    password_only = fresh_server.config(password=PASSWORD)

    checked = run_connector(["check", "--config", "{config}"], tmp_path, config=with_user)
    alone = run_connector(["check", "--config", "{config}"], tmp_path, config=password_only)
    written = run_connector(
        WRITE_ARGS, tmp_path, config=with_user, catalog=catalog(("users", "append")),
        stdin=lines(record("users", {"u": 1}), stream_state("users", {"c": 1})),
    )

    assert alone.connection_status["status"] == "SUCCEEDED", alone.connection_status
    for result in (checked, alone, written):
        assert PASSWORD not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr
    if has_acl:
        assert checked.connection_status["status"] == "SUCCEEDED", checked.connection_status
        assert_ok(written)
        assert len(written.states) == 1
        return
    expected = f"Redis {version} has no ACL users (they came with Redis 6.0), so the username 'app'"
    status = checked.connection_status
    assert status["status"] == "FAILED", status
    assert expected in status["message"]
    assert "Remove the username" in status["message"]
    assert written.returncode != 0
    (error,) = written.errors
    assert expected in error["message"]
    assert error["failure_type"] == "config_error"
    assert written.states == []
    reader = redis.Redis(port=fresh_server.port, password=PASSWORD, protocol=2)
    assert reader.dbsize() == 0
    reader.close()


def test_dedup_refresh_and_ttl_work(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """append_dedup (MULTI/DEL/HSET/EXEC, CDC delete), a refresh by generations, and a TTL."""

    def sync(generation: int, *messages: str) -> Result:
        streams: list[dict[str, Any]] = [
            {
                "stream": {"name": "people", "json_schema": {}, "supported_sync_modes": ["incremental"]},
                "sync_mode": "incremental", "destination_sync_mode": "append_dedup", "primary_key": [["id"]],
            },
            {
                "stream": {"name": "events", "json_schema": {}, "supported_sync_modes": ["full_refresh"]},
                "sync_mode": "full_refresh", "destination_sync_mode": "overwrite",
                "generation_id": generation, "minimum_generation_id": generation, "sync_id": generation,
            },
        ]
        return run_connector(
            WRITE_ARGS, tmp_path, config=redis_server.config(ttl_seconds=3600),
            catalog={"streams": streams}, stdin=lines(*messages),
        )

    first = sync(
        1,
        record("people", {"id": 1, "name": "old", "extra": True}),
        record("people", {"id": 2, "name": "gone"}),
        record("events", {"e": 1}),
        record("events", {"e": 2}),
        record("people", {"id": 1, "name": "new"}),
        record("people", {"id": 2, "_ab_cdc_deleted_at": "2024-01-01T00:00:00Z"}),
        stream_state("people", {"c": 1}),
    )
    assert_ok(first)
    assert data_at(redis_client, ":people:1") == {"id": 1, "name": "new"}  # no stale field
    assert not redis_client.exists(":people:2")
    assert [data_at(redis_client, f":events:{i}") for i in (1, 2)] == [{"e": 1}, {"e": 2}]
    assert 0 < redis_client.ttl(":people:1") <= 3600
    assert 0 < redis_client.ttl(":events:1") <= 3600

    second = sync(2, record("events", {"e": 3}), stream_state("events", {"c": 2}))
    assert_ok(second)
    # generation 1 is removed once generation 2 completed
    assert keys_of(redis_client, ":events:*") == [":events:3"]
    assert data_at(redis_client, ":events:3") == {"e": 3}
