"""Search indexes (`search_index`, destination_redis/search/) against real servers.

The server with the query engine is search_server.py's Redis 8.2 with RediSearch 2.10 and
RedisJSON 2.8, shared by the session: `search_client` empties it (FLUSHALL drops the indexes too)
before each test, and each test names its streams apart. Most tests run for both cache types that
can be indexed, hash_fields and json. The syncs run in this process (`run_here`, or `observe`,
which looks at the server at the moment each state is released); the command line (`run_write`)
where a sync must be a process of its own, beside queries running in a thread (`QueryLoop`).

Covered: the index's attributes from the catalog's schema and queries of each kind (TAG, TEXT,
NUMERIC, SORTBY, KNN, json's arrays and nested objects); only the stream's own records in its
index; dedup and CDC deletes; a refresh and schema changes with queries running beside them;
reuse; vectors refused per line; the refusals of check and write; check's message and the LOG
line; states waiting for the index to be built (and the timeout).
"""

from __future__ import annotations

import json
import logging
import re
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from destination_redis.errors import ConnectorError
from integration_tests.cli import Result, stream_state
from integration_tests.cluster import RedisCluster
from integration_tests.connector_runs import check_here
from integration_tests.servers import RedisServer
from integration_tests.test_key_templates import (
    EMITTED,
    Run,
    check_status,
    raw_record,
    refused_here,
    run_config,
    run_here,
    sync,
    sync_here,
)
from integration_tests.test_sync_modes import configured, status

TYPES = ["hash_fields", "json"]
FT_COMMANDS = (
    "FT.CREATE", "FT.ALTER", "FT.INFO", "FT.ALIASADD", "FT.ALIASUPDATE", "FT.ALIASDEL", "FT.DROPINDEX",
    "FT.SEARCH", "FT._LIST",
)

S = {"type": "string"}
I = {"type": "integer"}  # noqa: E741
N = {"type": "number"}
B = {"type": "boolean"}


def nullable(kind: str) -> dict[str, Any]:
    return {"type": ["null", kind]}


def entry(
    name: str, mode: str, properties: dict[str, Any], primary_key: list[list[str]] | None = None,
    generation: int | None = None,
) -> dict[str, Any]:
    """A catalog entry (test_sync_modes.configured) whose schema lists `properties`."""
    stream = configured(name, mode, primary_key, generation=generation, minimum=generation)
    stream["stream"]["json_schema"] = {"type": "object", "properties": properties}
    return stream


def rec(stream: str, data: dict[str, Any], n: int = 0) -> str:
    """A RECORD of `data`, emitted_at EMITTED + n."""
    return raw_record(stream, json.dumps(data, ensure_ascii=False), n)


def state(stream: str, n: int) -> str:
    return stream_state(stream, {"c": n})


# --- reading the server --------------------------------------------------------------------------


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def ft_info(client: redis.Redis, name: str) -> dict[str, Any]:
    reply = client.execute_command("FT.INFO", name)
    return {text(reply[i]): reply[i + 1] for i in range(0, len(reply) - 1, 2)}


def attributes(client: redis.Redis, name: str) -> dict[str, tuple[Any, ...]]:
    """attribute -> (identifier, type, "SORTABLE" or ""), a VECTOR's settings after them."""
    found: dict[str, tuple[Any, ...]] = {}
    for words in ft_info(client, name)["attributes"]:
        head = {text(words[i]): text(words[i + 1]) for i in range(0, 6, 2)}
        rest = [text(w) for w in words[6:]]
        shape: tuple[Any, ...] = (head["identifier"], head["type"], "SORTABLE" if "SORTABLE" in rest else "")
        if head["type"] == "VECTOR":
            pairs = dict(zip(rest[::2], rest[1::2], strict=False))
            shape += tuple(pairs[k] for k in ("algorithm", "data_type", "dim", "distance_metric"))
        found[head["attribute"]] = shape
    return found


def search(client: redis.Redis, name: str, query: str, *args: Any) -> list[str]:
    """The keys FT.SEARCH finds (up to 10,000), in the order it answers."""
    reply = client.execute_command("FT.SEARCH", name, query, "NOCONTENT", *args, "LIMIT", 0, 10_000)
    keys = [text(key) for key in reply[1:]]
    assert reply[0] == len(keys), reply
    return keys


def found(client: redis.Redis, name: str, query: str, *args: Any) -> set[str]:
    return set(search(client, name, query, *args))


def total(client: redis.Redis, name: str, query: str = "*") -> int:
    return int(client.execute_command("FT.SEARCH", name, query, "LIMIT", 0, 0)[0])


def physical_of(client: redis.Redis, name: str) -> list[str]:
    """The physical indexes of the alias `name` (`<name>:<digest>`) in FT._LIST."""
    listed = [text(index) for index in client.execute_command("FT._LIST")]
    return sorted(index for index in listed if re.fullmatch(re.escape(name) + r":[0-9a-f]{12}", index))


def target(client: redis.Redis, name: str) -> str:
    """The physical index the alias resolves to."""
    return text(ft_info(client, name)["index_name"])


def indexing(client: redis.Redis, name: str) -> tuple[int, int]:
    """(FT.INFO's `indexing`, num_docs)."""
    info = ft_info(client, name)
    return int(info["indexing"]), int(info["num_docs"])


def knn(
    client: redis.Redis, name: str, vector: list[float], k: int, where: str = "*"
) -> list[tuple[str, float]]:
    """The k nearest records to `vector` (FLOAT32 LE, as the query engine takes it) and their distances."""
    blob = struct.pack(f"<{len(vector)}f", *vector)
    reply = client.execute_command(
        "FT.SEARCH", name, f"{where}=>[KNN {k} @emb $v AS dist]", "PARAMS", 2, "v", blob,
        "SORTBY", "dist", "RETURN", 1, "dist", "DIALECT", 2,
    )
    pairs = zip(reply[1::2], reply[2::2], strict=True)
    return [(text(key), float(dict(zip(values[::2], values[1::2], strict=True))[b"dist"]))
            for key, values in pairs]


