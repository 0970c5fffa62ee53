"""Short ways to run check and write for the TLS, ACL, SSH and secrets tests.

`check_here` runs the same `run_check` the CLI runs, in this process: the failure cases are many
and a subprocess costs about a second each. The CLI is used where the whole command matters
(writes, the final protocol output, secrets on stdout/stderr, the process exiting).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis

from destination_redis.check import run_check
from destination_redis.config import parse_config
from integration_tests.cli import Result, catalog, lines, record, run_connector, stream_state

EMITTED = 1_700_000_000_000


def check_here(config: dict[str, Any]) -> tuple[str, str]:
    """(status, message) of check, in this process."""
    result = run_check(parse_config(config))
    return ("SUCCEEDED" if result.ok else "FAILED"), result.message


def failed_message(config: dict[str, Any], *expected: str) -> str:
    status, message = check_here(config)
    assert status == "FAILED", message
    for text in expected:
        assert text in message, f"{text!r} not in {message!r}"
    assert "Traceback" not in message
    return message


def check_cli(tmp_path: Path, config: dict[str, Any]) -> Result:
    return run_connector(["check", "--config", "{config}"], tmp_path, config=config)


def assert_check_succeeded(result: Result) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    status = result.connection_status
    assert status["status"] == "SUCCEEDED", status
    assert "Traceback" not in output
    return str(status["message"])


def assert_check_failed(result: Result, *expected: str) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output, output
    status = result.connection_status
    assert status["status"] == "FAILED", status
    message = str(status["message"])
    for text in expected:
        assert text in message, f"{text!r} not in {message!r}"
    return message


def write_cli(tmp_path: Path, config: dict[str, Any], stream: str = "users", count: int = 3) -> Result:
    """Write `count` records to one append stream, with a state after them."""
    messages = [
        record(stream, {"id": i, "name": f"user {i}"}, emitted_at=EMITTED) for i in range(1, count + 1)
    ]
    messages.append(stream_state(stream, {"cursor": count}))
    return run_connector(
        ["write", "--config", "{config}", "--catalog", "{catalog}"], tmp_path,
        config=config, catalog=catalog((stream, "append")), stdin=lines(*messages),
    )


def assert_written(result: Result, client: redis.Redis, stream: str = "users", count: int = 3) -> None:
    """The write succeeded: one state echoed, and the records are in Redis under `:<stream>`."""
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output, output
    assert len(result.states) == 1, output
    key = f":{stream}"
    assert client.get(key) is not None, output
    last = int(client.get(key) or 0)
    for record_id in range(last - count + 1, last + 1):
        stored = client.hgetall(f"{key}:{record_id}")
        assert stored[b"_airbyte_ab_id"] == str(record_id).encode()
        assert b"user" in stored[b"_airbyte_data"]
