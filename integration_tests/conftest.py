"""Fixtures: real redis-server processes started on free loopback ports, stopped afterwards.

Never the machine's own Redis on 6379: every server here is started by the tests.

The server matrix (`integration_tests/matrix.py`): with REDIS_MATRIX set ("all", or a
comma list such as "2.8,7.0"), every test marked `core` runs once per requested server, with ids
like `[redis-2.8]`; `redis_server` and `fresh_server` then start that version (8.2 with its modules
loaded: the query engine and JSON). A requested server that is missing is an error, never a skip.
Tests not marked `core`, and every test without REDIS_MATRIX, use the default server (Debian's
redis-server 7.0, or REDIS_SERVER_BIN). `search_server` (search_server.py) is 8.2 with its modules.
`@pytest.mark.min_redis("6.0")` skips a test, with the reason, on servers older than that.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from integration_tests import matrix
from integration_tests.cluster_server import ClusterServer
from integration_tests.servers import REDIS_SERVER, RedisServer
from integration_tests.tls_certs import TlsMaterial, make_tls_material

_MATRIX: list[matrix.ServerBinary] = []


def pytest_configure(config: pytest.Config) -> None:
    value = os.environ.get("REDIS_MATRIX", "").strip()
    if not value:
        return
    try:
        _MATRIX[:] = matrix.requested(value)
    except matrix.MatrixError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_report_header(config: pytest.Config) -> list[str]:
    if not _MATRIX:
        return [f"redis server: {REDIS_SERVER} (REDIS_MATRIX not set)"]
    return [f"REDIS_MATRIX: core tests run on {s.id}: {s.banner} ({s.path}{_loaded(s)})" for s in _MATRIX]


def _loaded(binary: matrix.ServerBinary) -> str:
    return "".join(f" --loadmodule {module}" for module in binary.modules)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize the core tests over the matrix, per session: each server starts once."""
    if not _MATRIX or "redis_binary" not in metafunc.fixturenames:
        return
    if metafunc.definition.get_closest_marker("core") is None:
        return
    servers = _MATRIX
    # A cluster is made by the harness, with its own settings: tests that set up a server of their
    # own (fresh_server) or are about a standalone server's answers run on the others only.
    if "fresh_server" in metafunc.fixturenames or metafunc.definition.get_closest_marker("standalone_only"):
        servers = [s for s in _MATRIX if s.topology != matrix.CLUSTER]
    metafunc.parametrize(
        "redis_binary", servers, ids=[s.id for s in servers], indirect=True, scope="session"
    )


@pytest.fixture(scope="session")
def redis_binary(request: pytest.FixtureRequest) -> matrix.ServerBinary:
    """The server binary of this test: a matrix server (core tests under REDIS_MATRIX) or the default."""
    param = getattr(request, "param", None)
    if isinstance(param, matrix.ServerBinary):
        return param
    return matrix.read_binary(REDIS_SERVER)


@pytest.fixture(scope="session")
def redis_server(redis_binary: matrix.ServerBinary) -> Iterator[RedisServer]:
    """One shared server for the session (per matrix version); `redis_client` empties it before each test.

    On the matrix entry "cluster", a Redis Cluster in RedisServer's shape (cluster_server.py).
    """
    server: Any = RedisServer(binary=redis_binary.path, args=redis_binary.args)
    if redis_binary.topology == matrix.CLUSTER:
        server = ClusterServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    with redis_server.flushed_client() as client:
        yield client


@pytest.fixture
def fresh_server(redis_binary: matrix.ServerBinary) -> Iterator[RedisServer]:
    """A private server for a test that changes server settings (maxmemory, ACLs, ...)."""
    server = RedisServer(binary=redis_binary.path, args=redis_binary.args).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tls() -> Iterator[TlsMaterial]:
    """A CA and the certificates made from it (tls_certs.py), shared by the TLS, SSH and secrets tests."""
    material = make_tls_material()
    yield material
    shutil.rmtree(material.directory, ignore_errors=True)


@pytest.fixture(autouse=True)
def _min_redis(request: pytest.FixtureRequest) -> None:
    """`@pytest.mark.min_redis("6.0")`: skip, saying why, where the server is older than that."""
    marker = request.node.get_closest_marker("min_redis")
    if marker is None:
        return
    (minimum,) = marker.args
    binary: matrix.ServerBinary = request.getfixturevalue("redis_binary")
    if binary.redis_version < matrix.parse_min_version(minimum):
        reason = marker.kwargs.get("reason", "")
        pytest.skip(
            f"needs Redis {minimum} or later; {binary.id} is {binary.product} {binary.version_text}"
            + (f": {reason}" if reason else "")
        )


# Redis 8.2 with the query engine and JSON (search_server.py), for the tests of search indexes.
from integration_tests.search_server import search_client, search_server  # noqa: E402, F401

# The topology harness's session fixtures: Redis Cluster, Sentinel, private network.
from integration_tests.topology_fixtures import (  # noqa: E402, F401
    cluster_client,
    private_bastion,
    private_cluster,
    private_netns,
    private_sentinel_group,
    redis_cluster,
    redis_cluster_tls,
    sentinel_group,
)