def observe(
    config: dict[str, Any], catalog: list[dict[str, Any]], messages: Iterable[str],
    at_state: Callable[[dict[str, Any]], None],
) -> Run:
    """run_here, calling `at_state` with each state the moment the connector releases it (the
    connector waits meanwhile): what the server holds when the platform receives the state."""
    return run_config(config, catalog, messages, at_state)


class QueryLoop:
    """FT.SEARCH by the index name every few ms, in a thread, for as long as the `with` lasts:
    each query's totals in order, and every error reply."""

    def __init__(self, server: RedisServer, name: str, *queries: str) -> None:
        self.server, self.name, self.queries = server, name, queries
        self.totals: dict[str, list[int]] = {query: [] for query in queries}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> QueryLoop:
        self._thread.start()
        deadline = time.monotonic() + 5
        while not self.totals[self.queries[-1]] and not self.errors and time.monotonic() < deadline:
            time.sleep(0.005)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    @property
    def rounds(self) -> int:
        return len(self.totals[self.queries[-1]])

    def _run(self) -> None:
        client = self.server.client()
        try:
            while not self._stop.is_set():
                for query in self.queries:
                    try:
                        reply = client.execute_command("FT.SEARCH", self.name, query, "LIMIT", 0, 0)
                        self.totals[query].append(int(reply[0]))
                    except redis.RedisError as exc:
                        self.errors.append(f"{query}: {exc}")
                time.sleep(0.002)
        finally:
            client.close()


def logs_of(result: Result) -> list[str]:
    return [str(m["log"]["message"]) for m in result.of_type("LOG")]


# --- 1. the index's attributes, and queries of every kind ----------------------------------------

ITEMS = {
    "id": I,
    "name": S,
    "category": S,
    "price": N,
    "stock": nullable("integer"),
    "active": B,
    "note": nullable("string"),
    "emb": {"type": "array", "items": N},
    "tags": {"type": "array", "items": S},
    "maker": {"type": "object", "properties": {
        "country": S, "founded": I, "address": {"type": "object", "properties": {"city": S}},
    }},
    "anything": {},  # no type: not indexed
}
ITEM_RECORDS: list[dict[str, Any]] = [
    {"id": 1, "name": "red apple pie", "category": "fruit", "price": 3.5, "stock": 10, "active": True,
     "note": "best", "emb": [1, 0, 0, 0], "tags": ["sweet", "baked"],
     "maker": {"country": "ch", "founded": 1900, "address": {"city": "Bern"}}, "anything": 1},
    {"id": 2, "name": "green apple", "category": "fruit", "price": 1.25, "stock": None, "active": False,
     "emb": [0.9, 0.1, 0, 0], "tags": ["sour"],
     "maker": {"country": "de", "founded": 1950, "address": {"city": "Berlin"}}},
    {"id": 3, "name": "banana bread", "category": "bakery", "price": 4, "stock": 0, "active": True,
     "emb": [0, 1, 0, 0], "tags": ["sweet"],
     "maker": {"country": "ch", "founded": 2001, "address": {"city": "Basel"}}},
    {"id": 4, "name": "carrot cake", "category": "bakery", "price": 5.75, "stock": 3, "active": False,
     "emb": [0, 0, 1, 0], "tags": [], "maker": {"country": "fr", "founded": 1999}},
    {"id": 5, "name": "apple juice", "category": "drinks", "price": 2, "stock": 7, "active": True,
     "emb": [0.7, 0.7, 0, 0], "tags": ["sweet", "cold"], "maker": {"country": "it"}},
]
# emitted_at apart from the ids' order, so SORTBY _airbyte_emitted_at shows it sorts.
ITEM_EMITTED = {1: 30, 2: 10, 3: 50, 4: 20, 5: 40}


def item_keys(stream: str, *ids: int) -> set[str]:
    return {f":{stream}:{i}" for i in ids}


