"""Faults while several batches are in flight on one connection (inflight.py, topology/wires.py).

The connector sends batch n+1 before it reads batch n's replies. A connection lost under them
loses every unread batch; each is resent, in order, so nothing is lost or duplicated and a later
record for the same key still wins. A final error in one batch fails the sync with no state
after it, while the batches behind it are dropped unread.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis

from integration_tests.cli import Result, lines, record, run_connector, stream_state
from integration_tests.proxy import ReplyDroppingProxy
from integration_tests.servers import RedisServer

RECORDS = 35_000  # four batches of at most 10,000 records
KEYS = 1_000  # append_dedup: every key in every batch
WRITE = ["write", "--config", "{config}", "--catalog", "{catalog}"]


def _catalog(mode: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "stream": {"name": "users", "json_schema": {}, "supported_sync_modes": ["incremental"]},
        "sync_mode": "incremental",
        "destination_sync_mode": mode,
    }
    if mode == "append_dedup":
        entry["primary_key"] = [["id"]]
    return {"streams": [entry]}


def _write_through_lossy_proxy(server: RedisServer, mode: str, tmp_path: Path) -> tuple[Result, str]:
    """Every record, then one state; the connection under the batches is lost right after the
    server ran the 15,000th HSET (in the second batch), its replies unread."""
    records = (record("users", {"id": n % KEYS if mode == "append_dedup" else n, "n": n})
               for n in range(1, RECORDS + 1))
    state = stream_state("users", {"c": RECORDS}, id=1)
    with ReplyDroppingProxy(server.port) as proxy:
        proxy.drop_reply_to("HSET", occurrence=15_000)
        result = run_connector(WRITE, tmp_path, config=server.config(port=proxy.port),
                               catalog=_catalog(mode), stdin=lines(*records, state))
        assert proxy.dropped.is_set(), "the proxy never lost a reply: the test tested nothing"
    return result, state


def _lost_batches(result: Result) -> int:
    """How many batches were read as lost: each logs its resend."""
    return sum(
        1 for message in result.of_type("LOG")
        if "Lost the connection" in message["log"]["message"] and "resending" in message["log"]["message"]
    )


def test_a_connection_lost_under_batches_in_flight_loses_and_duplicates_nothing(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    result, state = _write_through_lossy_proxy(redis_server, "append", tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert _lost_batches(result) >= 2, "only one batch was in flight when the connection was lost"
    (emitted,) = result.states
    assert emitted["state"]["stream"] == json.loads(state)["state"]["stream"]
    assert emitted["state"]["destinationStats"]["recordCount"] == RECORDS
    assert redis_client.get(":users") == b"%d" % RECORDS
    expected = {b":users:%d" % n for n in range(1, RECORDS + 1)}
    assert set(redis_client.scan_iter(match=":users:*", count=5000)) == expected
    pipe = redis_client.pipeline(transaction=False)
    for n in range(1, RECORDS + 1):
        pipe.hmget(f":users:{n}", "_airbyte_ab_id", "_airbyte_data")
    assert [(int(ab_id), json.loads(data)["n"]) for ab_id, data in pipe.execute()] == [
        (n, n) for n in range(1, RECORDS + 1)
    ]


def test_after_a_connection_lost_under_batches_in_flight_the_newest_record_of_a_key_wins(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """append_dedup: every key is written in every batch. The batches read as lost are resent
    in order, so each key ends with its last record (and that record's id), not an older one."""
    result, _ = _write_through_lossy_proxy(redis_server, "append_dedup", tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert _lost_batches(result) >= 2, "only one batch was in flight when the connection was lost"
    assert redis_client.get(":users") == b"%d" % RECORDS
    keys = set(redis_client.scan_iter(match=":users:*", count=5000))
    assert keys == {b":users:%d" % k for k in range(KEYS)}
    pipe = redis_client.pipeline(transaction=False)
    for k in range(KEYS):
        pipe.hmget(f":users:{k}", "_airbyte_ab_id", "_airbyte_data")
    last = {n % KEYS: n for n in range(1, RECORDS + 1)}
    assert [(int(ab_id), json.loads(data)["n"]) for ab_id, data in pipe.execute()] == [
        (last[k], last[k]) for k in range(KEYS)
    ]


@pytest.mark.parametrize("mode", ["append", "append_dedup"])
def test_a_final_error_under_batches_in_flight_fails_the_sync_with_no_state_after_it(
    mode: str, fresh_server: RedisServer, tmp_path: Path
) -> None:
    """The server runs out of memory in the second of four batches sent back to back: the sync
    fails naming maxmemory, the state before them is the last one emitted, and the connector
    does not wait on the batches behind the failed one."""
    client = fresh_server.client()
    client.config_set("maxmemory-policy", "noeviction")
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", str(used + 8 * 1024 * 1024))
    first = stream_state("users", {"c": 5}, id=1)
    big = "x" * 1_000
    messages = [record("users", {"id": n, "n": n}) for n in range(1, 6)] + [first]
    messages += [record("users", {"id": n, "n": n, "big": big}) for n in range(6, RECORDS + 6)]  # ~35 MB
    messages.append(stream_state("users", {"c": RECORDS + 5}, id=2))
    result = run_connector(WRITE, tmp_path, config=fresh_server.config(), catalog=_catalog(mode),
                           stdin=lines(*messages))
    assert result.returncode == 1
    (error,) = result.errors
    assert "maxmemory" in error["message"]
    assert error["failure_type"] == "config_error"
    assert [s["state"]["stream"]["stream_state"] for s in result.states] == [{"c": 5}]
    client.close()
