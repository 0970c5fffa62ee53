"""The Sentinel topology end to end: check, its failures, writes and a failover mid-sync,
through the console script as a user runs it, against real servers: the session's `sentinel_group`
(a primary, a replica and 3 Sentinels; the data nodes and the Sentinels have their own passwords).

The failover test changes which node is master, and leaves the group converged (the harness
waits until the old master is the new one's replica); every test asks the group for the master
instead of assuming one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, cast

import pytest
import redis

from integration_tests.cli import Result, catalog, lines, record, run_connector, stream_state
from integration_tests.connector_runs import (
    assert_check_failed,
    assert_check_succeeded,
    check_cli,
    failed_message,
)
from integration_tests.sentinel import SentinelGroup
from integration_tests.topology import text
from integration_tests.topology_fixtures import SENTINEL_DATA_PASSWORD, SENTINEL_PASSWORD

EMITTED = 1_700_000_000_000
WRITE_ARGS = ["write", "--config", "{config}", "--catalog", "{catalog}"]
WRONG_PASSWORD = "Wrong-pw-SECRET-5e0f"  # noqa: S105


@pytest.fixture
def master(sentinel_group: SentinelGroup) -> Iterator[redis.Redis]:
    """A client to the current master, emptied (and the replica with it) before the test."""
    client = sentinel_group.master_client()
    client.flushall()
    assert client.wait(1, 10_000) == 1, "the replica did not follow FLUSHALL"
    try:
        yield client
    finally:
        client.close()


def _address(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"


def _with_topology(group: SentinelGroup, **topology: Any) -> dict[str, Any]:
    """The group's config with fields of its `topology` block changed."""
    config: dict[str, Any] = group.config()
    config["topology"] = {**cast(dict[str, Any], config["topology"]), **topology}
    return config


def _with_count(state_line: str, count: int) -> dict[str, Any]:
    """The state as the connector must echo it: every field kept, recordCount set."""
    message: dict[str, Any] = json.loads(state_line)
    message["state"].setdefault("destinationStats", {})["recordCount"] = count
    return message


def _stored(client: redis.Redis, key: str) -> dict[str, str]:
    """A record hash as text (the harness's clients do not decode)."""
    return {text(field): text(value) for field, value in client.hgetall(key).items()}


def _put(client: redis.Redis, key: str, fields: dict[str, str]) -> None:
    client.execute_command("HSET", key, *(part for item in fields.items() for part in item))


def _expected(record_id: int, data: dict[str, Any]) -> dict[str, str]:
    return {
        "_airbyte_ab_id": str(record_id),
        "_airbyte_emitted_at": str(EMITTED),
        "_airbyte_data": json.dumps(data, separators=(",", ":")),
    }


def _assert_ok(result: Result) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert result.errors == [], result.errors
    assert "Traceback" not in output, output


# --- check ----------------------------------------------------------------------------------------


def test_check_reports_the_master_the_sentinels_name(tmp_path: Path, sentinel_group: SentinelGroup) -> None:
    """The user sees which master the Sentinels named, and whether its writes are confirmed."""
    master = _address(sentinel_group.master_address())
    sentinel = _address(sentinel_group.sentinel_addresses()[0])

    message = assert_check_succeeded(check_cli(tmp_path, sentinel_group.config()))

    assert f"Sentinel master 'mymaster' at {master} (Redis " in message
    assert f"found via Sentinel {sentinel}" in message
    assert "writes confirmed by a replica" in message


def test_check_with_an_unreachable_first_sentinel_uses_the_next(
    tmp_path: Path, sentinel_group: SentinelGroup
) -> None:
    """`host`/`port` down (nothing listens there): a Sentinel of `sentinel_nodes` answers, and
    the output says which one was passed over and why."""
    others = [_address(address) for address in sentinel_group.sentinel_addresses()[1:]]
    config = _with_topology(sentinel_group, sentinel_nodes=others)
    config["port"] = 1  # a privileged port nothing listens on

    result = check_cli(tmp_path, config)

    assert f"found via Sentinel {others[0]}" in assert_check_succeeded(result)
    warnings = [m["log"]["message"] for m in result.of_type("LOG") if m["log"]["level"] == "WARN"]
    passed_over = f"Passed over {config['host']}:1 (TCP connect failed"
    assert any(warning.startswith(passed_over) for warning in warnings), warnings


def test_check_with_a_wrong_sentinel_password_names_the_sentinel(
    tmp_path: Path, sentinel_group: SentinelGroup
) -> None:
    """The Sentinels' password is apart from the data nodes': the message names the field to fix,
    and no password reaches the output (through the CLI: its logs too)."""
    sentinel = _address(sentinel_group.sentinel_addresses()[0])

    result = check_cli(tmp_path, _with_topology(sentinel_group, sentinel_password=WRONG_PASSWORD))

    assert_check_failed(result, f"AUTH failed at {sentinel}", "Check the sentinel_password")
    for secret in (WRONG_PASSWORD, SENTINEL_PASSWORD, SENTINEL_DATA_PASSWORD):
        assert secret not in result.stdout + result.stderr