@pytest.mark.parametrize("cache_type", TYPES)
def test_attributes_follow_the_schema_and_queries_find_exactly_the_records(
    cache_type: str, search_server: RedisServer, search_client: redis.Redis
) -> None:
    stream = f"items_{cache_type}"
    index = {
        "text_fields": ["name"],
        "vector_fields": [{"field": "emb", "dims": 4, "distance_metric": "COSINE", "algorithm": "HNSW"}],
    }
    run = sync_here(
        search_server, [entry(stream, "append", ITEMS)],
        *(rec(stream, data, ITEM_EMITTED[data["id"]]) for data in ITEM_RECORDS), state(stream, 1),
        cache_type=cache_type, search_index=index,
    )
    name = f"idx::{stream}"
    on_json = cache_type == "json"

    def src(path: str) -> str:
        return f"$.{path}" if on_json else path

    expected: dict[str, tuple[Any, ...]] = {
        "id": (src("id"), "NUMERIC", "SORTABLE"),
        "name": (src("name"), "TEXT", ""),
        "category": (src("category"), "TAG", ""),
        "price": (src("price"), "NUMERIC", "SORTABLE"),
        "stock": (src("stock"), "NUMERIC", "SORTABLE"),
        "active": (src("active"), "TAG", ""),
        "note": (src("note"), "TAG", ""),
        "emb": (src("emb"), "VECTOR", "", "HNSW", "FLOAT32", "4", "COSINE"),
        "_airbyte_ab_id": (src("_airbyte_ab_id"), "NUMERIC", "SORTABLE"),
        "_airbyte_emitted_at": (src("_airbyte_emitted_at"), "NUMERIC", "SORTABLE"),
    }
    if on_json:  # arrays of strings and nested objects' scalars: json only
        expected |= {
            "tags": ("$.tags[*]", "TAG", ""),
            "maker_country": ("$.maker.country", "TAG", ""),
            "maker_founded": ("$.maker.founded", "NUMERIC", "SORTABLE"),
            "maker_address_city": ("$.maker.address.city", "TAG", ""),
        }
    assert attributes(search_client, name) == expected
    info = ft_info(search_client, name)
    definition = dict(zip(info["index_definition"][::2], info["index_definition"][1::2], strict=True))
    assert definition[b"key_type"] == (b"JSON" if on_json else b"HASH")
    assert definition[b"prefixes"] == [f":{stream}:".encode()]
    assert definition[b"filter"] == b"exists(@_airbyte_ab_id)"
    assert physical_of(search_client, name) == [target(search_client, name)]
    assert indexing(search_client, name) == (0, 5)
    assert f"Stream '{stream}': search index '{name}' holds 5 documents, fully indexed." in run.logs

    # The vector as the query engine reads it: FLOAT32 LE in a hash field; json keeps the array.
    if on_json:
        emb = search_client.execute_command("JSON.GET", f":{stream}:2", "$.emb")
        assert json.loads(emb) == [[0.9, 0.1, 0, 0]]
    else:
        assert search_client.hget(f":{stream}:2", "emb") == struct.pack("<4f", 0.9, 0.1, 0, 0)

    def q(query: str, *args: Any) -> set[str]:
        return found(search_client, name, query, *args)

    def keys(*ids: int) -> set[str]:
        return item_keys(stream, *ids)

    # TAG: strings, booleans, a nullable string
    assert q("@category:{fruit}") == keys(1, 2)
    assert q("@category:{bakery | drinks}") == keys(3, 4, 5)
    assert q("@active:{true}") == keys(1, 3, 5)
    assert q("@active:{false}") == keys(2, 4)
    assert q("@note:{best}") == keys(1)
    # TEXT: a word anywhere in the text
    assert q("@name:apple") == keys(1, 2, 5)
    assert q("@name:bread") == keys(3)
    assert q("@name:(apple pie)") == keys(1)
    assert q("@name:cake @category:{bakery}") == keys(4)
    # NUMERIC ranges: a number, an integer, a nullable integer (null: not indexed), our own fields
    assert q("@price:[2 4]") == keys(1, 3, 5)
    assert q("@price:[(2 4]") == keys(1, 3)
    assert q("@price:[(1.25 3.5]") == keys(1, 5)
    assert q("@price:[-inf 1.25]") == keys(2)
    assert q("@id:[4 +inf]") == keys(4, 5)
    assert q("@stock:[0 3]") == keys(3, 4)
    assert q("@stock:[-inf +inf]") == keys(1, 3, 4, 5)
    assert q(f"@_airbyte_emitted_at:[{EMITTED + 20} {EMITTED + 40}]") == keys(1, 4, 5)
    assert q("@_airbyte_ab_id:[2 3]") == keys(2, 3)
    # SORTBY our emitted_at
    order = [f":{stream}:{i}" for i in sorted(ITEM_EMITTED, key=ITEM_EMITTED.__getitem__)]
    assert search(search_client, name, "*", "SORTBY", "_airbyte_emitted_at", "ASC") == order
    assert search(search_client, name, "*", "SORTBY", "_airbyte_emitted_at", "DESC") == order[::-1]
    assert search(search_client, name, "@category:{fruit}", "SORTBY", "price", "DESC") == [
        f":{stream}:1", f":{stream}:2"
    ]
    # KNN, nearest first (COSINE distance: 1 - cos)
    nearest = knn(search_client, name, [1, 0, 0, 0], 3)
    assert [key for key, _ in nearest] == [f":{stream}:1", f":{stream}:2", f":{stream}:5"]
    cos_2 = 0.9 / (0.9**2 + 0.1**2) ** 0.5
    assert [dist for _, dist in nearest] == pytest.approx([0.0, 1 - cos_2, 1 - 0.5**0.5], abs=1e-5)
    assert [key for key, _ in knn(search_client, name, [0, 1, 0, 0], 1, "(@category:{fruit})")] == [
        f":{stream}:2"
    ]
    assert [key for key, _ in knn(search_client, name, [0, 0.2, 1, 0], 3)] == [
        f":{stream}:4", f":{stream}:3", f":{stream}:5"
    ]
    if on_json:  # an array of strings: any member; nested objects' scalars, at any depth
        assert q("@tags:{sweet}") == keys(1, 3, 5)
        assert q("@tags:{sour | cold}") == keys(2, 5)
        assert q("@maker_country:{ch}") == keys(1, 3)
        assert q("@maker_founded:[1940 2001]") == keys(2, 3, 4)
        assert q("@maker_address_city:{Basel | Bern}") == keys(1, 3)
        assert q("@maker_country:{ch} @tags:{baked}") == keys(1)


@pytest.mark.parametrize("cache_type", TYPES)
def test_tag_query_matches_a_whole_string_value_with_a_comma(
    cache_type: str, search_server: RedisServer, search_client: redis.Redis
) -> None:
    """A string property is a TAG: its value, whole, is the tag (a comma is no separator in a
    string the source sent)."""
    stream = f"tools_{cache_type}"
    sync_here(
        search_server, [entry(stream, "append", {"id": I, "category": S})],
        rec(stream, {"id": 1, "category": "tools, garden"}), rec(stream, {"id": 2, "category": "tools"}),
        rec(stream, {"id": 3, "category": "garden"}),
        cache_type=cache_type, search_index={},
    )
    name = f"idx::{stream}"
    assert found(search_client, name, "@category:{tools}") == {f":{stream}:2"}
    assert found(search_client, name, "@category:{garden}") == {f":{stream}:3"}
    assert found(search_client, name, r"@category:{tools\,\ garden}") == {f":{stream}:1"}


# --- 2. only the stream's own records -------------------------------------------------------------

PEOPLE = {"id": I, "name": S, "age": I}


def _app_key(client: redis.Redis, cache_type: str, key: str, data: dict[str, Any]) -> None:
    """The application's own key shaped like a record key, without our `_airbyte_ab_id`."""
    if cache_type == "json":
        client.execute_command("JSON.SET", key, "$", json.dumps(data))
    else:
        client.hset(key, mapping={k: str(v) for k, v in data.items()})


