"""A batch's INCRBY whose reply is lost with the connection is not run twice.

The server runs the INCRBY that reserves a batch's ids, then the connection drops before the
reply arrives (integration_tests/proxy.py). A blind resend would reserve a second range: a
batch's worth of ids skipped and the counter ahead of the records. The connector must find out
that its INCRBY ran and keep ids 1..N contiguous.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis

from integration_tests.cli import lines, record, run_connector, stream_state
from integration_tests.proxy import ReplyDroppingProxy
from integration_tests.servers import RedisServer

RECORDS = 25_000  # three batches of at most 10,000 records: three INCRBYs


def _catalog(mode: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "stream": {"name": "users", "json_schema": {}, "supported_sync_modes": ["incremental"]},
        "sync_mode": "incremental",
        "destination_sync_mode": mode,
    }
    if mode == "append_dedup":
        entry["primary_key"] = [["id"]]
    return {"streams": [entry]}


@pytest.mark.parametrize("mode", ["append", "append_dedup"])
def test_a_lost_incrby_reply_reserves_no_second_range(
    mode: str, redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """The 2nd batch's INCRBY runs but its reply is lost: every record still gets the id of its
    position (1..N, no gap, none twice) and the counter equals the number of records."""
    records = (record("users", {"id": n}) for n in range(1, RECORDS + 1))
    stdin = lines(*records, stream_state("users", {"c": 1}))
    with ReplyDroppingProxy(redis_server.port) as proxy:
        proxy.drop_reply_to("INCRBY", occurrence=2)
        result = run_connector(
            ["write", "--config", "{config}", "--catalog", "{catalog}"],
            tmp_path,
            config=redis_server.config(port=proxy.port),
            catalog=_catalog(mode),
            stdin=stdin,
        )
        assert proxy.dropped.is_set(), "the proxy never lost the reply: the test tested nothing"
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(result.states) == 1
    assert redis_client.get(":users") == b"%d" % RECORDS
    expected = {b":users:%d" % n for n in range(1, RECORDS + 1)}
    assert set(redis_client.scan_iter(match=":users:*", count=5000)) == expected
    pipe = redis_client.pipeline(transaction=False)
    for n in range(1, RECORDS + 1):
        pipe.hmget(f":users:{n}", "_airbyte_ab_id", "_airbyte_data")
    stored = pipe.execute()
    # Keyed by position (append: the id; dedup: the primary key): each record once, under id n.
    assert [(int(ab_id), json.loads(data)["id"]) for ab_id, data in stored] == [
        (n, n) for n in range(1, RECORDS + 1)
    ]