def test_check_with_a_wrong_data_password_names_the_master(sentinel_group: SentinelGroup) -> None:
    """The master's address came from a Sentinel: the message says so. (In this process: a CLI
    run costs seconds, and the message is the same.)"""
    master = _address(sentinel_group.master_address())

    message = failed_message(sentinel_group.config(password=WRONG_PASSWORD),
                             f"AUTH failed at {master}", "Check the password",
                             f"{master} is the master 'mymaster' as the Sentinel at")

    assert WRONG_PASSWORD not in message


def test_check_with_an_unknown_master_name_names_it(sentinel_group: SentinelGroup) -> None:
    """A nil reply from every Sentinel: said once, naming the field to fix."""
    sentinel = _address(sentinel_group.sentinel_addresses()[0])

    failed_message(_with_topology(sentinel_group, master_name="nosuch"),
                   f"The Sentinel at {sentinel} does not know a master named 'nosuch'", "Check master_name")


# --- writes ---------------------------------------------------------------------------------------


def test_append_and_legacy_overwrite_land_on_the_master(
    tmp_path: Path, sentinel_group: SentinelGroup, master: redis.Redis
) -> None:
    """Two syncs: append continues the ids, a legacy overwrite deletes the stream's own keys up
    front; states echoed with exact counts; the replica already has it all when the sync ends."""
    for i in (1, 2, 3):
        _put(master, f":orders:{i}", _expected(i, {"old": i}))
    master.set(":orders", 3)
    master.hset(":orders:abc", "x", "y")  # a look-alike: not the stream's
    configured = catalog(("users", "append"), ("orders", "overwrite"))

    def sync(run: int, users: int, orders: int) -> tuple[Result, list[str]]:
        states = [stream_state("users", {"run": run}, id=run * 10 + 1),
                  stream_state("orders", {"run": run}, id=run * 10 + 2)]
        messages = [
            *(record("users", {"id": i, "run": run}, emitted_at=EMITTED) for i in range(1, users + 1)),
            states[0],
            *(record("orders", {"id": i, "run": run}, emitted_at=EMITTED) for i in range(1, orders + 1)),
            states[1],
        ]
        result = run_connector(WRITE_ARGS, tmp_path, config=sentinel_group.config(), catalog=configured,
                               stdin=lines(*messages))
        return result, states

    first, first_states = sync(1, users=3, orders=2)
    _assert_ok(first)
    assert first.states == [_with_count(first_states[0], 3), _with_count(first_states[1], 2)]
    second, second_states = sync(2, users=2, orders=1)
    _assert_ok(second)
    assert second.states == [_with_count(second_states[0], 2), _with_count(second_states[1], 1)]

    users = [{"id": i, "run": 1} for i in (1, 2, 3)] + [{"id": i, "run": 2} for i in (1, 2)]
    assert master.get(":users") == b"5"
    assert [_stored(master, f":users:{i}") for i in range(1, 6)] == [
        _expected(i, data) for i, data in enumerate(users, start=1)
    ]
    assert master.get(":orders") == b"1"
    assert _stored(master, ":orders:1") == _expected(1, {"id": 1, "run": 2})
    assert {key.decode() for key in master.scan_iter(":orders*")} == {":orders", ":orders:1", ":orders:abc"}
    # Every round was confirmed by the replica (WAIT) before the states came out: it has it all.
    (replica_address,) = sentinel_group.replica_addresses()
    with sentinel_group.node(replica_address).client() as replica:
        assert replica.get(":users") == b"5"
        assert replica.get(":orders") == b"1"
        assert _stored(replica, ":users:5") == _expected(5, users[4])


# --- failover mid-sync ----------------------------------------------------------------------------

TRIGGER_AT = 30_000  # records on the master before SENTINEL FAILOVER
AT_LEAST = 100_000  # records in all
STATE_EVERY = 1_000
PACED_CHUNK = 500  # records per 0.1 s while the failover runs: rounds keep going in flight


class _Feeder(threading.Thread):
    """Writes the input: the first records at once, then paced while the failover runs (so
    batches are in flight throughout it), then the rest; closes stdin at the end."""

    def __init__(self, stdin: IO[bytes], failover_done: threading.Event) -> None:
        super().__init__(daemon=True)
        self.stdin = stdin
        self.failover_done = failover_done
        self.fed = 0
        self.states: list[str] = []
        self.error: BaseException | None = None

    def _feed(self, count: int) -> None:
        chunk: list[str] = []
        for _ in range(count):
            self.fed += 1
            chunk.append(record("events", {"i": self.fed}, emitted_at=EMITTED))
            if self.fed % STATE_EVERY == 0:
                state = stream_state("events", {"i": self.fed}, id=len(self.states) + 1)
                self.states.append(state)
                chunk.append(state)
        self.stdin.write(lines(*chunk).encode())
        self.stdin.flush()

    def run(self) -> None:
        try:
            self._feed(TRIGGER_AT + 2 * STATE_EVERY)
            while not self.failover_done.is_set():
                self._feed(PACED_CHUNK)
                time.sleep(0.1)
            for _ in range(25):  # the old master is the new one's replica now: WAIT comes back
                self._feed(PACED_CHUNK)
                time.sleep(0.1)
            rest = max(AT_LEAST - self.fed, 10_000)
            self._feed(rest + (-(self.fed + rest)) % STATE_EVERY)  # end on a state
        except BaseException as exc:  # a broken pipe: the connector died; the test says why
            self.error = exc
        finally:
            self.stdin.close()


