"""Redis Cluster: every sync mode against a real 3-primary cluster, a failover
and a resharding while records stream in, ASK redirections, a primary lost (CLUSTERDOWN), and
the check's answers for configs that do not fit the server.

The connector runs as a user runs it (the console script, JSON lines on stdin). Assertions look
at each primary with SCAN, so a key stored twice (on two primaries) or on the wrong one shows.

Clusters: the sync-mode and check tests share the session's `redis_cluster` (emptied by
`cluster_client`, no assumption on who owns which slot), and leave its layout as it was. The
tests that change the cluster (failover, resharding, slots migrated by hand, primaries killed
or hung) share `moved_cluster`, a cluster of this module's own (module scope, node timeout 2 s),
never restored: each test asks who owns what. The tests that kill a primary come last in the
file, since the harness's stability checks want every node alive.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import redis
import redis.cluster
from redis.crc import key_slot

from integration_tests.cli import Result, catalog, lines, record, run_connector, stream_state
from integration_tests.cluster import SLOTS, RedisCluster
from integration_tests.connector_runs import assert_check_failed, check_cli
from integration_tests.servers import RedisServer
from integration_tests.test_cli_write import _read_until_state, _script, assert_failed, assert_ok, with_count
from integration_tests.test_sync_modes import configured, status
from integration_tests.topology import Address, parse_info, text

WRITE_ARGS = ["write", "--config", "{config}", "--catalog", "{catalog}"]
CHECK_ARGS = ["check", "--config", "{config}"]


# --- helpers --------------------------------------------------------------------------------------


def write(cluster: RedisCluster, tmp_path: Path, streams: list[dict[str, Any]], stdin: str,
          **config: Any) -> Result:
    return run_connector(WRITE_ARGS, tmp_path, config=cluster.config(**config),
                         catalog={"streams": streams}, stdin=stdin)


def check(config: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    result = run_connector(CHECK_ARGS, tmp_path, config=config)
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    return result.connection_status


def where_keys_live(cluster: RedisCluster, match: str) -> dict[bytes, Address]:
    """Each key matching `match`, with the primary whose SCAN returned it; a key on two primaries fails."""
    found: dict[bytes, Address] = {}
    for primary, held in cluster.keys_per_primary(match).items():
        for key in held:
            assert key not in found, f"{key!r} is on {found[key]} and on {primary}"
            found[key] = primary
    return found


def slot_owners(cluster: RedisCluster) -> list[Address]:
    """The primary of each slot, from one CLUSTER NODES (node_for_key asks once per key)."""
    owners: list[Address | None] = [None] * SLOTS
    for address in cluster.primaries():
        for first, last in cluster.view()[cluster.node_id(address)].slots:
            owners[first : last + 1] = [address] * (last - first + 1)
    assert None not in owners
    return [owner for owner in owners if owner is not None]


def assert_on_their_primaries(
    cluster: RedisCluster, found: dict[bytes, Address], everywhere: bool = True
) -> None:
    """Every key lives on the primary that owns its slot, and (`everywhere`) each primary holds some."""
    owners = slot_owners(cluster)
    wrong = [key for key, primary in found.items() if owners[key_slot(key)] != primary]
    assert not wrong, f"{len(wrong)} keys not on the primary of their slot, e.g. {wrong[:3]}"
    if everywhere:
        assert set(found.values()) == set(cluster.primaries()), "not every primary holds keys"


def record_keys(stream_key: str, ids: Iterable[int]) -> set[bytes]:
    return {f"{stream_key}:{n}".encode() for n in ids}


def data_of(client: redis.cluster.RedisCluster, key: bytes | str) -> Any:
    stored = client.hgetall(key)
    assert set(stored) == {b"_airbyte_ab_id", b"_airbyte_emitted_at", b"_airbyte_data"}, (key, stored)
    return json.loads(stored[b"_airbyte_data"])


def assert_records_once(cluster: RedisCluster, stream_key: str, total: int, everywhere: bool = True) -> None:
    """`K:1` .. `K:total` exist exactly once each (SCAN of every primary), no other `K:<digits>`,
    and the counter is `total`: every record stored once (a record written twice would have
    taken a second id). Record n holds `{"n": n}` under `_airbyte_ab_id` n (every 10th is read:
    reading all would double the runtime of the big tests)."""
    prefix = len(stream_key) + 1
    found = {key: primary for key, primary in where_keys_live(cluster, f"{stream_key}:*").items()
             if key[prefix:].isdigit()}  # the stream's record keys, not look-alikes
    missing = record_keys(stream_key, range(1, total + 1)) - set(found)
    extra = set(found) - record_keys(stream_key, range(1, total + 1))
    assert not missing, f"{len(missing)} records missing, e.g. {sorted(missing)[:3]}"
    assert not extra, f"records beyond the last id: {sorted(extra)[:3]}"
    assert_on_their_primaries(cluster, found, everywhere)
    by_primary: dict[Address, list[bytes]] = {}
    for key, primary in found.items():
        if int(key[prefix:]) % 10 == 1:
            by_primary.setdefault(primary, []).append(key)
    for primary, held in by_primary.items():
        with cluster.node_client(primary) as client:
            pipe = client.pipeline(transaction=False)
            for key in held:
                pipe.hmget(key, "_airbyte_ab_id", "_airbyte_data")
            for key, (ab_id, data) in zip(held, pipe.execute(), strict=True):
                n = int(key.rsplit(b":", 1)[1])
                assert (int(ab_id), json.loads(data)["n"]) == (n, n), key
    with cluster.node_client(cluster.node_for_key(stream_key)) as client:
        assert client.get(stream_key) == b"%d" % total


def errorstats(cluster: RedisCluster) -> dict[str, int]:
    """Error replies per code (MOVED, ASK, ...) summed over every node since the last reset."""
    totals: dict[str, int] = {}
    for node in cluster.nodes:
        if node.process is None or node.process.poll() is not None:
            continue
        stats = node.harness_client().info("errorstats")
        for name, value in stats.items():
            code = name.removeprefix("errorstat_")
            totals[code] = totals.get(code, 0) + int(value["count"])
    return totals


def reset_stats(cluster: RedisCluster) -> None:
    for node in cluster.nodes:
        if node.process is not None and node.process.poll() is None:
            node.harness_client().config_resetstat()


def spread_keys(cluster: RedisCluster, make: Callable[[int], str], per_primary: int = 2) -> list[str]:
    """Keys `make(0)`, `make(1)`, ... until each primary owns at least `per_primary` of them."""
    chosen: list[str] = []
    counts = dict.fromkeys(cluster.primaries(), 0)
    n = 0
    while min(counts.values()) < per_primary:
        key = make(n)
        owner = cluster.node_for_key(key)
        if counts[owner] < per_primary:
            counts[owner] += 1
            chosen.append(key)
        n += 1
    return chosen


# --- the sync modes on the shared cluster ---------------------------------------------------------


def test_append_spreads_records_over_every_primary_with_exact_states(
    redis_cluster: RedisCluster, cluster_client: redis.cluster.RedisCluster, tmp_path: Path
) -> None:
    """Two streams (one with a namespace), interleaved, across batches: every record on the
    primary of its slot, states in order with their ids and exact counts; a second sync
    continues the ids from each counter, wherever the counter lives."""
    users_state = stream_state("users", {"page": 1}, id=1)
    orders_state = stream_state("orders", {"page": 1}, namespace="shop", id=2)
    messages = []
    for n in range(1, 12_001):  # two streams, 6,000 each: one batch of 10,000 and the rest
        messages.append(record("users", {"n": (n + 1) // 2}) if n % 2 else
                        record("orders", {"n": n // 2}, namespace="shop"))
    configured_streams = catalog(("users", "append"), ("orders", "append", "shop"))
    first = run_connector(WRITE_ARGS, tmp_path, config=redis_cluster.config(), catalog=configured_streams,
                          stdin=lines(*messages, users_state, orders_state))
    assert_ok(first)
    assert first.states == [with_count(users_state, 6_000), with_count(orders_state, 6_000)]
    assert_records_once(redis_cluster, ":users", 6_000)
    assert_records_once(redis_cluster, "shop:orders", 6_000)

    more = stream_state("users", {"page": 2}, id=3)
    second = run_connector(WRITE_ARGS, tmp_path, config=redis_cluster.config(), catalog=configured_streams,
                           stdin=lines(*(record("users", {"n": n}) for n in range(6_001, 6_301)), more))
    assert_ok(second)
    assert second.states == [with_count(more, 300)]
    assert_records_once(redis_cluster, ":users", 6_300)
    assert_records_once(redis_cluster, "shop:orders", 6_000)
    assert len(redis_cluster.keys_all()) == 6_300 + 6_000 + 2  # the records and two counters


def test_legacy_overwrite_deletes_the_stream_on_every_primary_and_nothing_else(
    redis_cluster: RedisCluster, cluster_client: redis.cluster.RedisCluster, tmp_path: Path
) -> None:
    """The up-front delete SCANs every primary: old records go wherever they live; look-alike
    keys (on every primary too) and other streams stay."""
    for n in range(1, 3_001):
        cluster_client.hset(f":users:{n}", "_airbyte_ab_id", str(n))
    cluster_client.set(":users", 3_000)
    look_alikes = (
        spread_keys(redis_cluster, lambda n: f":users:{n}:x")
        + spread_keys(redis_cluster, lambda n: f":users:abc{n}")
        + spread_keys(redis_cluster, lambda n: f":users2:{n}")
        + spread_keys(redis_cluster, lambda n: f"ns:users:{n}")
    )
    for key in look_alikes:
        cluster_client.set(key, "keep me")

    state = stream_state("users", {"c": 1}, id=7)
    result = write(redis_cluster, tmp_path, [configured("users", "overwrite")],
                   lines(*(record("users", {"n": n}) for n in range(1, 401)), state))

    assert_ok(result)
    assert result.states == [with_count(state, 400)]
    assert "deleted 3000 existing records" in result.stdout
    assert_records_once(redis_cluster, ":users", 400)
    found = where_keys_live(redis_cluster, "*")
    kept = {b":users"} | {key.encode() for key in look_alikes}
    assert set(found) == record_keys(":users", range(1, 401)) | kept
    assert_on_their_primaries(redis_cluster, {k.encode(): found[k.encode()] for k in look_alikes})
    assert all(cluster_client.get(key) == b"keep me" for key in look_alikes)


def test_refresh_removes_the_old_generation_only_after_complete_on_every_primary(
    redis_cluster: RedisCluster, cluster_client: redis.cluster.RedisCluster, tmp_path: Path
) -> None:
    """Generation ids from the catalog: a failed attempt deletes nothing, the completed one
    leaves exactly its generation; the bookkeeping hashes live where their slots say. `users`
    (append) has its old ids deleted by name, `people` (append_dedup) found by SCAN of every
    primary."""

    def sync(generation: int, values: range, complete: bool) -> Result:
        streams = [configured("users", "append", generation=generation, minimum=generation),
                   configured("people", "append_dedup", [["id"]], generation=generation, minimum=generation)]
        body = [status("users", "STARTED"), status("people", "STARTED")]
        for v in values:
            body += [record(stream, {"id": v, "gen": generation}) for stream in ("users", "people")]
        body += [stream_state("users", {"g": generation}), stream_state("people", {"g": generation})]
        if complete:
            body += [status("users", "COMPLETE"), status("people", "COMPLETE")]
        result = write(redis_cluster, tmp_path, streams, lines(*body))
        assert_ok(result)
        assert [s["state"]["destinationStats"]["recordCount"] for s in result.states] == [len(values)] * 2
        return result

    def stored(stream: str) -> list[tuple[int, int]]:
        found = where_keys_live(redis_cluster, f":{stream}:*")
        assert_on_their_primaries(redis_cluster, found)
        return sorted((data["gen"], data["id"]) for data in (data_of(cluster_client, k) for k in found))

    sync(1, range(1, 301), complete=True)
    sync(2, range(201, 261), complete=False)  # the input ends without COMPLETE: nothing deleted
    assert stored("users") == sorted([(1, v) for v in range(1, 301)] + [(2, v) for v in range(201, 261)])
    assert stored("people") == sorted([(1, v) for v in range(1, 201)] + [(2, v) for v in range(201, 261)]
                                      + [(1, v) for v in range(261, 301)])
    sync(2, range(261, 401), complete=True)
    for stream in ("users", "people"):
        assert stored(stream) == [(2, v) for v in range(201, 401)], stream
        assert cluster_client.get(f":{stream}") == b"500"  # 300 + 60 + 140 ids handed out
        assert cluster_client.hget(f"_airbyte_meta::{stream}", "status") == b"complete"
    meta = where_keys_live(redis_cluster, "_airbyte_meta:*")
    assert meta == {key.encode(): redis_cluster.node_for_key(key)
                    for key in ("_airbyte_meta::users", "_airbyte_meta::people")}


def test_dedup_replaces_and_cdc_deletes_on_every_primary(
    redis_cluster: RedisCluster, cluster_client: redis.cluster.RedisCluster, tmp_path: Path
) -> None:
    """One key per primary key on the primary of its slot: a newer record replaces the whole
    value (MULTI .. EXEC on that primary), `_ab_cdc_deleted_at` deletes wherever the key lives."""
    streams = [configured("users", "append_dedup", [["id"]])]
    first = [record("users", {"id": v, "v": 1, "old": True}) for v in range(1, 601)]
    assert_ok(write(redis_cluster, tmp_path, streams, lines(*first, stream_state("users", {"c": 1}))))
    deleted = range(1, 601, 3)
    body = [record("users", {"id": v, "v": 2}) for v in range(1, 601)]
    body += [record("users", {"id": v, "_ab_cdc_deleted_at": "2026-11-25T00:00:00Z"}) for v in deleted]
    body += [record("users", {"id": v, "_ab_cdc_deleted_at": "2026-11-25T00:00:00Z"}) for v in (900, 901)]
    state = stream_state("users", {"c": 2}, id=5)
    second = write(redis_cluster, tmp_path, streams, lines(*body, state))
    assert_ok(second)
    assert second.states == [with_count(state, 600 + len(deleted) + 2)]
    kept = sorted(set(range(1, 601)) - set(deleted))
    found = where_keys_live(redis_cluster, ":users:*")
    assert set(found) == record_keys(":users", kept)
    assert_on_their_primaries(redis_cluster, found)
    for v in kept:
        assert data_of(cluster_client, f":users:{v}") == {"id": v, "v": 2}  # no "old" field left
    assert cluster_client.get(":users") == b"1200"  # one id per upsert, none per delete


def test_ttl_on_every_record_key_of_every_primary_and_never_on_the_counter(
    redis_cluster: RedisCluster, cluster_client: redis.cluster.RedisCluster, tmp_path: Path
) -> None:
    streams = [configured("events", "append"), configured("users", "append_dedup", [["id"]])]
    body = [record("events", {"e": n}) for n in range(1, 301)]
    body += [record("users", {"id": n}) for n in range(300)]
    assert_ok(write(redis_cluster, tmp_path, streams, lines(*body), ttl_seconds=500))
    for match in (":events:*", ":users:*"):
        found = where_keys_live(redis_cluster, match)
        assert len(found) == 300
        assert_on_their_primaries(redis_cluster, found)
        for primary in set(found.values()):
            with redis_cluster.node_client(primary) as client:
                pipe = client.pipeline(transaction=False)
                held = [key for key, owner in found.items() if owner == primary]
                for key in held:
                    pipe.ttl(key)
                assert all(490 <= ttl <= 500 for ttl in pipe.execute()), primary
    assert cluster_client.ttl(":events") == -1
    assert cluster_client.ttl(":users") == -1


# --- check ----------------------------------------------------------------------------------------


def test_check_reports_the_cluster(redis_cluster: RedisCluster, tmp_path: Path) -> None:
    answer = check(redis_cluster.config(), tmp_path)
    assert answer["status"] == "SUCCEEDED", answer
    assert answer["message"].startswith("Connected to Redis Cluster of 3 primaries (Redis 7.0"), answer
    for host, port in redis_cluster.primaries():
        assert f"{host}:{port}" in answer["message"]
    assert redis_cluster.keys_all("_airbyte_check:*") == []  # the probe keys are gone, on every primary


def test_check_with_a_database_other_than_0_names_select(redis_cluster: RedisCluster, tmp_path: Path) -> None:
    answer = check(redis_cluster.config(db=1), tmp_path)
    assert answer["status"] == "FAILED"
    assert "SELECT" in answer["message"], answer
    assert "database 0" in answer["message"], answer
    assert "Set db to 0" in answer["message"]


def test_check_of_a_standalone_server_as_cluster_says_it_is_no_cluster_node(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    answer = check(redis_server.config(topology={"mode": "cluster", "seed_nodes": []}), tmp_path)
    assert answer["status"] == "FAILED"
    assert "is not a cluster node" in answer["message"], answer
    assert f"127.0.0.1:{redis_server.port}" in answer["message"]
    assert "Set topology to standalone" in answer["message"]


def test_a_standalone_config_at_a_cluster_node_fails_before_writing_naming_the_topology(
    redis_cluster: RedisCluster, cluster_client: redis.cluster.RedisCluster, tmp_path: Path
) -> None:
    """Without `topology` the node would be taken for one server, and writes would half succeed
    (its own slots written, the rest answered MOVED). `check` and `write` refuse at once, before
    anything is written, saying to set the topology."""
    host, port = redis_cluster.primaries()[0]
    config = {"host": host, "port": port}
    check = check_cli(tmp_path, config)
    assert_check_failed(check, "node of a Redis Cluster", '"mode": "cluster"')
    result = run_connector(WRITE_ARGS, tmp_path, config=config,
                           catalog=catalog(("users", "overwrite")),
                           stdin=lines(*(record("users", {"n": n}) for n in range(1, 101))))
    error = assert_failed(result, "node of a Redis Cluster", '"mode": "cluster"')
    assert error["failure_type"] == "config_error"
    assert redis_cluster.keys_all() == []
    assert result.states == []


# --- a failover and a resharding while records stream in ---------------------------------------

CHUNK = 2_000  # records of the main stream between two of its states
TRIGGER = 30_000  # act once the states acknowledged this many records
MINIMUM = 100_000  # records at least
PACE_S = 0.1  # between chunks once the first trigger + 10,000 are fed: ~20,000 records/s
RECORD_LINE = (
    '{"type":"RECORD","record":{"stream":"users","namespace":%s,"emitted_at":1700000000000,'
    '"data":{"n":%d,"pad":"%s"}}}\n'
)


class LiveSync:
    """`write` fed through a pipe by a thread, so the test can change the cluster mid-sync.

    The feeder sends chunks of CHUNK records of `users` (in `namespace`), each chunk followed by a
    STATE with an id; `extra(chunk)` adds lines of other streams to each chunk. It feeds fast up to
    `trigger` + 10,000 records, then one chunk per PACE_S until `release()` was called and
    `minimum` records went out, then `tail` and the end of input. A reader thread collects stdout;
    `triggered` is set once the states acknowledged `trigger` records.
    """

    def __init__(self, cluster: RedisCluster, tmp_path: Path, streams: list[dict[str, Any]],
                 namespace: str | None = None, extra: Callable[[int], str] = lambda chunk: "",
                 tail: str = "", trigger: int = TRIGGER, minimum: int = MINIMUM) -> None:
        (tmp_path / "config.json").write_text(json.dumps(cluster.config()))
        (tmp_path / "catalog.json").write_text(json.dumps({"streams": streams}))
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115  # closed by finish()
        self.process = subprocess.Popen(
            [_script(), "write", "--config", str(tmp_path / "config.json"),
             "--catalog", str(tmp_path / "catalog.json")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.namespace = namespace
        self._extra = extra
        self._tail = tail
        self._stderr_text = ""
        self.trigger, self.minimum = trigger, minimum
        self.fed = 0
        self.acknowledged = 0
        self.messages: list[dict[str, Any]] = []
        self.sent_states: list[str] = []
        self.triggered = threading.Event()
        self._released = threading.Event()
        self._feed_error: BaseException | None = None
        self._feeder = threading.Thread(target=self._feed, name="feeder", daemon=True)
        self._reader = threading.Thread(target=self._read, name="reader", daemon=True)
        self._feeder.start()
        self._reader.start()

    def _feed(self) -> None:
        assert self.process.stdin is not None
        namespace = json.dumps(self.namespace)
        try:
            chunk = 0
            while not (self._released.is_set() and self.fed >= self.minimum):
                first = self.fed + 1
                self.fed += CHUNK
                chunk += 1
                state = stream_state("users", {"n": self.fed}, namespace=self.namespace, id=chunk)
                self.sent_states.append(state)
                body = "".join([RECORD_LINE % (namespace, n, "x" * (n % 64))
                                for n in range(first, self.fed + 1)])
                self.process.stdin.write((body + state + "\n" + self._extra(chunk)).encode())
                self.process.stdin.flush()
                if self.fed >= self.trigger + 10_000 and not self._released.is_set():
                    time.sleep(PACE_S)
            self.process.stdin.write(self._tail.encode())
        except BaseException as exc:  # reported by finish()
            self._feed_error = exc
        finally:
            self.process.stdin.close()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            message = json.loads(line)
            self.messages.append(message)
            if message.get("type") == "STATE":
                stream = message["state"]["stream"]["stream_descriptor"]
                if stream["name"] == "users":
                    self.acknowledged += int(message["state"]["destinationStats"]["recordCount"])
                    if self.acknowledged >= self.trigger:
                        self.triggered.set()

    def wait_for_trigger(self, timeout: float = 60) -> None:
        if not self.triggered.wait(timeout):
            self.process.kill()
            raise AssertionError(f"only {self.acknowledged} records acknowledged after {timeout}s: "
                                 f"{self.stderr()[-2000:]} {self.messages[-5:]}")

    def release(self) -> None:
        self._released.set()

    def finish(self, timeout: float = 120) -> int:
        """Wait for the end of the sync; the exit status."""
        self.release()
        try:
            code = self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self._feeder.join(10)
        self._reader.join(10)
        self._stderr_text = self.stderr()
        self._stderr.close()
        return code

    def stop(self) -> None:
        """After a failed test: no connector left running, no thread left waiting."""
        self.release()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if not self._stderr.closed:
            self._stderr_text = self.stderr()
            self._stderr.close()

    def stderr(self) -> str:
        if self._stderr.closed:
            return self._stderr_text
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def states(self, name: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == "STATE"
                and m["state"]["stream"]["stream_descriptor"]["name"] == name]

    def logs(self) -> list[str]:
        return [m["log"]["message"] for m in self.messages if m.get("type") == "LOG"]

    def assert_ok(self, code: int) -> None:
        errors = [m for m in self.messages if m.get("type") == "TRACE" and m["trace"].get("type") == "ERROR"]
        assert not errors, (errors, self.logs()[-10:], self.stderr()[-3000:])
        assert code == 0, (code, self.logs()[-10:], self.stderr()[-3000:])
        assert self._feed_error is None, f"feeding failed: {self._feed_error!r}"
        assert "Traceback" not in self.stderr()
        assert self.fed >= self.minimum
        # Every state echoed, in order, with its id and exact count.
        assert self.states("users") == [with_count(state, CHUNK) for state in self.sent_states]


@pytest.fixture
def live_sync() -> Iterator[Callable[..., LiveSync]]:
    """Starts LiveSyncs (same arguments); whatever a test leaves running is stopped after it."""
    started: list[LiveSync] = []

    def start(*args: Any, **kwargs: Any) -> LiveSync:
        started.append(LiveSync(*args, **kwargs))
        return started[-1]

    yield start
    for sync in started:
        sync.stop()


@pytest.fixture(scope="module")
def moved_cluster() -> Iterator[RedisCluster]:
    """A cluster of this module's own for the tests that move slots and roles around, or kill
    primaries: a node timeout of 2 s (not 6) makes a replica take over a dead primary sooner."""
    with RedisCluster(node_timeout_ms=2_000) as cluster:
        yield cluster


@pytest.fixture
def moved_client(moved_cluster: RedisCluster) -> Iterator[redis.cluster.RedisCluster]:
    """A client to `moved_cluster`, stable (every node alive: before the killing tests), emptied."""
    moved_cluster.wait_stable()
    moved_cluster.flushall()
    reset_stats(moved_cluster)
    client = moved_cluster.client()
    try:
        yield client
    finally:
        client.close()


def people(generation: int, values: range) -> str:
    return lines(*(record("people", {"id": v, "gen": generation}) for v in values))


def test_failover_of_the_counters_primary_mid_sync_loses_and_duplicates_nothing(
    moved_cluster: RedisCluster, moved_client: redis.cluster.RedisCluster, tmp_path: Path,
    live_sync: Callable[..., LiveSync],
) -> None:
    """CLUSTER FAILOVER of the primary owning `:users` once 30,000 records were acknowledged,
    records streaming on: exit 0, ids 1..N each once, counter N. Alongside, an append_dedup
    refresh (generation 2) whose completion, after the failover, SCANs every primary (the new
    one included) to delete generation 1."""
    people_gen1 = [configured("people", "append_dedup", [["id"]], generation=1, minimum=1)]
    assert_ok(write(moved_cluster, tmp_path, people_gen1, people(1, range(1, 301))))
    streams = [
        configured("users", "append"),
        configured("people", "append_dedup", [["id"]], generation=2, minimum=2),
    ]
    per_chunk = 20

    def people_chunk(chunk: int) -> str:
        first = 200 + (chunk - 1) * per_chunk + 1
        return people(2, range(first, first + per_chunk)) + stream_state("people", {"chunk": chunk}) + "\n"

    primary = moved_cluster.node_for_key(":users")
    tail = lines(status("users", "COMPLETE"), status("people", "COMPLETE"))
    sync = live_sync(moved_cluster, tmp_path, streams, extra=people_chunk, tail=tail)
    sync.wait_for_trigger()
    new_primary = moved_cluster.failover(primary)
    assert moved_cluster.node_for_key(":users") == new_primary
    acknowledged_at_failover = sync.acknowledged
    sync.assert_ok(sync.finish())
    assert acknowledged_at_failover < sync.fed, "the sync was over before the failover: nothing tested"

    assert_records_once(moved_cluster, ":users", sync.fed)
    chunks = len(sync.sent_states)
    counts = [s["state"]["destinationStats"]["recordCount"] for s in sync.states("people")]
    assert counts == [per_chunk] * chunks
    kept = range(201, 201 + per_chunk * chunks)
    found = where_keys_live(moved_cluster, ":people:*")
    assert set(found) == record_keys(":people", kept)  # generation 1's 1..200 gone from every primary
    assert_on_their_primaries(moved_cluster, found)
    assert {data_of(moved_client, key)["gen"] for key in found} == {2}
    assert moved_client.get(":people") == b"%d" % (300 + len(kept))
    assert errorstats(moved_cluster).get("MOVED", 0) > 0, "the connector was never redirected"


def first_slots(cluster: RedisCluster, primary: Address, count: int) -> set[int]:
    """The `count` lowest slots of `primary`: those `redis-cli --cluster reshard` moves first."""
    slots: list[int] = []
    for first, last in cluster.view()[cluster.node_id(primary)].slots:
        slots += range(first, last + 1)
    return set(sorted(slots)[:count])


def test_resharding_1000_slots_mid_sync_loses_and_duplicates_nothing(
    moved_cluster: RedisCluster, moved_client: redis.cluster.RedisCluster, tmp_path: Path,
    live_sync: Callable[..., LiveSync],
) -> None:
    """`redis-cli --cluster reshard` of 1,000 slots (the counter's among them) from one primary
    to another once 30,000 records were acknowledged: the connector meets MOVED (and ASK where
    a slot is mid-migration) for records, the counter and dedup transactions alike."""
    source, target = moved_cluster.primaries()[:2]
    moving = first_slots(moved_cluster, source, 1_000)
    namespace = next(f"r{n}" for n in range(100_000) if key_slot(f"r{n}:users".encode()) in moving)
    counter = f"{namespace}:users"
    streams = [configured("users", "append", namespace=namespace),
               configured("people", "append_dedup", [["id"]])]

    def people_chunk(chunk: int) -> str:  # 200 upserts a chunk, each id twice (a replace)
        first = (chunk - 1) * 100 + 1
        values = list(range(first, first + 100)) * 2
        return lines(*(record("people", {"id": v, "chunk": chunk}) for v in values))

    sync = live_sync(moved_cluster, tmp_path, streams, namespace=namespace, extra=people_chunk)
    sync.wait_for_trigger()
    job = moved_cluster.reshard(1_000, source, target)
    job.wait()
    assert moved_cluster.node_for_key(counter) == target
    acknowledged_at_reshard_end = sync.acknowledged
    sync.assert_ok(sync.finish())
    assert acknowledged_at_reshard_end < sync.fed, "the sync was over before the reshard: nothing tested"

    assert_records_once(moved_cluster, counter, sync.fed)
    chunks = len(sync.sent_states)
    found = where_keys_live(moved_cluster, ":people:*")
    assert set(found) == record_keys(":people", range(1, 100 * chunks + 1))
    assert_on_their_primaries(moved_cluster, found)
    assert moved_client.get(":people") == b"%d" % (200 * chunks)
    stats = errorstats(moved_cluster)
    assert stats.get("MOVED", 0) > 0, stats
    print(f"resharding: {sync.fed} records, redirections {stats}")  # ASK depends on timing


def test_ask_during_a_slot_migration_reaches_the_importing_node(
    moved_cluster: RedisCluster, moved_client: redis.cluster.RedisCluster, tmp_path: Path
) -> None:
    """Slots held half-migrated by hand (MIGRATING on the owner, IMPORTING on another primary)
    while a sync writes into them: keys already moved are answered ASK, and the connector resends
    behind ASKING to the importing node (before each command, once before a MULTI); keys still on
    the owner are written there. The counter itself is moved first, so its GET and INCRBY meet ASK.
    Afterwards the migration is finished: every key once, with the values of the last write."""
    counter_slot = key_slot(b":users")
    source = moved_cluster.node_for_slot(counter_slot)
    target = next(p for p in moved_cluster.primaries() if p != source)
    assert_ok(write(moved_cluster, tmp_path, [configured("users", "append"),
                                              configured("people", "append_dedup", [["id"]])],
                    lines(*(record("users", {"n": n}) for n in range(1, 201)), people(1, range(1, 201)))))
    # Migrate every slot of `source` that holds a key of the sync (and the counter's).
    users_keys = [f":users:{n}" for n in range(1, 601)]
    people_keys = [f":people:{v}" for v in range(1, 301)]
    slots = {counter_slot} | {key_slot(k.encode()) for k in users_keys + people_keys
                              if moved_cluster.node_for_key(k) == source}
    source_id, target_id = moved_cluster.node_id(source), moved_cluster.node_id(target)
    with moved_cluster.node_client(source) as src, moved_cluster.node_client(target) as dst:
        for slot in slots:
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        # Half of the existing keys (and the counter) go over now; the rest stay on the source.
        existing = [k for k in [":users", *users_keys[:200], *people_keys[:200]]
                    if key_slot(k.encode()) in slots]
        moved_now = [k for i, k in enumerate(existing) if k == ":users" or i % 2]
        for key in moved_now:
            src.execute_command("MIGRATE", target[0], target[1], key, 0, 5000)
        try:
            body = [record("users", {"n": n}) for n in range(201, 601)]
            body += [record("people", {"id": v, "gen": 2}) for v in range(1, 301)]  # replace, create
            body += [record("people", {"id": v, "_ab_cdc_deleted_at": "now"}) for v in range(1, 301, 7)]
            result = write(moved_cluster, tmp_path, [configured("users", "append"),
                                                     configured("people", "append_dedup", [["id"]])],
                           lines(*body, stream_state("users", {"c": 1})))
            assert_ok(result)
            assert result.states[0]["state"]["destinationStats"]["recordCount"] == 400
            stats = errorstats(moved_cluster)
            asking = int(dst.info("commandstats").get("cmdstat_asking", {}).get("calls", 0))
        finally:
            # Finish the migration the way redis-cli does: the remaining keys, then the owner.
            for slot in slots:
                while batch := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
                    src.execute_command("MIGRATE", target[0], target[1], "", 0, 5000, "KEYS", *batch)
            others = [p for p in moved_cluster.primaries() if p not in (source, target)]
            for slot in slots:  # the new owner first, as redis-cli does
                dst.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
                src.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
                for address in others:
                    with moved_cluster.node_client(address) as client:
                        client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
            moved_cluster.wait_stable()
    assert stats.get("ASK", 0) > 0, stats
    assert asking > 0, "no ASKING reached the importing node"
    assert_records_once(moved_cluster, ":users", 600, everywhere=False)  # the source's all moved
    deleted = set(range(1, 301, 7))
    found = where_keys_live(moved_cluster, ":people:*")
    assert set(found) == record_keys(":people", set(range(1, 301)) - deleted)
    for stored_key in found:
        assert data_of(moved_client, stored_key)["gen"] == 2, stored_key
    assert moved_client.get(":people") == b"500"  # 200 + 300 upserts


@pytest.fixture
def fragile(moved_cluster: RedisCluster) -> RedisCluster:
    """`moved_cluster` emptied, its error counts reset; nodes killed by earlier tests stay dead.
    Each test kills or hangs a primary that still has a replica."""
    moved_cluster.flushall()
    reset_stats(moved_cluster)
    return moved_cluster


def victim_and_namespace(cluster: RedisCluster, need_replica: bool) -> tuple[Address, str]:
    """A primary to kill or hang (not nodes[0], which the harness asks for the layout; with a
    replica when `need_replica`), and a namespace whose `users` counter it owns."""
    nodes0 = cluster.nodes[0].address
    victim = next(p for p in cluster.primaries()
                  if p != nodes0 and (has_replica(cluster, p) or not need_replica))
    owners = slot_owners(cluster)
    namespace = next(f"k{n}" for n in range(100_000) if owners[key_slot(f"k{n}:users".encode())] == victim)
    return victim, namespace


def kill_primary(cluster: RedisCluster, primary: Address) -> None:
    """SIGKILL: no goodbye to clients or replicas; the cluster fails the node over by itself."""
    assert primary != cluster.nodes[0].address  # the harness asks nodes[0] for the layout
    process = cluster.node(primary).process
    assert process is not None
    process.kill()
    process.wait()


def wait_for_new_owner(cluster: RedisCluster, key: str, lost: Address, timeout: float = 30) -> Address:
    """Once the cluster is ok again and `key`'s slot has a live primary: that primary."""
    survivor = cluster.nodes[0].harness_client()
    deadline = time.monotonic() + timeout
    while True:
        state = parse_info(text(survivor.execute_command("CLUSTER", "INFO")))["cluster_state"]
        owner = cluster.node_for_key(key)
        if state == "ok" and owner != lost:
            return owner
        assert time.monotonic() < deadline, f"no replica of {lost} took over within {timeout}s"
        time.sleep(0.1)


def has_replica(cluster: RedisCluster, primary: Address) -> bool:
    try:
        cluster.replica_of(primary)
    except KeyError:
        return False
    return True


def wait_replicated(cluster: RedisCluster, primary: Address, timeout: float = 10) -> None:
    """Until the replica has every write of `primary` (so a kill loses nothing acknowledged)."""
    with cluster.node_client(primary) as source, cluster.node_client(cluster.replica_of(primary)) as copy:
        deadline = time.monotonic() + timeout
        while copy.info("replication")["slave_repl_offset"] < source.info("replication")[
            "master_repl_offset"
        ]:
            assert time.monotonic() < deadline, "the replica did not catch up"
            time.sleep(0.02)


def test_losing_a_primary_mid_sync_finds_its_replica(
    fragile: RedisCluster, tmp_path: Path, live_sync: Callable[..., LiveSync]
) -> None:
    """The primary of the stream's counter is killed (SIGKILL) mid-sync: lost connections (the writes to it
    wait in backoff) until its replica is elected, then the router finds the new primary, and
    the sync ends with every record exactly once. (Redis may lose writes it acknowledged just
    before a kill: replication is asynchronous. Over loopback the test has not seen it.)"""
    cluster = fragile
    victim, namespace = victim_and_namespace(cluster, need_replica=True)
    counter = f"{namespace}:users"
    sync = live_sync(cluster, tmp_path, [configured("users", "append", namespace=namespace)],
                    namespace=namespace, trigger=6_000, minimum=30_000)
    sync.wait_for_trigger()
    kill_primary(cluster, victim)
    wait_for_new_owner(cluster, counter, victim)
    acknowledged_at_promotion = sync.acknowledged
    sync.assert_ok(sync.finish())
    assert acknowledged_at_promotion < sync.fed, "the sync was over before the primary was replaced"
    assert_records_once(cluster, counter, sync.fed)
    logs = " ".join(sync.logs())
    assert "Lost the connection" in logs, sync.logs()[-10:]
    print(f"primary lost mid-sync: {sync.fed} records; errors answered {errorstats(cluster)}")


def test_a_primary_lost_before_the_cleanup_scan_is_replaced_by_its_replica(
    fragile: RedisCluster, tmp_path: Path
) -> None:
    """A primary dies while the connector waits for input, before a refresh's cleanup SCANs every
    primary (append_dedup: old keys are found by SCAN): the SCAN of the dead node is not retried
    on it until the attempts run out, the nodes are found again and its promoted replica is
    scanned instead, so generation 1 goes from every slot."""
    cluster = fragile
    victim, _ = victim_and_namespace(cluster, need_replica=True)
    # The stream's counter and bookkeeping hash elsewhere: the SCAN is the first to meet the loss.
    name = next(f"people{n}" for n in range(1000) if victim not in {
        cluster.node_for_key(f":people{n}"), cluster.node_for_key(f"_airbyte_meta::people{n}")})

    def streams(generation: int) -> list[dict[str, Any]]:
        return [configured(name, "append_dedup", [["id"]], generation=generation, minimum=generation)]

    def rows(generation: int, values: range) -> list[str]:
        return [record(name, {"id": v, "gen": generation}) for v in values]

    assert_ok(write(cluster, tmp_path, streams(1), lines(*rows(1, range(1, 301)))))
    (tmp_path / "config.json").write_text(json.dumps(cluster.config()))
    (tmp_path / "catalog.json").write_text(json.dumps({"streams": streams(2)}))
    proc = subprocess.Popen(
        [_script(), "write", "--config", str(tmp_path / "config.json"),
         "--catalog", str(tmp_path / "catalog.json")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        first = lines(status(name, "STARTED"), *rows(2, range(201, 401)), stream_state(name, {"c": 1}))
        proc.stdin.write(first.encode())
        proc.stdin.flush()
        assert _read_until_state(proc, timeout=60)["state"]["destinationStats"]["recordCount"] == 200
        owners = slot_owners(cluster)
        on_victim = next(key for key in (f":{name}:{v}" for v in range(1, 301))
                         if owners[key_slot(key.encode())] == victim)
        wait_replicated(cluster, victim)
        kill_primary(cluster, victim)
        # Its replica takes over before the cleanup starts: the connector, idle meanwhile, still
        # has the old map, and its SCAN of the dead node is the first to notice.
        wait_for_new_owner(cluster, on_victim, victim)
        proc.stdin.write(lines(status(name, "COMPLETE")).encode())
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
        output = proc.stdout.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # It met the failover: at the dead node's SCAN, or first at a node still saying CLUSTERDOWN
    # (each node learns of the failover on its own), and went on.
    assert (f"Lost the connection to Redis at {victim[0]}:{victim[1]}" in output
            or "answered CLUSTERDOWN" in output), output[-3000:]
    found = where_keys_live(cluster, f":{name}:*")
    assert set(found) == record_keys(f":{name}", range(201, 401))
    assert_on_their_primaries(cluster, found)


def test_a_hung_primary_without_failover_means_clusterdown_until_it_is_back(
    fragile: RedisCluster, tmp_path: Path, live_sync: Callable[..., LiveSync]
) -> None:
    """A primary stops answering (SIGSTOP) and its replica may not take over: once the others
    mark it failed they answer CLUSTERDOWN to every command, until it answers again and they
    clear the mark (two node timeouts later). The router waits that out with its backoff and
    resends: every record exactly once (no failover, so Redis loses nothing either)."""
    cluster = fragile
    victim, namespace = victim_and_namespace(cluster, need_replica=False)
    counter = f"{namespace}:users"
    process = cluster.node(victim).process
    assert process is not None
    replica = cluster.replica_of(victim) if has_replica(cluster, victim) else None
    if replica is not None:
        with cluster.node_client(replica) as client:
            client.config_set("cluster-replica-no-failover", "yes")
    survivor = cluster.nodes[0].harness_client()

    def state() -> str:
        return parse_info(text(survivor.execute_command("CLUSTER", "INFO")))["cluster_state"]

    try:
        sync = live_sync(cluster, tmp_path, [configured("users", "append", namespace=namespace)],
                        namespace=namespace, trigger=6_000, minimum=30_000)
        sync.wait_for_trigger()
        process.send_signal(signal.SIGSTOP)
        try:
            deadline = time.monotonic() + 30
            while state() != "fail":
                assert time.monotonic() < deadline, "the cluster never noticed the hung primary"
                time.sleep(0.1)
            # The others clear the mark two node timeouts after setting it; a second of those
            # spent here means fewer backoffs of the connector afterwards (a shorter test).
            time.sleep(1.0)
        finally:
            process.send_signal(signal.SIGCONT)
        sync.assert_ok(sync.finish())
    finally:
        if replica is not None:
            with cluster.node_client(replica) as client:
                client.config_set("cluster-replica-no-failover", "no")
    assert cluster.node_for_key(counter) == victim  # no failover happened
    assert_records_once(cluster, counter, sync.fed)
    stats = errorstats(cluster)
    assert stats.get("CLUSTERDOWN", 0) > 0, stats
    assert "answered CLUSTERDOWN" in " ".join(sync.logs())


def test_acl_user_without_cluster_slots_is_told_to_grant_it(
    redis_cluster: RedisCluster, tmp_path: Path
) -> None:
    """An ACL user that may write keys but not run CLUSTER SLOTS: check FAILED and write a
    config_error (the user must act; retrying would fail the same way), naming the grant."""
    user, password = "noslots", "pw-noslots"
    grants = ["on", f">{password}", "~*", "+@all", "-cluster|slots"]
    for node in redis_cluster.nodes:
        redis_cluster.node_client(node.address).execute_command("ACL", "SETUSER", user, "reset", *grants)
    try:
        config = redis_cluster.config(username=user, password=password)
        message = assert_check_failed(check_cli(tmp_path, config), "CLUSTER SLOTS", "+cluster|slots")
        assert password not in message
        result = run_connector(
            ["write", "--config", "{config}", "--catalog", "{catalog}"], tmp_path, config=config,
            catalog=catalog(("users", "append")), stdin=lines(record("users", {"id": 1})),
        )
        error = assert_failed(result, "CLUSTER SLOTS", f"ACL SETUSER {user} +cluster|slots")
        assert error["failure_type"] == "config_error", error
    finally:
        for node in redis_cluster.nodes:
            redis_cluster.node_client(node.address).execute_command("ACL", "DELUSER", user)
