"""Durability: wait_for_replicas (WAIT) and wait_for_aof (WAITAOF) before each
state, against real servers only: a primary with a real replica (Debian's Redis 7.0), Valkey 8.1
from the matrix cache for WAITAOF, and 7.0 again for the WAITAOF version gate.

The failure cases run the console script as a live process: the first batch and its state go
through, then the replica (or the append-only file) is taken away, and the next batch must fail
with a transient_error and no state after it.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from destination_redis.config import parse_config
from destination_redis.errors import ConnectorError
from destination_redis.topology import open_router
from integration_tests import matrix
from integration_tests.cli import Result, catalog, lines, record, run_connector, stream_state
from integration_tests.cluster import RedisCluster
from integration_tests.connector_runs import (
    assert_check_failed,
    assert_check_succeeded,
    check_cli,
)
from integration_tests.sentinel import SentinelGroup
from integration_tests.servers import REDIS_SERVER, RedisServer

EMITTED = 1_700_000_000_000
WRITE_ARGS = ["write", "--config", "{config}", "--catalog", "{catalog}"]
CATALOG = catalog(("users", "append"))
SCRIPT = shutil.which("destination-redis", path=str(Path(sys.executable).parent)) or "destination-redis"


def _wait_until(what: str, condition: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _online_replicas(client: redis.Redis) -> int:
    info = client.info("replication")
    return sum(1 for name, value in info.items()
               if name.startswith("slave") and isinstance(value, dict) and value.get("state") == "online")


@pytest.fixture
def pair() -> Iterator[tuple[RedisServer, RedisServer]]:
    """A primary and its replica (REPLICAOF), the replica in sync; stopped afterwards."""
    primary = RedisServer(args=["--repl-diskless-sync-delay", "0"]).start()
    replica = RedisServer(args=["--replicaof", "127.0.0.1", str(primary.port)])
    try:
        replica.start()
        _wait_until("the replica in sync", lambda: _online_replicas(primary.client()) == 1)
        yield primary, replica
    finally:
        replica.stop()
        primary.stop()


def _valkey() -> matrix.ServerBinary:
    try:
        return matrix.find("valkey-8.1")
    except matrix.MatrixError as exc:  # the matrix's servers are part of the test setup
        pytest.fail(str(exc))


@pytest.fixture
def valkey_aof() -> Iterator[RedisServer]:
    """Valkey 8.1 with appendonly yes (fsync every second, as by default)."""
    server = RedisServer(binary=_valkey().path, args=["--appendonly", "yes"]).start()
    yield server
    server.stop()


def _records(start: int, count: int) -> list[str]:
    ids = range(start, start + count)
    return [record("users", {"id": i, "name": f"user {i}"}, emitted_at=EMITTED) for i in ids]


def _write_batches(tmp_path: Path, config: dict[str, Any], *sizes: int) -> Result:
    """A write of `sizes[0]` records, a state, `sizes[1]` more, a state, ...: ids from 1 on,
    each state's cursor the last id before it."""
    messages: list[str] = []
    last = 0
    for size in sizes:
        messages += [*_records(last + 1, size), stream_state("users", {"cursor": last + size})]
        last += size
    return run_connector(WRITE_ARGS, tmp_path, config=config, catalog=CATALOG, stdin=lines(*messages))


def _assert_written(result: Result, states: int) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output, output
    assert len(result.states) == states, output


def _assert_no_traceback_noise(result: Result) -> None:
    """The failure is the TRACE error (its stack_trace field aside): none in stderr or the logs."""
    assert "Traceback" not in result.stderr, result.stderr
    for log in result.of_type("LOG"):
        assert "Traceback" not in log["log"]["message"], log


