"""Fixtures: real redis-server processes started on free loopback ports, stopped afterwards.

Never the machine's own Redis on 6379: every server here is started by the tests.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from integration_tests.servers import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One shared server for the session; `redis_client` empties it before each test."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client()
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def fresh_server() -> Iterator[RedisServer]:
    """A private server for a test that changes server settings (maxmemory, ACLs, ...)."""
    server = RedisServer().start()
    yield server
    server.stop()