@pytest.mark.parametrize("cache_type", TYPES)
def test_index_holds_only_its_streams_records(
    cache_type: str, search_server: RedisServer, search_client: redis.Redis
) -> None:
    """users (key_template user:{id}), admins (admin:{id}) and staff (K:<id>), the same schema
    and data, each with its index (a top-level search_index): the application's `app:user:999`,
    written before, and the other streams' records are not in users' index."""
    _app_key(search_client, cache_type, "app:user:999", {"id": 999, "name": "ann", "age": 30})
    _app_key(search_client, cache_type, "app::staff:999", {"id": 999, "name": "ann", "age": 30})
    catalog = [entry(name, "append", PEOPLE) for name in ("users", "admins", "staff")]
    data = [{"id": 1, "name": "ann", "age": 30}, {"id": 2, "name": "bob", "age": 40}]
    sync_here(
        search_server, catalog, *(rec(s, d) for s in ("users", "admins", "staff") for d in data),
        key_prefix="app:", cache_type=cache_type, search_index={},
        streams=[
            {"name": "users", "key_template": "user:{id}"}, {"name": "admins", "key_template": "admin:{id}"}
        ],
    )
    expected = {
        "app:idx::users": ("app:user:", {"app:user:1", "app:user:2"}),
        "app:idx::admins": ("app:admin:", {"app:admin:1", "app:admin:2"}),
        "app:idx::staff": ("app::staff:", {"app::staff:1", "app::staff:2"}),
    }
    for name, (prefix, keys) in expected.items():
        info = ft_info(search_client, name)
        definition = dict(zip(info["index_definition"][::2], info["index_definition"][1::2], strict=True))
        assert definition[b"prefixes"] == [prefix.encode()], name
        assert found(search_client, name, "*") == keys, name
        assert found(search_client, name, "@name:{ann}") == {k for k in keys if k.endswith(":1")}, name
        assert found(search_client, name, "@age:[30 30]") == {k for k in keys if k.endswith(":1")}, name
        assert int(info["num_docs"]) == 2, name
    assert search_client.exists("app:user:999", "app::staff:999") == 2  # the application's keys stay


@pytest.mark.parametrize("cache_type", TYPES)
def test_template_starting_with_a_placeholder_cannot_have_an_index(
    cache_type: str, search_server: RedisServer, search_client: redis.Redis
) -> None:
    """tokens (key_template `{id}`, a layout check and write accept beside other streams) and
    staff (K:<id>) under key_prefix `app:`: an index over keys that start with a value would hold
    any stream's records, so write refuses tokens' index before writing anything."""
    catalog = [entry("tokens", "append", PEOPLE), entry("staff", "append", PEOPLE)]
    run = run_here(
        search_server, catalog,
        rec("tokens", {"id": 7, "name": "ann"}), rec("staff", {"id": 1, "name": "ann"}),
        key_prefix="app:", cache_type=cache_type, search_index={},
        streams=[{"name": "tokens", "key_template": "{id}"}],
    )
    refused_here(
        run, "Stream 'tokens': search_index needs its key_template ('{id}')", "to start with literal text"
    )
    assert run.states == []
    assert search_client.dbsize() == 0
    assert search_client.execute_command("FT._LIST") == []


# --- 3. dedup and CDC deletes ---------------------------------------------------------------------

DEDUP = {"id": I, "name": S, "city": S, "_ab_cdc_deleted_at": nullable("string")}


@pytest.mark.parametrize("cache_type", TYPES)
def test_dedup_replacements_and_cdc_deletes_show_in_queries(
    cache_type: str, search_server: RedisServer, search_client: redis.Redis
) -> None:
    stream = f"people_{cache_type}"
    catalog = [entry(stream, "append_dedup", DEDUP, [["id"]])]
    name = f"idx::{stream}"
    config: dict[str, Any] = {"cache_type": cache_type, "search_index": {"text_fields": ["name"]}}
    sync_here(
        search_server, catalog,
        rec(stream, {"id": 1, "name": "ann lee", "city": "bern"}, 1),
        rec(stream, {"id": 2, "name": "bob", "city": "genf"}, 2),
        rec(stream, {"id": 3, "name": "cy", "city": "bern"}, 3),
        rec(stream, {"id": 1, "name": "ann lee", "city": "basel"}, 4),  # later in the sync: wins
        state(stream, 1), **config,
    )
    k1, k2, k3, k4 = (f":{stream}:{i}" for i in range(1, 5))
    assert found(search_client, name, "@city:{bern}") == {k3}
    assert found(search_client, name, "@city:{basel}") == {k1}
    assert found(search_client, name, "@_airbyte_emitted_at:[-inf +inf]") == {k1, k2, k3}
    deleted = '"2026-01-01T00:00:00Z"'
    sync_here(
        search_server, catalog,
        rec(stream, {"id": 1, "name": "ann smith", "city": "zug"}, 5),
        raw_record(stream, f'{{"id":2,"_ab_cdc_deleted_at":{deleted}}}', 6),
        rec(stream, {"id": 4, "name": "dee", "city": "zug", "_ab_cdc_deleted_at": None}, 7),
        raw_record(stream, f'{{"id":9,"_ab_cdc_deleted_at":{deleted}}}', 8),  # never written
        state(stream, 2), **config,
    )
    assert found(search_client, name, "*") == {k1, k3, k4}
    assert found(search_client, name, "@city:{basel}") == set()
    assert found(search_client, name, "@city:{zug}") == {k1, k4}
    assert found(search_client, name, "@name:lee") == set()
    assert found(search_client, name, "@name:smith") == {k1}
    assert found(search_client, name, "@name:bob") == set()
    assert found(search_client, name, "@city:{genf}") == set()
    assert search(search_client, name, "*", "SORTBY", "_airbyte_emitted_at", "DESC") == [k4, k1, k3]
    assert indexing(search_client, name) == (0, 3)


# --- 4. a refresh, with queries running beside it ------------------------------------------------

REFRESH = {"id": I, "gen": I, "name": S}


def _generation(stream: str, generation: int, count: int, every: int) -> list[str]:
    body = [status(stream, "STARTED")]
    for i in range(1, count + 1):
        body.append(rec(stream, {"id": i, "gen": generation, "name": f"n{i % 7}"}, i))
        if i % every == 0:
            body.append(state(stream, generation * 100_000 + i))
    return [*body, status(stream, "COMPLETE")]