class LiveWrite:
    """`destination-redis write` as a running process: lines fed in on demand, output read as it comes."""

    def __init__(self, tmp_path: Path, config: dict[str, Any]) -> None:
        config_file, catalog_file = tmp_path / "config.json", tmp_path / "catalog.json"
        config_file.write_text(json.dumps(config))
        catalog_file.write_text(json.dumps(CATALOG))
        self.proc = subprocess.Popen(
            [SCRIPT, "write", "--config", str(config_file), "--catalog", str(catalog_file)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._lines: queue.Queue[bytes] = queue.Queue()
        self._seen: list[bytes] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        for line in iter(stdout.readline, b""):
            self._lines.put(line)

    def send(self, *messages: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(lines(*messages).encode())
        self.proc.stdin.flush()

    def next_state(self, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                seen = b"".join(self._seen).decode(errors="replace")
                raise AssertionError(f"no STATE within {timeout} s; the connector wrote:\n{seen}") from None
            self._seen.append(line)
            message = json.loads(line)
            if message.get("type") == "STATE":
                return dict(message)

    def finish(self, timeout: float = 120) -> Result:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=timeout)
        time.sleep(0.1)  # the reader thread drains what is left
        while not self._lines.empty():
            self._seen.append(self._lines.get())
        stderr = self.proc.stderr.read().decode() if self.proc.stderr else ""
        return Result(self.proc.returncode, b"".join(self._seen).decode(), stderr)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Any]:
    started: list[LiveWrite] = []

    def start(config: dict[str, Any]) -> LiveWrite:
        started.append(LiveWrite(tmp_path, config))
        return started[-1]

    yield start
    for write in started:
        write.kill()


# --- (a) WAIT with a replica that acknowledges -------------------------------------------------


def test_with_a_replica_states_flow_and_the_records_are_on_the_replica(
    tmp_path: Path, pair: tuple[RedisServer, RedisServer]
) -> None:
    primary, replica = pair
    config = primary.config(wait_for_replicas=1)
    message = assert_check_succeeded(check_cli(tmp_path, config))
    assert "confirmed by 1 replica (WAIT 1 10000)" in message, message
    result = _write_batches(tmp_path, config, 50, 50)
    _assert_written(result, states=2)
    # WAIT returned before the states: the replica has every record now, without waiting.
    on_replica = replica.client()
    assert on_replica.get(":users") == b"100"
    assert on_replica.hget(":users:100", "_airbyte_data") == b'{"id":100,"name":"user 100"}'
    assert primary.client().info("commandstats")["cmdstat_wait"]["calls"] >= 2


def test_check_fails_when_fewer_replicas_are_in_sync_than_asked(
    tmp_path: Path, pair: tuple[RedisServer, RedisServer]
) -> None:
    primary, _ = pair
    assert_check_failed(check_cli(tmp_path, primary.config(wait_for_replicas=2)),
                        "wait_for_replicas is 2", "has 1 replica in sync", f"127.0.0.1:{primary.port}")


# --- (b) WAIT with a replica that does not acknowledge -----------------------------------------


def test_a_replica_gone_mid_sync_fails_the_batch_and_releases_no_state_after_it(
    pair: tuple[RedisServer, RedisServer], live: Any
) -> None:
    primary, replica = pair
    # 2 s: enough for the replica's acknowledgement of the first batch on 2 busy cores (500 ms
    # was missed once in CI), still short for the batch that nothing acknowledges.
    write: LiveWrite = live(primary.config(wait_for_replicas=1, wait_timeout_ms=2000))
    write.send(*_records(1, 10), stream_state("users", {"cursor": 10}))
    assert write.next_state()["state"]["stream"]["stream_state"] == {"cursor": 10}
    replica.client().replicaof("NO", "ONE")  # it leaves: nothing acknowledges the primary's writes
    _wait_until("the primary to lose its replica", lambda: _online_replicas(primary.client()) == 0)
    write.send(*_records(11, 10), stream_state("users", {"cursor": 20}))
    result = write.finish()
    assert result.returncode != 0, result.stdout + result.stderr
    assert [m["state"]["stream"]["stream_state"] for m in result.states] == [{"cursor": 10}]
    (error,) = result.errors
    assert error["failure_type"] == "transient_error", error
    assert f"Only 0 of 1 replica of Redis at 127.0.0.1:{primary.port}" in error["message"], error
    assert "WAIT 1 2000" in error["message"], error
    _assert_no_traceback_noise(result)


# --- (c) WAITAOF on Valkey 8.1 -----------------------------------------------------------------


def test_waitaof_with_appendonly_states_flow(tmp_path: Path, valkey_aof: RedisServer) -> None:
    config = valkey_aof.config(wait_for_aof=True)
    message = assert_check_succeeded(check_cli(tmp_path, config))
    assert "fsynced to the append-only file (WAITAOF 1 0 10000)" in message, message
    result = _write_batches(tmp_path, config, 20, 20)
    _assert_written(result, states=2)
    client = valkey_aof.client()
    assert client.get(":users") == b"40"
    assert client.info("commandstats")["cmdstat_waitaof"]["calls"] >= 2


def test_waitaof_with_appendonly_off_fails_check_and_write_before_writing(tmp_path: Path) -> None:
    server = RedisServer(binary=_valkey().path).start()  # the harness's default: appendonly no
    try:
        config = server.config(wait_for_aof=True)
        assert_check_failed(check_cli(tmp_path, config), "wait_for_aof needs the append-only file",
                            f"127.0.0.1:{server.port}", "aof_enabled:0")
        result = _write_batches(tmp_path, config, 3)
        assert result.returncode != 0
        assert result.states == []
        (error,) = result.errors
        assert error["failure_type"] == "config_error", error
        assert "wait_for_aof needs the append-only file" in error["message"]
        assert server.client().dbsize() == 0
    finally:
        server.stop()


def test_appendonly_turned_off_mid_sync_fails_the_batch_with_a_transient_error(
    valkey_aof: RedisServer, live: Any
) -> None:
    write: LiveWrite = live(valkey_aof.config(wait_for_aof=True, wait_timeout_ms=2000))
    write.send(*_records(1, 10), stream_state("users", {"cursor": 10}))
    assert write.next_state()["state"]["stream"]["stream_state"] == {"cursor": 10}
    valkey_aof.client().config_set("appendonly", "no")  # WAITAOF 1 ... is refused from now on
    write.send(*_records(11, 10), stream_state("users", {"cursor": 20}))
    result = write.finish()
    assert result.returncode != 0, result.stdout + result.stderr
    assert [m["state"]["stream"]["stream_state"] for m in result.states] == [{"cursor": 10}]
    (error,) = result.errors
    assert error["failure_type"] == "transient_error", error
    assert "WAITAOF 1 0 2000 (wait_for_aof)" in error["message"], error
    _assert_no_traceback_noise(result)


def test_waitaof_answering_no_local_fsync_is_a_transient_error(valkey_aof: RedisServer) -> None:
    """`appendfsync no` leaves the fsync to the kernel: WAITAOF 1 0 times out with 0 local."""
    client = valkey_aof.client()
    client.config_set("appendfsync", "no")
    config = parse_config(valkey_aof.config(wait_for_aof=True, wait_timeout_ms=300))
    with open_router(config) as router, pytest.raises(ConnectorError) as failed:
        router.run([("SET", "durability:probe", "1")])
    assert failed.value.failure_type == "transient_error"
    assert "answered 0 local" in str(failed.value.message), failed.value.message


# --- (d) the WAITAOF version gate on Debian's Redis 7.0 -----------------------------------------


def test_wait_for_aof_on_redis_7_0_fails_check_and_write_naming_the_version(tmp_path: Path) -> None:
    binary = matrix.read_binary(REDIS_SERVER)
    if binary.redis_version >= (7, 2, 0):
        pytest.skip(f"the default server is {binary}, which has WAITAOF")
    server = RedisServer().start()
    try:
        config = server.config(wait_for_aof=True)
        expected = (f"wait_for_aof needs Redis 7.2 or later (WAITAOF); this server is "
                    f"Redis {binary.version_text}")
        assert_check_failed(check_cli(tmp_path, config), expected)
        result = _write_batches(tmp_path, config, 3)
        assert result.returncode != 0
        assert result.states == []
        (error,) = result.errors
        assert error["failure_type"] == "config_error", error
        assert expected in error["message"]
        assert server.client().dbsize() == 0  # refused before anything was written
    finally:
        server.stop()


# --- topologies: every primary written to waits; Sentinel's own WAIT takes the user's n ---------


def _wait_calls(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_wait", {}).get("calls", 0))


def test_on_a_cluster_every_primary_written_to_waits_for_its_replica(
    tmp_path: Path, redis_cluster: RedisCluster, cluster_client: Any
) -> None:
    primaries = redis_cluster.primaries()
    before = {}
    for address in primaries:
        with redis_cluster.node_client(address) as client:
            before[address] = _wait_calls(client)
    config = redis_cluster.config(wait_for_replicas=1)
    assert "confirmed by 1 replica (WAIT 1 10000)" in assert_check_succeeded(check_cli(tmp_path, config))
    result = _write_batches(tmp_path, config, 300)
    _assert_written(result, states=1)
    for address, keys in redis_cluster.keys_per_primary(":users*").items():
        assert keys, f"no records on {address}: the test needs every primary written to"
        with redis_cluster.node_client(address) as client:
            assert _wait_calls(client) > before[address], f"no WAIT on {address}"
        # Confirmed before the state: the primary's replica holds its keys already.
        with redis_cluster.node_client(redis_cluster.replica_of(address)) as replica:
            assert sorted(replica.scan_iter(match=":users*", count=1000)) == keys, address


def test_under_sentinel_wait_for_replicas_replaces_the_wait_for_one(
    tmp_path: Path, sentinel_group: SentinelGroup
) -> None:
    master = sentinel_group.master_client()
    try:
        master.flushall()
        config = sentinel_group.config(wait_for_replicas=1, wait_timeout_ms=3000)
        message = assert_check_succeeded(check_cli(tmp_path, config))
        assert "writes confirmed by 1 replica with WAIT 1 3000 (wait_for_replicas)" in message, message
        assert "confirmed by 1 replica (WAIT 1 3000)" in message, message
        result = _write_batches(tmp_path, config, 20)
        _assert_written(result, states=1)
        assert master.get(":users") == b"20"
        # More replicas than the group has: check says so at once.
        assert_check_failed(check_cli(tmp_path, sentinel_group.config(wait_for_replicas=2)),
                            "wait_for_replicas is 2", "has 1 replica in sync")
    finally:
        master.close()
