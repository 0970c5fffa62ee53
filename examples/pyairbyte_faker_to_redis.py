#!/usr/bin/env python3
"""PyAirbyte: load source-faker's users, products and purchases into Redis with destination-redis.

Run it with a Python that has PyAirbyte (`pip install airbyte`), for example the venvs that
`python scripts/pyairbyte_env.py` builds (it prints their paths):

    .cache/pyairbyte/pyairbyte/bin/python examples/pyairbyte_faker_to_redis.py \\
        --port 6379 --strategy append

Both connectors run as local executables: source-faker from its own venv, destination-redis as the
console script of an environment where this repository is installed (`.venv/bin/destination-redis`
after `bash scripts/test.sh`). PyAirbyte reads the source into a DuckDB cache (a fresh temporary
one per run unless --cache-dir is given) and writes what the cache holds to Redis with the chosen
strategy: append, replace, merge, or auto (merge where the stream has a primary key).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

# Both connectors are local executables, so the connector registry is not needed; offline mode also
# turns PyAirbyte's telemetry off.
os.environ.setdefault("AIRBYTE_OFFLINE_MODE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

import airbyte as ab  # after the environment it reads at import
from airbyte.shared.catalog_providers import CatalogProvider
from airbyte.strategies import WriteStrategy

REPO = Path(__file__).resolve().parents[1]


def executable(explicit: str | None, *candidates: Path | str) -> str:
    """The first of `explicit`, the candidate paths, the names on PATH that exists."""
    if explicit:
        return explicit
    for candidate in candidates:
        found = shutil.which(candidate) if isinstance(candidate, str) else candidate
        if found and Path(found).exists():
            return str(found)
    sys.exit(f"not found: {', '.join(map(str, candidates))} (pass the path as an option)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="source-faker -> destination-redis with PyAirbyte")
    parser.add_argument("--host", default=os.environ.get("REDIS_HOST", "localhost"), help="env REDIS_HOST")
    parser.add_argument("--port", type=int, default=int(os.environ.get("REDIS_PORT", "6379")),
                        help="env REDIS_PORT")
    parser.add_argument("--db", type=int, default=0)
    parser.add_argument("--strategy", choices=["append", "replace", "merge", "auto"], default="auto",
                        help="PyAirbyte's write strategy (default: auto)")
    parser.add_argument("--count", type=int, default=100, help="faker users (and products, at most 100)")
    parser.add_argument("--seed", type=int, default=42, help="faker seed: the same seed, the same records")
    parser.add_argument("--cache-dir", help="PyAirbyte's DuckDB cache (default: a temporary one per run)")
    parser.add_argument("--source-faker", help="source-faker executable")
    parser.add_argument("--destination-redis", help="destination-redis executable")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    source = ab.get_source(
        "source-faker",
        config={"count": args.count, "seed": args.seed, "parallelism": 1},
        streams="*",
        local_executable=executable(
            args.source_faker, REPO / ".cache/pyairbyte/source-faker/bin/source-faker", "source-faker"
        ),
    )
    config = {"host": args.host, "port": args.port, "db": args.db}
    if os.environ.get("REDIS_PASSWORD"):  # from the environment only: not on the command line
        config["password"] = os.environ["REDIS_PASSWORD"]
    destination = ab.get_destination(
        "destination-redis",
        config=config,
        local_executable=executable(
            args.destination_redis, REPO / ".venv/bin/destination-redis", "destination-redis"
        ),
    )
    strategy = WriteStrategy(args.strategy)
    with tempfile.TemporaryDirectory(prefix="pyairbyte-cache-") as temporary:
        cache = ab.new_local_cache("faker", cache_dir=args.cache_dir or temporary)
        result = destination.write(source, cache=cache, write_strategy=strategy)

        # What was written: per stream, the destination sync mode PyAirbyte chose for the strategy,
        # and the records it sent (everything its cache holds for the stream).
        catalog = CatalogProvider(source.get_configured_catalog())
        print(f"Wrote to Redis {args.host}:{args.port} db {args.db} with write strategy {strategy.value}:")
        for stream in catalog.stream_names:
            mode = catalog.resolve_write_method(stream, strategy).destination_sync_mode.value
            keys = f":{stream}:<primary key>" if mode == "append_dedup" else f":{stream}:<id>"
            print(f"  {stream:<10} {mode:<13} {len(cache[stream]):>5} records  keys {keys}")
        print(f"  records confirmed by the destination's states: {result.processed_records}")


if __name__ == "__main__":
    main()
