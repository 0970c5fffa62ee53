"""Why the router packs its own RESP on a cluster: redis-py's ClusterPipeline against the router.

Usage: .venv/bin/python scripts/bench_cluster_pipeline.py [--records 200000]

Starts a local Redis Cluster of 3 primaries, writes the same HSETs (the hash layout's three
fields, ~300 bytes of data) in batches of 10,000 with redis-py's ClusterPipeline, then with the
connector's Router.run_units (hiredis-packed commands, every node written before any reply is
read), and prints both rates. JSON parsing and the rest of the connector are left out: this is
the Redis side of the hot path only.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis.cluster

from destination_redis.commands import pack_command
from destination_redis.config import parse_config
from destination_redis.topology import open_router
from destination_redis.writers.encoding import F_DATA, F_EMITTED_AT, F_ID
from integration_tests.cluster_server import ClusterServer

BATCH = 10_000
EMITTED_AT = 1_700_000_000_000
DATA = (
    b'{"id":1,"name":"user-1-abcdefghij","email":"user1@example.com","score":12.5,"tags":["a","b"],'
    b'"address":{"city":"Z\xc3\xbcrich","zip":"8001","street":"Bahnhofstrasse 1"},"note":null}'
) * 2


def with_cluster_pipeline(port: int, n: int) -> float:
    client = redis.cluster.RedisCluster(host="127.0.0.1", port=port, protocol=2)
    try:
        start = time.perf_counter()
        for first in range(0, n, BATCH):
            pipe = client.pipeline(transaction=False)
            for i in range(first, min(first + BATCH, n)):
                pipe.hset(f":cp:{i}", mapping={F_ID: i, F_EMITTED_AT: EMITTED_AT, F_DATA: DATA})
            pipe.execute()
        return n / (time.perf_counter() - start)
    finally:
        client.close()


def with_router(config: dict[str, object], n: int) -> float:
    with open_router(parse_config(config)) as router:
        start = time.perf_counter()
        for first in range(0, n, BATCH):
            ids = range(first, min(first + BATCH, n))
            parts = [pack_command((b"HSET", b":r:%d" % i, F_ID, i, F_EMITTED_AT, EMITTED_AT, F_DATA, DATA))
                     for i in ids]
            def key_of(k: int, base: int = first) -> bytes:
                return b":r:%d" % (base + k)

            router.run_units(parts, 1, key_of, lambda k: (b"HSET",), want_replies=False)
        return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=200_000)
    n: int = parser.parse_args().records
    cluster = ClusterServer(replicas_per_primary=0).start()
    try:
        pipeline_rate = with_cluster_pipeline(cluster.port, n)
        cluster.cluster.flushall()
        router_rate = with_router(cluster.config(), n)
    finally:
        cluster.stop()
    print(f"redis-py ClusterPipeline: {pipeline_rate:,.0f} HSET/s")
    print(f"Router.run_units:         {router_rate:,.0f} HSET/s ({router_rate / pipeline_rate:.1f}x)")


if __name__ == "__main__":
    main()
