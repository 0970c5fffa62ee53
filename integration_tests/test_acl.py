"""ACL users (Redis 6+) on a real server: full rights, least rights, missing rights named by check."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from integration_tests.cli import lines, record, run_connector, stream_state
from integration_tests.connector_runs import (
    assert_check_failed,
    assert_check_succeeded,
    assert_written,
    check_cli,
    check_here,
    failed_message,
    write_cli,
)
from integration_tests.servers import RedisServer

# What check's probe needs of a user, and what syncs of every mode send (keep in step with
# check_probe.probe_commands). No PING, no CLIENT: neither is needed.
LEAST_RIGHTS = [
    "+info", "+incrby", "+get", "+hset", "+hmset", "+hget", "+hgetall", "+hdel",
    "+multi", "+exec", "+del", "+unlink", "+scan",
]

USERS: dict[str, list[str]] = {
    "writer": ["~*", "+@all"],
    "least": ["~*", *LEAST_RIGHTS],
    "least-ttl": ["~*", *LEAST_RIGHTS, "+expire"],
    "reader": ["~*", "+@read", "+info"],
    "narrow": ["~app:*", "+@all"],
    "no-info": ["~*", "+@write", "+@keyspace"],
    "off": ["off", "~*", "+@all"],
}


def password_of(user: str) -> str:
    return f"{user}-Acl-pw-41c9"


@pytest.fixture(scope="module")
def acl_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    admin = server.client()
    for user, rules in USERS.items():
        admin.execute_command("ACL", "SETUSER", user, "on", f">{password_of(user)}", *rules)
    admin.close()
    yield server
    server.stop()


@pytest.fixture
def acl_client(acl_server: RedisServer) -> Iterator[redis.Redis]:
    with acl_server.flushed_client() as client:
        yield client


def config_for(server: RedisServer, user: str, **overrides: Any) -> dict[str, Any]:
    return server.config(username=user, password=password_of(user), **overrides)


def test_acl_user_with_full_rights_checks_and_writes(
    tmp_path: Path, acl_server: RedisServer, acl_client: redis.Redis
) -> None:
    config = config_for(acl_server, "writer")
    assert_check_succeeded(check_cli(tmp_path, config))
    assert_written(write_cli(tmp_path, config), acl_client)
    assert acl_client.keys("_airbyte_check:*") == []


def _stream(name: str, mode: str, **extra: Any) -> dict[str, Any]:
    stream = {"name": name, "json_schema": {}, "supported_sync_modes": ["full_refresh", "incremental"]}
    return {"stream": stream, "sync_mode": "incremental", "destination_sync_mode": mode, **extra}


def _complete(name: str) -> str:
    status = {"stream_descriptor": {"name": name}, "status": "COMPLETE"}
    trace = {"type": "STREAM_STATUS", "emitted_at": 1, "stream_status": status}
    return json.dumps({"type": "TRACE", "trace": trace})


def test_a_user_with_only_the_rights_check_asks_for_can_sync_in_every_mode(
    tmp_path: Path, acl_server: RedisServer, acl_client: redis.Redis
) -> None:
    """The probe's list is enough for real syncs (no PING, no CLIENT SETNAME needed)."""
    config = config_for(acl_server, "least")
    assert check_here(config)[0] == "SUCCEEDED"
    acl_client.execute_command("HSET", ":snapshot:1", "_airbyte_ab_id", "1")  # overwrite deletes it
    streams = [
        _stream("events", "append"),
        _stream("snapshot", "overwrite"),
        _stream("users", "append_dedup", primary_key=[["id"]]),
        _stream("refreshed", "overwrite", generation_id=2, minimum_generation_id=2, sync_id=2),
    ]
    body = [record(s["stream"]["name"], {"id": 1, "v": "a"}) for s in streams]
    body += [record("users", {"id": 1, "v": "b"}), record("users", {"id": 2, "_ab_cdc_deleted_at": "x"})]
    body += [stream_state("users", {"c": 1})]
    body += [_complete(s["stream"]["name"]) for s in streams]
    result = run_connector(
        ["write", "--config", "{config}", "--catalog", "{catalog}"], tmp_path,
        config=config, catalog={"streams": streams}, stdin=lines(*body),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(result.states) == 1, result.stdout
    assert json.loads(acl_client.hget(":users:1", "_airbyte_data") or b"") == {"id": 1, "v": "b"}
    assert acl_client.hget(":snapshot:1", "_airbyte_data") is not None
    assert acl_client.keys("_airbyte_check:*") == []


def test_a_user_without_write_rights_is_told_which_commands_are_missing(
    tmp_path: Path, acl_server: RedisServer, acl_client: redis.Redis
) -> None:
    message = assert_check_failed(
        check_cli(tmp_path, config_for(acl_server, "reader")),
        f"Write permission check failed at 127.0.0.1:{acl_server.port}", "ACL user 'reader' may not run",
        "HSET", "INCRBY", "DEL", "UNLINK", "HDEL", "MULTI", "ACL SETUSER reader +del",
    )
    assert "SCAN" not in message  # a read command, which the user has
    assert password_of("reader") not in message
    assert acl_client.keys("*") == []  # nothing left behind


def test_expire_is_needed_only_with_a_ttl(acl_server: RedisServer) -> None:
    assert check_here(config_for(acl_server, "least"))[0] == "SUCCEEDED"
    failed_message(config_for(acl_server, "least", ttl_seconds=60), "may not run EXPIRE")
    assert check_here(config_for(acl_server, "least-ttl", ttl_seconds=60))[0] == "SUCCEEDED"


def test_a_user_restricted_to_other_keys_is_told_about_key_patterns(acl_server: RedisServer) -> None:
    failed_message(
        config_for(acl_server, "narrow"),
        "Write permission check failed", "may not access the probe keys", "~_airbyte_check:*",
    )


def test_a_user_without_info_is_told_at_the_info_step(acl_server: RedisServer) -> None:
    failed_message(config_for(acl_server, "no-info"), "INFO failed", "may not run INFO", "+info")


@pytest.mark.parametrize(
    ("user", "password"),
    [("writer", "not-the-password"), ("nobody", "whatever"), ("off", password_of("off"))],
)
def test_wrong_acl_credentials_fail_at_auth(acl_server: RedisServer, user: str, password: str) -> None:
    message = failed_message(
        acl_server.config(username=user, password=password),
        f"AUTH failed at 127.0.0.1:{acl_server.port}", "WRONGPASS", f"Check the username ('{user}')",
    )
    assert password not in message


def test_a_username_without_a_password(acl_server: RedisServer) -> None:
    failed_message(acl_server.config(username="writer"), "a username is set without a password")
