"""Benchmark: the real `destination-redis write` end to end vs `redis-cli --pipe` on the same HSETs.

Usage: .venv/bin/python scripts/benchmark.py [--records 1000000] [--mode append|refresh|dedup] [--ttl S]
                                              [--topology standalone|cluster]

Generates N synthetic records (~300 bytes of data, ~10 fields of mixed types) into a file, starts
a throwaway redis-server on a free loopback port, pipes the file into the console script (as a
user would), then loads the same HSET commands with `redis-cli --pipe`, and prints records/s,
the connector's peak RSS and the ratio connector / redis-cli. With `--topology cluster` it then
loads the same file into a local Redis Cluster of 3 primaries (no replicas: on one machine every
node shares its cores, and a replica would double the servers' work) and prints its rate beside
standalone's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from destination_redis.commands import pack_command
from integration_tests.cluster_server import ClusterServer
from integration_tests.servers import RedisServer

STREAM = "bench"
EMITTED_AT = 1_700_000_000_000


def make_data(i: int, rng: random.Random) -> dict[str, object]:
    return {
        "id": i,
        "uuid": f"{rng.getrandbits(128):032x}",
        "name": f"user-{i}-" + "".join(rng.choice("abcdefghij") for _ in range(12)),
        "email": f"user{i}@example.com",
        "score": round(rng.random() * 1000, 4),
        "active": rng.random() > 0.5,
        "tags": ["alpha", "beta", "gamma"][: rng.randint(1, 3)],
        "address": {"city": "Zürich", "zip": f"{rng.randint(1000, 9999)}", "street": "Bahnhofstrasse 1"},
        "created_at": "2026-11-25T12:34:56.789Z",
        "note": None if i % 3 else "lorem ipsum dolor sit amet, consectetur adipiscing elit",
    }


def write_inputs(n: int, folder: Path) -> tuple[Path, Path, int]:
    """The connector's stdin (JSON lines) and redis-cli's RESP input for the same records."""
    rng = random.Random(42)
    messages = folder / "messages.jsonl"
    resp = folder / "commands.resp"
    data_bytes = 0
    with messages.open("wb") as out, resp.open("wb") as cli:
        for i in range(1, n + 1):
            data = json.dumps(make_data(i, rng), separators=(",", ":"), ensure_ascii=False).encode()
            data_bytes += len(data)
            out.write(b'{"type":"RECORD","record":{"stream":"bench","data":%s,"emitted_at":%d}}\n'
                      % (data, EMITTED_AT))
            cli.write(pack_command((
                b"HSET", b":bench:%d" % i, b"_airbyte_ab_id", b"%d" % i,
                b"_airbyte_emitted_at", b"%d" % EMITTED_AT, b"_airbyte_data", data,
            )))
            if i % 100_000 == 0:
                out.write(b'{"type":"STATE","state":{"type":"STREAM","stream":{"stream_descriptor":'
                          b'{"name":"bench"},"stream_state":{"cursor":%d}}},"id":%d}\n' % (i, i))
    return messages, resp, data_bytes // n


MODES: dict[str, dict[str, Any]] = {
    # legacy append: the seed's layout, no generation bookkeeping
    "append": {"destination_sync_mode": "append"},
    # a refresh-aware full refresh, as platform >= 1.0 sends it (generation bookkeeping on)
    "refresh": {"destination_sync_mode": "append", "generation_id": 1, "minimum_generation_id": 1,
                "sync_id": 1},
    # one key per primary key, atomic replace (MULTI/DEL/HSET/EXEC)
    "dedup": {"destination_sync_mode": "append_dedup", "primary_key": [["id"]]},
}


def run_connector(
    server: RedisServer | ClusterServer, messages: Path, folder: Path, mode: str, ttl: int | None
) -> tuple[float, float, int]:
    """Seconds, peak RSS in MB, and the number of states the connector emitted."""
    config = folder / "config.json"
    config.write_text(json.dumps(server.config(**({"ttl_seconds": ttl} if ttl else {}))))
    catalog = folder / "catalog.json"
    catalog.write_text(json.dumps({"streams": [{
        "stream": {"name": STREAM, "json_schema": {}, "supported_sync_modes": ["incremental"]},
        "sync_mode": "incremental", **MODES[mode],
    }]}))
    script = shutil.which("destination-redis", path=str(Path(sys.executable).parent)) or "destination-redis"
    out_path = folder / "stdout.jsonl"
    with messages.open("rb") as stdin, out_path.open("wb") as stdout:
        start = time.perf_counter()
        proc = subprocess.Popen([script, "write", "--config", str(config), "--catalog", str(catalog)],
                                stdin=stdin, stdout=stdout)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"connector failed ({proc.returncode}): {out_path.read_text()[-2000:]}")
    states = sum(1 for line in out_path.read_text().splitlines() if '"type":"STATE"' in line)
    return seconds, usage.ru_maxrss / 1024, states


def run_redis_cli(server: RedisServer, resp: Path) -> float:
    with resp.open("rb") as stdin:
        start = time.perf_counter()
        subprocess.run(["redis-cli", "-p", str(server.port), "--pipe"], stdin=stdin,
                       stdout=subprocess.DEVNULL, check=True)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--mode", choices=sorted(MODES), default="append")
    parser.add_argument("--ttl", type=int, default=None, help="ttl_seconds for the connector's keys")
    parser.add_argument("--topology", choices=["standalone", "cluster"], default="standalone",
                        help="cluster: also load into a local 3-primary Redis Cluster, beside standalone")
    args = parser.parse_args()
    bookkeeping = 2 if args.mode == "refresh" else 1  # the counter (and the meta hash)
    n: int = args.records
    with tempfile.TemporaryDirectory(prefix="redis-bench-") as tmp:
        folder = Path(tmp)
        print(f"generating {n:,} records ...", flush=True)
        messages, resp, avg_bytes = write_inputs(n, folder)
        server = RedisServer().start()
        try:
            seconds, rss_mb, states = run_connector(server, messages, folder, args.mode, args.ttl)
            client = server.client()
            stored = client.dbsize() - bookkeeping
            if stored != n or client.hgetall(f":bench:{n}")[b"_airbyte_ab_id"] != str(n).encode():
                raise SystemExit(f"connector stored {stored} records, expected {n}")
            client.flushall()
            cli_seconds = run_redis_cli(server, resp)
            if client.dbsize() != n:
                raise SystemExit("redis-cli --pipe did not store every record")
        finally:
            server.stop()
        cluster_result = None
        if args.topology == "cluster":
            cluster_result = run_cluster(messages, folder, args, bookkeeping)
    rate, cli_rate = n / seconds, n / cli_seconds
    print(f"mode: {args.mode}, ttl: {args.ttl}")
    print(f"records:            {n:,} (avg data {avg_bytes} bytes), states emitted: {states}")
    print(f"connector write:    {seconds:.2f} s = {rate:,.0f} records/s, peak RSS {rss_mb:.1f} MB")
    print(f"redis-cli --pipe:   {cli_seconds:.2f} s = {cli_rate:,.0f} records/s")
    print(f"ratio connector / redis-cli: {rate / cli_rate:.2f}")
    if cluster_result is not None:
        cluster_seconds, cluster_rss = cluster_result
        cluster_rate = n / cluster_seconds
        print(f"cluster write:      {cluster_seconds:.2f} s = {cluster_rate:,.0f} records/s, "
              f"peak RSS {cluster_rss:.1f} MB (3 primaries on this machine)")
        print(f"ratio cluster / standalone: {cluster_rate / rate:.2f} (target >= 0.8)")


def run_cluster(
    messages: Path, folder: Path, args: argparse.Namespace, bookkeeping: int
) -> tuple[float, float]:
    """The same records through the connector into a local cluster; (seconds, peak RSS MB)."""
    cluster = ClusterServer(replicas_per_primary=0).start()
    try:
        seconds, rss_mb, _ = run_connector(cluster, messages, folder, args.mode, args.ttl)
        client = cluster.client()
        stored = int(client.dbsize()) - bookkeeping
        client.close()
        if stored != args.records:
            raise SystemExit(f"connector stored {stored} records in the cluster, expected {args.records}")
    finally:
        cluster.stop()
    return seconds, rss_mb


if __name__ == "__main__":
    main()