@pytest.mark.parametrize("cache_type", TYPES)
def test_refresh_keeps_queries_answering_and_removes_the_old_generation(
    cache_type: str, search_server: RedisServer, search_client: redis.Redis, tmp_path: Path
) -> None:
    """overwrite with generation ids: generation 1 (1,500 records), then generation 2 (2,500, in
    batches of 250 between states) on the command line while FT.SEARCH by the index name runs
    every few ms: no query fails, the index never holds fewer than generation 1's records, and
    after completion no record of generation 1 is found."""
    stream = f"refresh_{cache_type}"
    name = f"idx::{stream}"
    config: dict[str, Any] = {"cache_type": cache_type, "search_index": {}}
    first = sync(
        search_server, tmp_path, [entry(stream, "overwrite", REFRESH, generation=1)],
        *_generation(stream, 1, 1_500, 300), **config,
    )
    assert len(first.states) == 5
    assert total(search_client, name) == total(search_client, name, "@gen:[1 1]") == 1_500
    before = physical_of(search_client, name)
    with QueryLoop(search_server, name, "*", "@gen:[1 1]", "@gen:[2 2]") as loop:
        second = sync(
            search_server, tmp_path, [entry(stream, "overwrite", REFRESH, generation=2)],
            *_generation(stream, 2, 2_500, 250), **config,
        )
    assert loop.errors == []
    assert loop.rounds >= 20, loop.rounds
    assert min(loop.totals["*"]) >= 1_500
    assert len(second.states) == 10
    assert total(search_client, name, "@gen:[1 1]") == 0
    assert total(search_client, name, "@gen:[2 2]") == total(search_client, name) == 2_500
    assert physical_of(search_client, name) == before  # the same index, reused
    assert indexing(search_client, name) == (0, 2_500)
    assert f"Stream '{stream}': search index '{name}' holds 2500 documents, fully indexed." in logs_of(second)


# --- 5. schema changes between syncs --------------------------------------------------------------

EVOLVING = {"id": I, "name": S, "code": S}


@pytest.mark.parametrize("cache_type", TYPES)
def test_schema_changes_alter_or_rebuild_the_index_while_queries_keep_answering(
    cache_type: str, search_server: RedisServer, search_client: redis.Redis, tmp_path: Path
) -> None:
    """Sync 1 writes `color` without the schema listing it; sync 2's schema adds it: FT.ALTER of
    the same physical index, the old records found by color once the state is out. Sync 3 (the
    command line, queries running beside it) changes code from string to integer: a new physical
    index; the old records found throughout; afterwards one physical index, the alias on it."""
    stream = f"evolving_{cache_type}"
    name = f"idx::{stream}"
    config: dict[str, Any] = {"cache_type": cache_type, "search_index": {}}
    old = [
        rec(stream, {"id": i, "name": f"n{i}", "code": None, "color": "red" if i % 3 == 0 else "blue"}, i)
        for i in range(1, 3_001)
    ]
    sync_here(search_server, [entry(stream, "append", EVOLVING)], *old, state(stream, 1), **config)
    (first,) = physical_of(search_client, name)
    assert "color" not in attributes(search_client, name)
    assert total(search_client, name) == 3_000

    seen: list[tuple[int, int, int]] = []
    added = observe(
        search_server.config(**config), [entry(stream, "append", {**EVOLVING, "color": S})],
        [rec(stream, {"id": 3_001, "name": "new", "color": "red"}, 3_001), state(stream, 2)],
        lambda _: seen.append((*indexing(search_client, name), total(search_client, name, "@color:{red}"))),
    )
    assert added.error is None, added.error.message
    assert seen == [(0, 3_001, 1_001)]  # 1,000 old reds re-indexed, and the new one
    assert f"Stream '{stream}': search index '{name}' gained color (existing records are indexed again)." in (
        added.logs
    )
    assert physical_of(search_client, name) == [first]  # altered in place
    assert attributes(search_client, name)["color"][1:] == ("TAG", "")

    changed = {**EVOLVING, "color": S, "code": I}
    body = []
    for i in range(3_002, 3_802):
        body.append(rec(stream, {"id": i, "name": "newer", "code": i, "color": "blue"}, i))
        if (i - 3_001) % 200 == 0:
            body.append(state(stream, i))
    with QueryLoop(search_server, name, "*", "@color:{red}") as loop:
        rebuilt = sync(search_server, tmp_path, [entry(stream, "append", changed)], *body, **config)
    assert loop.errors == []
    assert loop.rounds >= 20, loop.rounds
    assert len(rebuilt.states) == 4
    (second,) = physical_of(search_client, name)
    assert second != first
    assert target(search_client, name) == second
    assert attributes(search_client, name)["code"][1:] == ("NUMERIC", "SORTABLE")
    rebuilt_logs = logs_of(rebuilt)
    assert any(f"search index '{name}' rebuilt as {second} (code changed)" in line for line in rebuilt_logs)
    assert total(search_client, name, "@code:[3002 3801]") == 800
    # The records written before stay found while the new index is built and after the alias moved.
    assert min(loop.totals["*"]) >= 3_001, "records existing before the sync went missing from queries"
    assert set(loop.totals["@color:{red}"]) == {1_001}
    assert total(search_client, name) == 3_801
    assert f"Stream '{stream}': search index '{name}' holds 3801 documents, fully indexed." in rebuilt_logs


def test_changed_type_reindexes_the_existing_records_before_the_state(
    search_server: RedisServer, search_client: redis.Redis
) -> None:
    """hash_fields stores a string "12" and an integer 12 alike: after code turns from string to
    integer, the records written before are found by a numeric range when the first state is
    released (the new index has indexed them before queries move to it)."""
    stream = "codes"
    name = f"idx::{stream}"
    config: dict[str, Any] = {"cache_type": "hash_fields", "search_index": {}}
    old = [rec(stream, {"id": i, "code": str(i)}, i) for i in range(1, 5_001)]
    sync_here(search_server, [entry(stream, "append", {"id": I, "code": S})], *old, **config)
    assert total(search_client, name, "@code:{1234}") == 1
    seen: list[tuple[int, int, int]] = []
    run = observe(
        search_server.config(**config), [entry(stream, "append", {"id": I, "code": I})],
        [rec(stream, {"id": 5_001, "code": 5_001}, 5_001), state(stream, 1)],
        lambda _: seen.append((*indexing(search_client, name), total(search_client, name, "@code:[1 5001]"))),
    )
    assert run.error is None, run.error.message
    assert seen == [(0, 5_001, 5_001)]
    assert len(physical_of(search_client, name)) == 1
    assert f"Stream '{stream}': search index '{name}' holds 5001 documents, fully indexed." in run.logs


