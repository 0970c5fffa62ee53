"""A self-contained demo: a throwaway redis-server, the bundled sample, the real `write` command.

    python -m destination_redis.demo        (or the console script `destination-redis-demo`)

Starts `redis-server` on a free loopback port (never the machine's own Redis on 6379) with its
data in a temporary folder, pipes `sample/messages.jsonl` into `destination-redis write` exactly
as a user or the platform would (a subprocess reading stdin), prints the states the connector
emitted, the keys per stream and one stored record, then stops the server and removes the folder,
also when something fails or the user presses Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from io import TextIOWrapper
from pathlib import Path
from types import FrameType
from typing import Any

import redis

from destination_redis import keys

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"
CATALOG = SAMPLE_DIR / "catalog.json"
MESSAGES = SAMPLE_DIR / "messages.jsonl"
HOST = "127.0.0.1"
RESERVED_PORT = 6379  # the machine's own Redis, if any: never used by the demo
START_TIMEOUT_S = 10.0
WRITE_TIMEOUT_S = 120.0
SHOWN_RECORD_ID = 3


class DemoError(Exception):
    """A failure the demo explains in one message, without a traceback."""


@dataclass(frozen=True)
class SampleStream:
    name: str
    namespace: str
    mode: str

    @property
    def label(self) -> str:
        return f"{self.namespace}.{self.name}" if self.namespace else self.name

    @property
    def key(self) -> bytes:
        return keys.stream_key(self.namespace, self.name)


def free_port() -> int:
    """A free TCP port on the loopback interface, never 6379."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        if port != RESERVED_PORT:
            return port


