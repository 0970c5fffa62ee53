"""The search tests' server (search_server.py): Redis 8.2 answers the query engine's and JSON's
commands, and FLUSHALL between tests leaves no index behind."""

from __future__ import annotations

import time

import redis

from integration_tests import matrix
from integration_tests.search_server import SEARCH
from integration_tests.servers import RedisServer


def test_search_server_has_the_query_engine_and_json(search_client: redis.Redis) -> None:
    assert search_client.info("server")["redis_version"].startswith(f"{SEARCH}.")
    modules = {entry[b"name"]: entry[b"ver"] for entry in search_client.module_list()}
    assert {b"search", b"ReJSON"} <= modules.keys(), modules
    assert search_client.execute_command("FT._LIST") == []

    assert search_client.execute_command("JSON.SET", "doc:1", "$", '{"t": "hello world", "n": 3}')
    search_client.hset("h:1", mapping={"t": "hello there", "n": "5"})
    search_client.execute_command(
        "FT.CREATE", "jidx", "ON", "JSON", "PREFIX", "1", "doc:", "SCHEMA", "$.t", "AS", "t", "TEXT"
    )
    search_client.execute_command(
        "FT.CREATE", "hidx", "ON", "HASH", "PREFIX", "1", "h:", "SCHEMA", "t", "TEXT", "n", "NUMERIC"
    )
    assert sorted(search_client.execute_command("FT._LIST")) == [b"hidx", b"jidx"]
    # Indexing existing keys runs in the background: wait for it (FT.INFO's `indexing` turns 0).
    for index in ("jidx", "hidx"):
        for _ in range(200):
            info = search_client.execute_command("FT.INFO", index)
            if dict(zip(info[::2], info[1::2], strict=True))[b"indexing"] in (0, b"0"):
                break
            time.sleep(0.01)
    assert search_client.execute_command("FT.SEARCH", "jidx", "hello", "NOCONTENT") == [1, b"doc:1"]
    assert search_client.execute_command("FT.SEARCH", "hidx", "@n:[4 6]", "NOCONTENT") == [1, b"h:1"]

    search_client.flushall()
    assert search_client.execute_command("FT._LIST") == []


def test_matrix_8_2_loads_the_modules(search_server: RedisServer) -> None:
    """The matrix's 8.2 (core tests under REDIS_MATRIX) starts with the same modules as search_server."""
    binary = matrix.find(SEARCH)
    assert list(search_server.args) == list(binary.args)
    assert [m.rsplit("/", 1)[-1] for m in binary.modules] == list(matrix.MODULES[SEARCH])
    assert binary.args == tuple(a for m in binary.modules for a in ("--loadmodule", m))