# --- 6. reuse --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cache_type", TYPES)
def test_an_index_with_the_same_definition_is_reused(
    cache_type: str, search_server: RedisServer, search_client: redis.Redis
) -> None:
    """A second sync with the same schema (its properties listed in another order): the same
    physical index, nothing created, altered or rebuilt."""
    stream = f"reused_{cache_type}"
    name = f"idx::{stream}"
    config: dict[str, Any] = {"cache_type": cache_type, "search_index": {"text_fields": ["name"]}}
    first = sync_here(
        search_server, [entry(stream, "append", PEOPLE)], rec(stream, {"id": 1, "name": "ann", "age": 3}),
        **config,
    )
    assert any("created search index" in line for line in first.logs)
    listed = search_client.execute_command("FT._LIST")
    shape = attributes(search_client, name)
    reordered = dict(reversed(PEOPLE.items()))
    second = sync_here(
        search_server, [entry(stream, "append", reordered)], rec(stream, {"id": 2, "name": "bob", "age": 4}),
        **config,
    )
    assert search_client.execute_command("FT._LIST") == listed
    assert attributes(search_client, name) == shape
    assert not [line for line in second.logs if re.search("created|rebuilt|gained", line)], second.logs
    assert found(search_client, name, "@name:ann | @name:bob") == {f":{stream}:1", f":{stream}:2"}


# --- 7. vectors refused per line -----------------------------------------------------------------

VECTOR_PROBLEMS = [
    ("[1,2,3]", "the vector field 'emb' holds 3 numbers; its search index expects 4"),
    ('[1,"2",3,4]', "the vector field 'emb' holds a string at position 1, not a number"),
]


@pytest.mark.parametrize("cache_type", TYPES)
@pytest.mark.parametrize(("vector", "problem"), VECTOR_PROBLEMS, ids=["wrong-length", "not-a-number"])
def test_a_bad_vector_names_its_line_after_writing_what_came_before(
    cache_type: str, vector: str, problem: str, search_server: RedisServer, search_client: redis.Redis
) -> None:
    stream = f"vec_{cache_type}"
    index = {"vector_fields": [{"field": "emb", "dims": 4, "distance_metric": "L2", "algorithm": "FLAT"}]}
    run = run_here(
        search_server, [entry(stream, "append", {"id": I})],
        raw_record(stream, '{"id":1,"emb":[1,0,0,0]}', 1),
        state(stream, 1),
        raw_record(stream, f'{{"id":2,"emb":{vector}}}', 2),
        raw_record(stream, '{"id":3,"emb":[0,1,0,0]}', 3),
        state(stream, 2),
        cache_type=cache_type, search_index=index,
    )
    message = refused_here(
        run, f"Input line 3: {problem}.", "Everything before it was written and its states emitted."
    )
    assert message.startswith("Input line 3:"), message
    assert [s["state"]["stream"]["stream_state"] for s in run.states] == [{"c": 1}]
    assert sorted(search_client.keys(f":{stream}*")) == [f":{stream}".encode(), f":{stream}:1".encode()]
    assert knn(search_client, f"idx::{stream}", [1, 0, 0, 0], 5) == [(f":{stream}:1", 0.0)]


# --- 8. refusals -------------------------------------------------------------------------------------