@contextmanager
def throwaway_redis(binary: str, workdir: Path) -> Iterator[redis.Redis]:
    """A private redis-server on a free loopback port, stopped on exit whatever happens."""
    port = free_port()
    log = workdir / "redis.log"
    command = [
        binary,
        "--port", str(port),
        "--bind", HOST,
        "--dir", str(workdir),
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
        "--logfile", str(log),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(host=HOST, port=port, protocol=2, socket_timeout=10)
    try:
        _wait_until_ready(process, client, log)
        yield client
    finally:
        client.close()
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_ready(process: subprocess.Popen[bytes], client: redis.Redis, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            if client.ping():
                return
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else "(no log)"
            raise DemoError(f"redis-server did not start; its log ends with:\n{tail}")
        time.sleep(0.02)


def connector_command() -> list[str]:
    """The `destination-redis` console script of this installation, as a user would run it."""
    beside_python = shutil.which("destination-redis", path=str(Path(sys.executable).parent))
    if beside_python:
        return [beside_python]
    on_path = shutil.which("destination-redis")
    if on_path:
        return [on_path]
    return [sys.executable, "-m", "destination_redis.run"]  # not installed as a script: same code


def load_streams(catalog_path: Path) -> list[SampleStream]:
    catalog = json.loads(catalog_path.read_text(encoding="utf-8"))
    return [
        SampleStream(
            name=entry["stream"]["name"],
            namespace=entry["stream"].get("namespace") or "",
            mode=entry.get("destination_sync_mode", "append"),
        )
        for entry in catalog["streams"]
    ]


def run_write(
    config_path: Path, catalog_path: Path, messages_path: Path
) -> tuple[int, list[dict[str, Any]], str]:
    """`destination-redis write` with the messages on stdin; (exit code, output messages, stderr)."""
    command = [*connector_command(), "write", "--config", str(config_path), "--catalog", str(catalog_path)]
    print(f"$ destination-redis write --config {config_path.name} --catalog {catalog_path.name} "
          f"< {messages_path.name}")
    with messages_path.open("rb") as stdin:
        proc = subprocess.run(command, stdin=stdin, capture_output=True, timeout=WRITE_TIMEOUT_S, check=False)
    messages: list[dict[str, Any]] = []
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        if not line.strip():
            continue
        try:
            messages.append(json.loads(line))
        except json.JSONDecodeError:
            messages.append({"type": "TEXT", "text": line})
    return proc.returncode, messages, proc.stderr.decode("utf-8", "replace")


def print_output(messages: Sequence[dict[str, Any]]) -> None:
    logs = [m["log"]["message"] for m in messages if m.get("type") == "LOG"]
    if logs:
        print("\nConnector log:")
        for text in logs:
            print(f"  {text}")
    states = [m["state"] for m in messages if m.get("type") == "STATE"]
    print(f"\nStates emitted by the connector ({len(states)}), each after its records were acknowledged:")
    for state in states:
        descriptor = state.get("stream", {}).get("stream_descriptor", {})
        name = descriptor.get("name", "?")
        stream = f"{descriptor['namespace']}.{name}" if descriptor.get("namespace") else name
        stream_state = json.dumps(state.get("stream", {}).get("stream_state"), ensure_ascii=False)
        count = state.get("destinationStats", {}).get("recordCount")
        shown = "?" if count is None else f"{count:g}"
        print(f"  id={state.get('id')!s:<3} {stream:<12} state={stream_state:<38} recordCount={shown}")
    if states:
        first = next(m for m in messages if m.get("type") == "STATE")
        print(f"  the first one as emitted on stdout (its `id` kept, destinationStats added):\n"
              f"  {json.dumps(first, ensure_ascii=False, separators=(',', ':'))}")
    for message in messages:
        if message.get("type") == "TRACE" and message["trace"].get("type") == "ERROR":
            error = message["trace"]["error"]
            print(f"\nConnector error ({error.get('failure_type')}): {error.get('message')}")
        elif message.get("type") == "TEXT":
            print(f"  (not a protocol message) {message['text']}")


def count_records(client: redis.Redis, stream_key: bytes) -> int:
    """Record hashes `K:<id>` of one stream, found with SCAN like the connector (never KEYS)."""
    pattern = keys.record_scan_pattern(stream_key)
    found = client.scan_iter(match=pattern, count=1000)
    return sum(1 for key in found if keys.is_record_key(stream_key, _as_bytes(key)))


def print_keys(client: redis.Redis, streams: Sequence[SampleStream]) -> None:
    print("\nKeys per stream:")
    print(f"  {'stream':<12} {'mode':<10} {'counter key':<14} {'counter':>7} {'record hashes':>14}")
    for stream in streams:
        counter = client.get(stream.key)
        counter_text = _as_bytes(counter).decode() if counter is not None else "-"
        records = count_records(client, stream.key)
        key = stream.key.decode()
        print(f"  {stream.label:<12} {stream.mode:<10} {key:<14} {counter_text:>7} {records:>14}")
    print(f"  total keys in the database: {client.dbsize()}")


def print_record(client: redis.Redis, stream: SampleStream) -> None:
    key = keys.record_key(stream.key, SHOWN_RECORD_ID)
    stored = client.hgetall(key)
    fields = {_as_bytes(k).decode(): _as_bytes(v).decode("utf-8", "replace") for k, v in stored.items()}
    print(f"\nOne stored record: HGETALL {key.decode()}")
    if not fields:
        print("  (missing)")
        return
    for name, text in sorted(fields.items()):
        if name == "_airbyte_emitted_at" and text.isdigit():
            when = datetime.fromtimestamp(int(text) / 1000, tz=UTC).isoformat(timespec="seconds")
            text = f"{text}  ({when})"
        print(f"  {name:<20} {text}")


def _as_bytes(value: bytes | str) -> bytes:
    """redis-py types replies as bytes | str; this client (decode_responses off) returns bytes."""
    return value if isinstance(value, bytes) else value.encode()


def _raise_on_terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the `finally` blocks: server stopped, dir removed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="destination-redis-demo",
        description="Write the bundled sample into a throwaway local redis-server and show the result.",
    )
    parser.add_argument(
        "--redis-server", default=shutil.which("redis-server"),
        help="path of the redis-server binary (default: the one on PATH)",
    )
    args = parser.parse_args(argv)
    if isinstance(sys.stdout, TextIOWrapper):
        sys.stdout.reconfigure(errors="replace")  # a non-UTF-8 terminal shows '?' rather than failing
    if not args.redis_server:
        print(
            "destination-redis-demo: no redis-server binary found on PATH. Install Redis "
            "(Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) or pass "
            "--redis-server PATH.",
            file=sys.stderr,
        )
        return 2
    signal.signal(signal.SIGTERM, _raise_on_terminate)
    workdir = Path(tempfile.mkdtemp(prefix="destination-redis-demo-"))
    try:
        return _demo(args.redis_server, workdir)
    except DemoError as exc:
        print(f"destination-redis-demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"Removed {workdir}.")


def _demo(binary: str, workdir: Path) -> int:
    streams = load_streams(CATALOG)
    with throwaway_redis(binary, workdir) as client:
        port = client.connection_pool.connection_kwargs["port"]
        version = client.info("server").get("redis_version", "?")
        print(f"Started a throwaway redis-server {version} on {HOST}:{port} (data in {workdir}).")
        config_path = workdir / "config.json"
        config_path.write_text(json.dumps({"host": HOST, "port": port}))
        catalog_path = workdir / "catalog.json"
        shutil.copyfile(CATALOG, catalog_path)
        records = sum(1 for line in MESSAGES.read_bytes().splitlines() if b'"type":"RECORD"' in line)
        print(f"Writing the sample: {records} records of {len(streams)} streams "
              f"({', '.join(f'{s.label} {s.mode}' for s in streams)}), with states and a LOG line.")
        code, messages, stderr = run_write(config_path, catalog_path, MESSAGES)
        print_output(messages)
        if code != 0:
            if stderr.strip():
                print(f"\nstderr of the connector:\n{stderr.strip()}")
            print(f"\nThe connector exited with status {code}.")
            return 1
        print_keys(client, streams)
        print_record(client, streams[0])
        print(f"\nStopping redis-server on {HOST}:{port}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
