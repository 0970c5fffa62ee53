"""`spec` and `check` on the command line, as a user and the platform run them, against real servers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import redis

from destination_redis.catalog import SUPPORTED_SYNC_MODES
from integration_tests.cli import run_connector
from integration_tests.connector_runs import assert_check_failed, check_cli, failed_message
from integration_tests.servers import RedisServer, free_port

SPEC_JSON: dict[str, Any] = json.loads((files("destination_redis") / "spec.json").read_text())
PASSWORD = "Pw-6e1f9c-secret"  # noqa: S105  # a test server's; distinctive, so a leak is found


@pytest.fixture(scope="module")
def password_server() -> Iterator[RedisServer]:
    server = RedisServer(password=PASSWORD).start()
    yield server
    server.stop()


def test_spec_prints_spec_json(tmp_path: Path) -> None:
    result = run_connector(["spec"], tmp_path)
    assert result.returncode == 0, result.stderr
    (message,) = result.of_type("SPEC")
    spec = message["spec"]
    assert spec["connectionSpecification"] == SPEC_JSON["connectionSpecification"]
    modes = spec["supported_destination_sync_modes"]
    assert modes == SPEC_JSON["supported_destination_sync_modes"]
    assert modes[:2] == ["overwrite", "append"]
    assert sorted(modes) == sorted(SUPPORTED_SYNC_MODES)  # what the spec offers, `write` accepts
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.core
@pytest.mark.standalone_only("a 0.1.4 config has no topology: it is standalone")
def test_check_succeeds_with_a_0_1_4_config_and_leaves_no_key(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    redis_client.set("existing", "1")
    redis_client.execute_command("HSET", ":users:1", "a", "b")
    config = {  # as Airbyte's 0.1.4 connector saved it
        "host": "127.0.0.1",
        "port": redis_server.port,
        "username": "",
        "password": "",
        "ssl": False,
        "ssl_mode": {"mode": "disable"},
        "cache_type": "hash",
        "tunnel_method": {"tunnel_method": "NO_TUNNEL"},
    }
    result = check_cli(tmp_path, config)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    status = result.connection_status
    assert status["status"] == "SUCCEEDED", status
    assert f"127.0.0.1:{redis_server.port}" in str(status["message"])
    assert redis_client.dbsize() == 2
    assert sorted(redis_client.keys("*")) == [b":users:1", b"existing"]
    for db in range(1, 16):
        assert redis_server.client(db=db).dbsize() == 0


def test_check_fails_when_nothing_listens(tmp_path: Path) -> None:
    port = free_port()
    message = assert_check_failed(
        check_cli(tmp_path, {"host": "127.0.0.1", "port": port}), f"127.0.0.1:{port}"
    )
    assert "connect" in message.lower()
    assert "port" in message.lower()


def test_check_fails_on_a_wrong_password_without_showing_it(
    tmp_path: Path, password_server: RedisServer
) -> None:
    wrong = "Wrong-pw-3b7d2a"
    result = check_cli(tmp_path, password_server.config(password=wrong))
    message = assert_check_failed(result, f"127.0.0.1:{password_server.port}", "AUTH")
    assert "password" in message.lower()
    assert wrong not in result.stdout + result.stderr
    assert PASSWORD not in result.stdout + result.stderr


def test_check_fails_when_the_server_requires_a_password(
    tmp_path: Path, password_server: RedisServer
) -> None:
    result = check_cli(tmp_path, {"host": "127.0.0.1", "port": password_server.port})
    message = assert_check_failed(result, f"127.0.0.1:{password_server.port}")
    assert "password" in message.lower(), message
    assert "healthy" not in message, message  # not a lost connection: the user must set the password


@pytest.mark.core
@pytest.mark.standalone_only("the AUTH step of a standalone server's probe")
def test_check_says_when_the_server_has_no_password(redis_server: RedisServer) -> None:
    """AUTH refused by a server without requirepass: told apart from a wrong password by PING."""
    unneeded = "not-needed-4c1e"
    message = failed_message(redis_server.config(password=unneeded), "AUTH failed")
    assert "The server has no password: remove the password" in message
    assert unneeded not in message


@pytest.mark.core
def test_wrong_password_is_not_mistaken_for_no_password(fresh_server: RedisServer) -> None:
    right, wrong = "right-one-9a2f", "wrong-one-9a2f"
    with fresh_server.flushed_client() as admin:
        admin.config_set("requirepass", right)
    message = failed_message(fresh_server.config(password=wrong), "AUTH failed")
    assert "Check the password" in message
    assert wrong not in message


@pytest.mark.core
@pytest.mark.standalone_only("a cluster has only database 0: test_cluster.py checks that message")
def test_check_fails_on_a_db_index_out_of_range(tmp_path: Path, redis_server: RedisServer) -> None:
    message = assert_check_failed(
        check_cli(tmp_path, redis_server.config(db=99)), f"127.0.0.1:{redis_server.port}", "SELECT"
    )
    assert "99" in message
    assert "database" in message.lower()


@pytest.mark.core
@pytest.mark.min_redis("6.0", reason="ACL users came with Redis 6.0")
def test_check_fails_without_write_permission(tmp_path: Path, fresh_server: RedisServer) -> None:
    fresh_server.client().execute_command(
        "ACL", "SETUSER", "reader", "on", f">{PASSWORD}", "~*", "+@read", "+info", "+ping", "+select", "+auth"
    )
    result = check_cli(tmp_path, fresh_server.config(username="reader", password=PASSWORD))
    message = assert_check_failed(result, f"127.0.0.1:{fresh_server.port}")
    assert "write permission" in message.lower(), message
    assert PASSWORD not in result.stdout + result.stderr
    assert fresh_server.client().dbsize() == 0


@pytest.mark.core
@pytest.mark.min_redis("6.0", reason="ACL users came with Redis 6.0")
def test_check_succeeds_for_a_user_allowed_to_read_and_write(
    tmp_path: Path, fresh_server: RedisServer
) -> None:
    """A typical application user: data commands (and MULTI), none for connections such as CLIENT."""
    fresh_server.client().execute_command(
        "ACL",
        "SETUSER",
        "app",
        "on",
        f">{PASSWORD}",
        "~*",
        "+@read",
        "+@write",
        "+@keyspace",
        "+@transaction",
        "+info",
        "+ping",
    )
    result = check_cli(tmp_path, fresh_server.config(username="app", password=PASSWORD))
    assert result.connection_status["status"] == "SUCCEEDED", result.stdout
    assert fresh_server.client().dbsize() == 0


# --- configuration mistakes a new user makes ---------------------------------------

CATALOG = {"streams": [{"stream": {"name": "users", "json_schema": {}}, "destination_sync_mode": "append"}]}


def command_with_config_file(command: str, tmp_path: Path, config_path: Path) -> list[str]:
    args = [command, "--config", str(config_path)]
    if command == "write":
        catalog_path = tmp_path / "catalog.json"
        catalog_path.write_text(json.dumps(CATALOG))
        args += ["--catalog", str(catalog_path)]
    return args


@pytest.mark.parametrize("command", ["check", "write"])
@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "No such file or directory"),
        (b"host: localhost\n", "is not JSON"),
        (b"", "is not JSON"),
        (b'["host", "localhost"]', "must hold a JSON object of settings, not an array"),
    ],
    ids=["missing", "yaml", "empty", "array"],
)
def test_unreadable_config_file_is_a_config_error_naming_the_file(
    tmp_path: Path, command: str, content: bytes | None, problem: str
) -> None:
    config_path = tmp_path / "my-config.json"
    if content is not None:
        config_path.write_bytes(content)
    result = run_connector(command_with_config_file(command, tmp_path, config_path), tmp_path)

    assert result.returncode == 1, result.stdout
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    (error,) = result.errors
    assert error["failure_type"] == "config_error"
    assert str(config_path) in error["message"], error
    assert problem in error["message"], error
    assert not error.get("stack_trace")
    assert not result.of_type("CONNECTION_STATUS")


def test_check_and_write_give_the_same_message_naming_the_field(tmp_path: Path) -> None:
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps({"host": "127.0.0.1", "port": "abc"}))
    check = run_connector(command_with_config_file("check", tmp_path, config_path), tmp_path)
    write = run_connector(command_with_config_file("write", tmp_path, config_path), tmp_path)

    message = assert_check_failed(check, "port")
    (error,) = write.errors
    assert write.returncode == 1
    assert error["failure_type"] == "config_error"
    assert error["message"] == message
    assert message.startswith("Invalid configuration: port: ")
    assert "Traceback" not in check.stdout + write.stdout + write.stderr