def _read_lines(stream: IO[bytes], into: list[bytes]) -> threading.Thread:
    thread = threading.Thread(target=lambda: into.extend(iter(stream.readline, b"")), daemon=True)
    thread.start()
    return thread


def _wait_for_counter(group: SentinelGroup, key: str, at_least: int, proc: subprocess.Popen[bytes]) -> None:
    with group.master_client() as client:
        deadline = time.monotonic() + 60
        while int(client.get(key) or 0) < at_least:
            assert proc.poll() is None, f"the connector exited ({proc.returncode}) before {at_least} records"
            assert time.monotonic() < deadline, f"{key} stayed below {at_least}"
            time.sleep(0.02)


@pytest.mark.usefixtures("master")
def test_sentinel_failover_mid_sync_keeps_every_record_exactly_once(
    tmp_path: Path, sentinel_group: SentinelGroup
) -> None:
    """SENTINEL FAILOVER while records stream in: the sync follows the master to the replica
    and ends with exit 0, every record once on the new master (ids 1..N in input order, counter
    N), and every state emitted once, in order, with exact counts."""
    old_master = sentinel_group.master_address()
    config, configured = tmp_path / "config.json", tmp_path / "catalog.json"
    config.write_text(json.dumps(sentinel_group.config()))
    configured.write_text(json.dumps(catalog(("events", "append"))))
    script = shutil.which("destination-redis", path=str(Path(sys.executable).parent))
    assert script, "the console script is not installed next to this Python"
    argv = [script, "write", "--config", str(config), "--catalog", str(configured)]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None
    out: list[bytes] = []
    err: list[bytes] = []
    readers = [_read_lines(proc.stdout, out), _read_lines(proc.stderr, err)]
    failover_done = threading.Event()
    feeder = _Feeder(proc.stdin, failover_done)
    started = time.monotonic()
    try:
        feeder.start()
        _wait_for_counter(sentinel_group, ":events", TRIGGER_AT, proc)
        new_master = sentinel_group.failover()  # returns once the old master is demoted
        assert proc.poll() is None, (  # the input stays open until now: the sync spans the failover
            f"the connector exited ({proc.returncode}) during the failover: "
            + b"".join(out[-20:] + err[-20:]).decode()
        )
        failover_done.set()
        assert proc.wait(timeout=120) == 0, b"".join(out[-20:] + err[-20:]).decode()
    finally:
        failover_done.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        feeder.join(timeout=30)
        for reader in readers:
            reader.join(timeout=30)
    elapsed = time.monotonic() - started
    assert feeder.error is None, feeder.error
    messages = [json.loads(line) for line in out if line.strip()]
    logs = [m["log"]["message"] for m in messages if m["type"] == "LOG"]
    assert not [m for m in messages if m["type"] == "TRACE" and m["trace"].get("type") == "ERROR"], logs
    assert new_master != old_master
    assert any(f"moved from {_address(old_master)} to {_address(new_master)}" in log for log in logs), logs
    # Once the old master is the new one's replica, writes are confirmed by it again.
    assert any(f"at {_address(new_master)} are confirmed by a replica ({_address(old_master)})" in log
               for log in logs), logs

    total = feeder.fed
    assert total >= AT_LEAST
    states = [m for m in messages if m["type"] == "STATE"]
    assert states == [_with_count(state, STATE_EVERY) for state in feeder.states], (
        f"{len(states)} states of {len(feeder.states)}"
    )
    assert sentinel_group.master_address() == new_master
    with sentinel_group.master_client() as client:
        assert client.get(":events") == str(total).encode()
        assert client.dbsize() == total + 1  # the counter and one hash per record: no extra key
        pipe = client.pipeline(transaction=False)
        for i in range(1, total + 1):
            pipe.hmget(f":events:{i}", "_airbyte_ab_id", "_airbyte_data")
        found = pipe.execute()
    wrong = [
        i for i, (record_id, data) in enumerate(found, start=1)
        if record_id != str(i).encode() or data != f'{{"i":{i}}}'.encode()
    ]
    assert wrong == [], f"{len(wrong)} of {total} records wrong or missing, first {wrong[:5]}"
    print(f"failover mid-sync: {total} records in {elapsed:.1f}s, master {old_master} -> {new_master}")