def test_no_query_engine_is_refused_by_check_and_write_before_anything_is_written(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """The default server (Debian's redis-server 7.0, no modules): check FAILED, write a
    config_error naming the server's version, before writing or deleting anything (an overwrite
    stream's records stay)."""
    version = redis_client.info("server")["redis_version"]
    with pytest.raises(redis.ResponseError, match="unknown command"):  # the premise
        redis_client.execute_command("FT._LIST")
    catalog = [entry("plain", "overwrite", PEOPLE)]
    sync_here(redis_server, catalog, rec("plain", {"id": 1, "name": "ann"}), cache_type="hash_fields")
    before = sorted(redis_client.keys("*"))
    expected = (
        f"search_index needs the Redis query engine (FT.CREATE): built into Redis 8, or the search module "
        f"(Redis Stack, RediSearch 2.x); the server at 127.0.0.1:{redis_server.port} (Redis {version}) has "
        "neither."
    )
    configs: list[dict[str, Any]] = [
        {"search_index": {}}, {"streams": [{"name": "plain", "search_index": {}}]}
    ]
    for config in configs:
        state_, message = check_status(redis_server, cache_type="hash_fields", **config)
        assert state_ == "FAILED"
        assert expected in message, message
        run = run_here(
            redis_server, catalog, rec("plain", {"id": 2, "name": "bob"}), state("plain", 1),
            cache_type="hash_fields", **config,
        )
        refused_here(run, expected)
        assert run.states == []
        assert sorted(redis_client.keys("*")) == before
        assert redis_client.hget(":plain:1", "name") == b"ann"


def _run_config(config: dict[str, Any], catalog: list[dict[str, Any]], *messages: str) -> Run:
    return observe(config, catalog, messages, lambda _: None)


def test_cluster_is_refused_by_check_and_write(
    redis_cluster: RedisCluster, cluster_client: redis.cluster.RedisCluster
) -> None:
    config = redis_cluster.config(cache_type="hash_fields", search_index={})
    state_, message = check_status_of(config)
    assert state_ == "FAILED"
    assert "search_index cannot be used on Redis Cluster" in message, message
    assert "open-source Redis Cluster has no cross-shard query engine" in message, message
    run = _run_config(config, [entry("users", "append", PEOPLE)], rec("users", {"id": 1}), state("users", 1))
    refused_here(run, "search_index cannot be used on Redis Cluster")
    assert run.states == []
    assert redis_cluster.keys_all() == []


def check_status_of(config: dict[str, Any]) -> tuple[str, str]:
    """check_status for a config made elsewhere (a cluster's, an ACL user's)."""
    try:
        return check_here(config)
    except ConnectorError as exc:
        return "FAILED", exc.message


@pytest.mark.parametrize("cache_type", ["string", "hash", "list"])
def test_search_index_on_a_stream_of_another_cache_type_is_refused(
    cache_type: str, search_server: RedisServer, search_client: redis.Redis
) -> None:
    search_client.set("unrelated", "1")
    config: dict[str, Any] = {"streams": [{"name": "events", "cache_type": cache_type, "search_index": {}}]}
    state_, message = check_status(search_server, **config)
    assert state_ == "FAILED"
    assert (
        f"search_index needs cache_type hash_fields or json (one field per property); cache_type "
        f"'{cache_type}' stores a record as one value"
    ) in message, message
    run = run_here(
        search_server, [entry("events", "append", PEOPLE)], rec("events", {"id": 1}), state("events", 1),
        **config,
    )
    refused_here(
        run,
        f"Stream 'events': search_index needs cache_type hash_fields or json (one field per property); "
        f"cache_type '{cache_type}' stores a record as one value",
    )
    assert run.states == []
    assert search_client.keys("*") == [b"unrelated"]
    assert search_client.execute_command("FT._LIST") == []


def test_top_level_search_index_with_a_top_level_cache_type_that_cannot_be_indexed_is_refused(
    search_server: RedisServer, search_client: redis.Redis
) -> None:
    """cache_type hash and search_index, both top level: check refuses it; so must write, before
    writing (rather than writing the stream without the index asked for)."""
    state_, message = check_status(search_server, cache_type="hash", search_index={})
    assert state_ == "FAILED"
    assert "search_index needs cache_type hash_fields or json" in message, message
    assert "cache_type 'hash' stores a record as one value" in message, message
    run = run_here(
        search_server, [entry("events", "append", PEOPLE)], rec("events", {"id": 1}), state("events", 1),
        cache_type="hash", search_index={},
    )
    assert run.error is not None, (
        f"write succeeded where check failed; written: {sorted(search_client.keys('*'))}, "
        f"indexes: {search_client.execute_command('FT._LIST')}"
    )
    refused_here(run, "search_index needs cache_type hash_fields or json")
    assert search_client.dbsize() == 0


def test_two_streams_sharing_one_index_name_are_refused_by_write(
    search_server: RedisServer, search_client: redis.Redis
) -> None:
    catalog = [entry("orders", "append", PEOPLE), entry("refunds", "append", PEOPLE)]
    messages = [rec("orders", {"id": 1}), rec("refunds", {"id": 1}), state("orders", 1)]
    for config in (
        {"search_index": {"name": "shared"}},
        {"streams": [{"name": "orders", "search_index": {"name": "shared"}},
                     {"name": "refunds", "search_index": {"name": "shared"}}]},
    ):
        run = run_here(search_server, catalog, *messages, cache_type="hash_fields", **config)
        refused_here(run, "Streams 'orders' and 'refunds' would share the search index 'shared'")
        assert run.states == []
        assert search_client.dbsize() == 0
        assert search_client.execute_command("FT._LIST") == []


class _AclUser:
    """A user of the shared search server without the query engine's commands (removed afterwards):
    `-@search` where the server has that ACL category (Redis 8's built-in engine), else each FT.*
    command (the module's commands have no category)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.name = f"nosearch_{uuid.uuid4().hex[:8]}"
        self.password = "Nosearch-pw-41c9"  # noqa: S105
        categories = {text(c) for c in client.execute_command("ACL", "CAT")}
        denied = ["-@search"] if "search" in categories else [f"-{c}" for c in FT_COMMANDS]
        client.execute_command("ACL", "SETUSER", self.name, "on", f">{self.password}", "~*", "+@all", *denied)

    def config(self, server: RedisServer, **config: Any) -> dict[str, Any]:
        return server.config(username=self.name, password=self.password, **config)

    def remove(self) -> None:
        self.client.execute_command("ACL", "DELUSER", self.name)


@pytest.fixture
def acl_user(search_client: redis.Redis) -> Iterator[_AclUser]:
    user = _AclUser(search_client)
    yield user
    user.remove()


def test_check_fails_for_a_user_without_the_query_engines_commands(
    search_server: RedisServer, search_client: redis.Redis, acl_user: _AclUser
) -> None:
    config = acl_user.config(search_server, cache_type="hash_fields", search_index={})
    status_, message = check_status_of(config)
    assert status_ == "FAILED"
    assert f"the ACL user '{acl_user.name}' may not run FT." in message, message
    assert "(NOPERM)" in message, message
    assert "+@search" in message, message
    assert search_client.keys("*") == []
    assert search_client.execute_command("FT._LIST") == []


def test_the_grant_check_advises_for_the_query_engine_works(
    search_server: RedisServer, search_client: redis.Redis, acl_user: _AclUser
) -> None:
    """The ACL SETUSER that check's message advises, run as it is, lets check succeed."""
    config = acl_user.config(search_server, cache_type="hash_fields", search_index={})
    _, message = check_status_of(config)
    advice = re.search(r"\(ACL SETUSER (\S+) ([^)]*)\)", message)
    assert advice is not None, message
    assert advice[1] == acl_user.name
    try:
        search_client.execute_command("ACL", "SETUSER", acl_user.name, *advice[2].split())
    except redis.ResponseError as exc:
        pytest.fail(f"the advised `ACL SETUSER {acl_user.name} {advice[2]}` is refused by the server: {exc}")
    status_, message = check_status_of(config)
    assert status_ == "SUCCEEDED", message


def test_write_by_a_user_without_the_query_engines_commands_is_refused_before_writing(
    search_server: RedisServer, search_client: redis.Redis, acl_user: _AclUser
) -> None:
    """An overwrite stream written before (by a user with every right): the user without FT.*
    gets a config_error, and the stream's records are still there."""
    catalog = [entry("ledger", "overwrite", PEOPLE)]
    sync_here(search_server, catalog, rec("ledger", {"id": 1, "name": "ann"}), cache_type="hash_fields")
    before = sorted(search_client.keys("*"))
    run = _run_config(
        acl_user.config(search_server, cache_type="hash_fields", search_index={}), catalog,
        rec("ledger", {"id": 2, "name": "bob"}), state("ledger", 1),
    )
    message = refused_here(run, "FT.CREATE", "NOPERM")
    assert run.states == []
    assert sorted(search_client.keys("*")) == before, f"the stream's records were deleted before: {message}"


# --- 9. check's message and the LOG line -----------------------------------------------------------


def test_check_names_the_query_engine_and_leaves_nothing_behind(
    search_server: RedisServer, search_client: redis.Redis
) -> None:
    modules = {m[b"name"]: m[b"ver"] for m in search_client.module_list()}
    ver = int(modules[b"search"])
    engine = f"search {ver // 10000}.{ver // 100 % 100}.{ver % 100}"
    assert engine.startswith("search 2.10.")
    for config in (
        {"cache_type": "hash_fields", "search_index": {}},
        {"streams": [{"name": "docs", "cache_type": "json", "search_index": {"name": "docs"}}]},
    ):
        state_, message = check_status(search_server, **config)
        assert state_ == "SUCCEEDED", message
        assert message.endswith(f" Search indexes can be built (query engine: {engine})."), message
    assert search_client.keys("*") == []
    assert search_client.execute_command("FT._LIST") == []
    plain_state, plain = check_status(search_server, cache_type="hash_fields")
    assert plain_state == "SUCCEEDED"
    assert "Search indexes" not in plain


def test_each_stream_logs_its_index_when_it_completes(
    search_server: RedisServer, search_client: redis.Redis
) -> None:
    """a completes (STREAM_STATUS) before b's records: its LOG line is out before b's state; b's
    at its own completion. A custom name, and json beside hash_fields."""
    catalog = [entry("a", "append", PEOPLE), entry("b", "append", PEOPLE)]
    logs_at_b_state: list[list[str]] = []
    logger_lines: list[str] = []

    class _Peek(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            logger_lines.append(record.getMessage())

    peek = _Peek()
    logging.getLogger("airbyte").addHandler(peek)
    try:
        run = observe(
            search_server.config(
                cache_type="hash_fields",
                streams=[{"name": "a", "search_index": {"name": "people_a"}},
                         {"name": "b", "cache_type": "json", "search_index": {}}],
            ),
            catalog,
            [
                status("a", "STARTED"), status("b", "STARTED"),
                rec("a", {"id": 1}), rec("a", {"id": 2}), rec("a", {"id": 3}), status("a", "COMPLETE"),
                rec("b", {"id": 1}), state("b", 1), rec("b", {"id": 2}), status("b", "COMPLETE"),
            ],
            lambda _: logs_at_b_state.append(list(logger_lines)),
        )
    finally:
        logging.getLogger("airbyte").removeHandler(peek)
    assert run.error is None, run.error.message
    line_a = "Stream 'a': search index 'people_a' holds 3 documents, fully indexed."
    line_b = "Stream 'b': search index 'idx::b' holds 2 documents, fully indexed."
    (at_state,) = logs_at_b_state
    assert line_a in at_state
    assert line_b not in at_state
    assert line_a in run.logs
    assert line_b in run.logs
    assert total(search_client, "people_a") == 3
    assert total(search_client, "idx::b") == 2


# --- 10. states wait for the index -------------------------------------------------------------------


@pytest.mark.parametrize("cache_type", TYPES)
def test_state_waits_until_a_new_index_has_indexed_the_existing_records(
    cache_type: str, search_server: RedisServer, search_client: redis.Redis
) -> None:
    """20,000 records written without an index; the next sync asks for one: when its first state
    is released, FT.INFO says indexing 0 and every record is a document."""
    stream = f"backlog_{cache_type}"
    catalog = [entry(stream, "append", PEOPLE)]
    backlog = (rec(stream, {"id": i, "name": f"n{i % 100}", "age": i % 90}, i) for i in range(1, 20_001))
    sync_here(search_server, catalog, *backlog, cache_type=cache_type)
    assert search_client.execute_command("FT._LIST") == []
    seen: list[tuple[int, int, int]] = []
    name = f"idx::{stream}"
    run = observe(
        search_server.config(cache_type=cache_type, search_index={}), catalog,
        [rec(stream, {"id": 20_001, "name": "last", "age": 1}), state(stream, 1)],
        lambda _: seen.append((*indexing(search_client, name), total(search_client, name, "@age:[0 89]"))),
    )
    assert run.error is None, run.error.message
    assert seen == [(0, 20_001, 20_001)]
    assert f"Stream '{stream}': search index '{name}' holds 20001 documents, fully indexed." in run.logs


def test_indexing_past_the_timeout_is_a_transient_error_naming_the_index(
    search_server: RedisServer, search_client: redis.Redis
) -> None:
    """200,000 existing records (written here by a script, the stream's counter set) and
    indexing_timeout_seconds 1: the query engine needs several seconds to index them, so the
    state is not released; a transient_error names the index. The record is written."""
    search_client.eval(
        "for i = 1, tonumber(ARGV[1]) do redis.call('HSET', ':big:' .. i, 'id', i, 'name', 'name ' .. i, "
        "'_airbyte_ab_id', i, '_airbyte_emitted_at', 1700000000000 + i) end "
        "redis.call('SET', ':big', ARGV[1]) return 1",
        0, 200_000,
    )
    started = time.monotonic()
    run = run_here(
        search_server, [entry("big", "append", PEOPLE)],
        rec("big", {"id": 200_001, "name": "last"}), state("big", 1),
        cache_type="hash_fields", search_index={"indexing_timeout_seconds": 1},
    )
    waited = time.monotonic() - started
    assert run.error is not None, "the state was released"
    assert run.error.failure_type == "transient_error", run.error.message
    assert run.error.message.startswith(
        "Search index 'idx::big' of stream 'big' was still indexing after 1 s ("
    ), run.error.message
    assert "Retry the sync, or raise search_index.indexing_timeout_seconds." in run.error.message
    assert run.states == []
    assert 1 <= waited < 10, waited
    assert search_client.hget(":big:200001", "name") == b"last"
    assert indexing(search_client, "idx::big")[0] == 1  # the premise: still indexing
    search_client.execute_command("FT.DROPINDEX", "idx::big")  # stop the background scan
