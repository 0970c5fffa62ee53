"""A fast start: `spec`, `check` and `write` run without importing the Airbyte CDK.

Each command runs as `python main.py ...` in a subprocess that, once the command is done, reports
which modules it loaded: the CDK (over a second of imports) must not be among them, nor paramiko
without an SSH tunnel, nor pydantic for `spec`. A real redis-server serves check and write.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from integration_tests.cli import catalog, lines, record, stream_state
from integration_tests.servers import RedisServer

MAIN = Path(__file__).resolve().parents[1] / "main.py"

# Runs main.py as `python main.py` does, then prints the top-level packages that were imported.
PROBE = """
import runpy, sys
sys.argv = [{main!r}, *{args!r}]
try:
    runpy.run_path({main!r}, run_name="__main__")
finally:
    sys.stderr.write("\\nLOADED " + " ".join(sorted({{m.split(".")[0] for m in sys.modules}})) + "\\n")
"""

HEAVY = {"airbyte_cdk", "airbyte_protocol", "airbyte_protocol_dataclasses", "paramiko", "sshtunnel"}


def run_main(args: list[str], stdin: bytes = b"") -> tuple[list[dict[str, Any]], set[str]]:
    code = PROBE.format(main=str(MAIN), args=args)
    proc = subprocess.run(
        [sys.executable, "-c", code], input=stdin, capture_output=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    (loaded,) = [line for line in proc.stderr.decode().splitlines() if line.startswith("LOADED ")]
    messages = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.strip()]
    return messages, set(loaded.split()[1:])


def test_spec_imports_neither_the_cdk_nor_pydantic() -> None:
    messages, loaded = run_main(["spec"])
    assert [m["type"] for m in messages] == ["SPEC"]
    assert loaded & (HEAVY | {"pydantic", "redis"}) == set()


def test_check_does_not_import_the_cdk(tmp_path: Path, redis_server: RedisServer) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(redis_server.config()))
    messages, loaded = run_main(["check", "--config", str(config)])
    assert messages[-1]["connectionStatus"]["status"] == "SUCCEEDED", messages
    assert loaded & HEAVY == set()


def test_a_one_record_write_does_not_import_the_cdk(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    config, configured = tmp_path / "config.json", tmp_path / "catalog.json"
    config.write_text(json.dumps(redis_server.config()))
    configured.write_text(json.dumps(catalog(("users", "append"))))
    stdin = lines(record("users", {"id": 1}), stream_state("users", {"cursor": 1})).encode()
    messages, loaded = run_main(["write", "--config", str(config), "--catalog", str(configured)], stdin)
    assert [m["type"] for m in messages if m["type"] != "LOG"] == ["STATE"]
    assert redis_client.hget(":users:1", "_airbyte_data") == b'{"id":1}'
    assert loaded & HEAVY == set()


@pytest.mark.parametrize("args", [["check", "--config", "missing.json"]])
def test_a_failing_command_does_not_import_the_cdk_either(args: list[str], tmp_path: Path) -> None:
    code = PROBE.format(main=str(MAIN), args=args)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 1
    (trace,) = [json.loads(line) for line in proc.stdout.decode().splitlines() if '"TRACE"' in line]
    assert trace["trace"]["error"]["failure_type"] == "config_error"
    assert "stack_trace" not in trace["trace"]["error"]
    (loaded,) = [line for line in proc.stderr.decode().splitlines() if line.startswith("LOADED ")]
    assert set(loaded.split()[1:]) & HEAVY == set()
