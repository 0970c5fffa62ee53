"""`key_template` per stream against real servers: each record at the key its template renders,
the stream's key book (`<prefix>_airbyte_meta:{<tag>}:<ns>:<stream>:keys`, one sorted set per hash
slot, member the key, score the id of the record last written to it), every sync mode, `check`,
and the refusals.

The core tests run on every server of the matrix (REDIS_MATRIX), the cluster included: there
`redis_client` is cluster-aware and its KEYS covers every primary, so `dump` reads the whole
cluster. They run their syncs in this process (`run_here`: what the CLI's write runs, parse_config,
the catalog and write_lines, without a process start, which costs more than the sync): `two_syncs`
writes the streams of five tests in two syncs (each test owns its streams, named apart, and reads
the database as it was after each sync); the refresh test makes its four attempts. The other tests
(refusals, json with the RedisJSON module) run once, on the default server, on the command line
where the whole command shows (exit code, TRACE, states on stdout) and in this process for the
variants of one refusal.

The helpers for running a sync (`run_here`, `sync_here`, `refused_here`; `run_write`, `sync`,
`refused` on the command line), `raw_record`, `Clock` and `check_status` are shared with
test_expiry_from_data.py.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from destination_redis import keys
from destination_redis.catalog import parse_catalog
from destination_redis.config import parse_config
from destination_redis.errors import ConnectorError
from destination_redis.sync import write_lines
from integration_tests.cli import Result, lines, run_connector, stream_state
from integration_tests.connector_runs import check_here
from integration_tests.servers import RedisServer
from integration_tests.test_cache_types import rejson_path
from integration_tests.test_sync_modes import configured, status

PREFIX = "app:"
EMITTED = 1_700_000_000_000
WRITE = ["write", "--config", "{config}", "--catalog", "{catalog}"]
DELETED_AT = '"2026-11-25T00:00:00Z"'

Dump = dict[bytes, Any]


# --- shared helpers ------------------------------------------------------------------------------


def run_write(
    server: RedisServer, tmp_path: Path, catalog: list[dict[str, Any]], *messages: str, **config: Any
) -> Result:
    """One `write` as a user runs it (the console script); `config` holds the config's settings."""
    return run_connector(
        WRITE, tmp_path, config=server.config(**config), catalog={"streams": catalog}, stdin=lines(*messages)
    )


def sync(
    server: RedisServer, tmp_path: Path, catalog: list[dict[str, Any]], *messages: str, **config: Any
) -> Result:
    """A `write` that must succeed."""
    result = run_write(server, tmp_path, catalog, *messages, **config)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert result.errors == [], result.errors
    assert "Traceback" not in output, output[-4000:]
    return result


def refused(result: Result, *expected: str) -> str:
    """The write failed (exit 1) with one config_error whose message holds each of `expected`."""
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    (error,) = result.errors
    assert error["failure_type"] == "config_error", error
    message = str(error["message"])
    for text in expected:
        assert text in message, f"{text!r} not in {message!r}"
    return message


@dataclass
class Run:
    """A write run in this process: the messages it released (the STATE lines, parsed), the error it
    ended with (None: it succeeded) and what it logged."""

    states: list[dict[str, Any]]
    error: ConnectorError | None
    logs: list[str]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run_here(server: RedisServer, catalog: list[dict[str, Any]], *messages: str, **config: Any) -> Run:
    """`write` in this process: what the CLI's write runs (parse_config, the catalog, write_lines),
    without its process start, protocol output and exit code (the CLI tests show those)."""
    return run_config(server.config(**config), catalog, messages)


def run_config(
    config: dict[str, Any], catalog: list[dict[str, Any]], messages: Iterable[str],
    at_state: Callable[[dict[str, Any]], None] | None = None,
) -> Run:
    """`run_here` of a whole config; `at_state` is called with each state the moment the
    connector releases it (the connector waits meanwhile)."""
    states: list[dict[str, Any]] = []
    logger = logging.getLogger("airbyte")
    collect, level = _Collect(), logger.level
    logger.addHandler(collect)
    logger.setLevel(logging.INFO)
    error = None
    try:
        lines = (m.encode() for m in messages)
        for line in write_lines(parse_config(config), parse_catalog({"streams": catalog}), lines):
            states.append(json.loads(line))
            if at_state is not None:
                at_state(states[-1])
    except ConnectorError as exc:
        error = exc
    finally:
        logger.removeHandler(collect)
        logger.setLevel(level)
    return Run(states, error, collect.messages)


def sync_here(server: RedisServer, catalog: list[dict[str, Any]], *messages: str, **config: Any) -> Run:
    """A write in this process that must succeed."""
    run = run_here(server, catalog, *messages, **config)
    assert run.error is None, run.error.message
    return run


def refused_here(run: Run, *expected: str) -> str:
    """The write in this process ended with a config_error whose message holds each of `expected`."""
    message = config_error_of(run.error)
    for text in expected:
        assert text in message, f"{text!r} not in {message!r}"
    return message


def config_error_of(error: ConnectorError | None) -> str:
    """The message of a write in this process that ended with a config_error."""
    assert error is not None, "the write succeeded"
    assert error.failure_type == "config_error", error.message
    return error.message


def raw_record(stream: str, data: str, n: int = 0, namespace: str | None = None) -> str:
    """A RECORD line whose `data` is the JSON text given, byte for byte (`1.50` stays `1.50`);
    emitted_at EMITTED + n."""
    where = "" if namespace is None else f',"namespace":{json.dumps(namespace)}'
    return (
        f'{{"type":"RECORD","record":{{"stream":"{stream}"{where},"emitted_at":{EMITTED + n},'
        f'"data":{data}}}}}'
    )


def dump(client: redis.Redis, generations: bool = False) -> Dump:
    """Every key of the database (the whole cluster on the matrix's cluster) with its value:
    string -> bytes, hash -> {field: value}, zset -> [(member, score)] in ZRANGE order, list ->
    its members, json -> JSON.GET's text. Without `generations`, the generation bookkeeping hashes
    (`<prefix>_airbyte_meta:<ns>:<stream>`, generations.py's fields) are left out."""
    out: Dump = {}
    for key in client.keys("*"):
        assert isinstance(key, bytes)
        kind = client.type(key)
        if kind == b"hash" and b"_airbyte_meta:" in key and not generations:
            continue
        if kind == b"string":
            out[key] = client.get(key)
        elif kind == b"hash":
            out[key] = client.hgetall(key)
        elif kind == b"zset":
            out[key] = client.zrange(key, 0, -1, withscores=True)
        elif kind == b"ReJSON-RL":
            out[key] = client.execute_command("JSON.GET", key)
        elif kind == b"list":
            out[key] = client.lrange(key, 0, -1)
        else:
            raise AssertionError(f"{key!r} is a {kind!r}")
    return out


def put(client: redis.Redis, values: Dump) -> None:
    """Write the application's keys: bytes as strings, dicts as hashes (a field at a time: Redis
    before 4.0 has no multi-field HSET)."""
    for key, value in values.items():
        if isinstance(value, dict):
            for field, text in value.items():
                client.hset(key, field, text)
        else:
            client.set(key, value)


def book(stream: str, key: bytes, prefix: str = PREFIX) -> bytes:
    """The key book recording `key` for stream `stream` ("<ns>:<name>", ":name" without one)."""
    return keys.owned_keys_book(stream.encode(), prefix, keys.key_slot(key))


def books(stream: str, entries: dict[bytes, int], prefix: str = PREFIX) -> Dump:
    """The stream's key books as `dump` shows them: {book: [(key, id), ...]}, a book per hash slot."""
    out: dict[bytes, list[tuple[bytes, float]]] = {}
    for key, record_id in entries.items():
        out.setdefault(book(stream, key, prefix), []).append((key, float(record_id)))
    return {name: sorted(members, key=lambda m: (m[1], m[0])) for name, members in out.items()}


def seed(record_id: int, n: int, data: str) -> dict[bytes, bytes]:
    """The `hash` type's value: the three seed fields (emitted_at EMITTED + n)."""
    return {
        b"_airbyte_ab_id": b"%d" % record_id,
        b"_airbyte_emitted_at": b"%d" % (EMITTED + n),
        b"_airbyte_data": data.encode(),
    }


def fields(record_id: int, n: int, /, **properties: str) -> dict[bytes, bytes]:
    """The `hash_fields` type's value: a field per property, then ours."""
    value = {name.encode(): text.encode() for name, text in properties.items()}
    value.update({b"_airbyte_ab_id": b"%d" % record_id, b"_airbyte_emitted_at": b"%d" % (EMITTED + n)})
    return value


def template(name: str, text: str, **settings: Any) -> dict[str, Any]:
    """A `streams` entry giving stream `name` the key template `text`."""
    return {"name": name, "key_template": text, **settings}


def with_schema(name: str, mode: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A catalog entry (test_sync_modes.configured) with a json_schema of its own."""
    configured_stream = configured(name, mode)
    configured_stream["stream"]["json_schema"] = schema
    return configured_stream


def states_of(result: Result | Run) -> list[Any]:
    return [s["state"]["stream"]["stream_state"] for s in result.states]


class Clock:
    """Epoch milliseconds before a sync (`before`) and after reading its TTLs (`after`): the
    bounds of what a key's PTTL can be."""

    def __init__(self) -> None:
        self.before = now_ms()
        self.after = self.before

    def stop(self) -> None:
        self.after = now_ms()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# What stream a key of `two_syncs` belongs to: its book, its counter, or a key `app:<name>...`.
_OWNER = re.compile(
    rb"app:(?:_airbyte_meta:\{[0-9A-Za-z]+\}::(?P<book>[a-z0-9]+):keys$|:(?P<counter>[a-z0-9]+)$"
    rb"|(?P<key>[a-z0-9]+)(?![a-z0-9]))"
)


def owned_by(stored: Dump, *names: str) -> Dump:
    """The keys of `stored` that belong to the streams `names` (application look-alikes of their
    keys included: `app:user:999` belongs to `user`)."""
    out: Dump = {}
    for key, value in stored.items():
        match = _OWNER.match(key)
        assert match is not None, key
        if (match["book"] or match["counter"] or match["key"]).decode() in names:
            out[key] = value
    return out


# --- two syncs shared by the core tests of layouts and sync modes --------------------------------


@dataclass
class TwoSyncs:
    first: Run
    second: Run
    after_first: Dump
    after_second: Dump
    app_keys: Dump  # what the application wrote between the syncs


# The records of the layout streams (run 1).
H1 = '{"id":1,"name":"Zoë 🚀","obj":{"a":[1,null]}}'
H2 = '{"id":"a:b ü","n":1.50}'
H3 = '{"id":true}'
H4 = '{"id":1.50,"x":1e400}'
F1 = '{"id":7,"name":"Zoë","n":1.50,"t":true,"obj":{"a":1},"gone":null,"s":"x:y"}'
S1 = '{"id":"x","v":1}'
S2 = '{"id":"e\\"\\u00fc\\\\n"}'  # a string with escapes: its text goes in the key, unescaped
N1 = '{"tenant":"acme","address":{"city":"Zürich:Nord","zip":8000},"id":1.50}'
N2 = '{"tenant":"ac me","address":{"city":"Bern"},"id":"x:y"}'
B1 = '{"a":{"b":{"c":12345678901234567890123}},"flag":false}'
C1 = '{"id":-7}'

OVERRIDES = [
    # layouts: a stream per per-record type, and nested paths / literal braces
    template("h", "h:{id}"),
    template("f", "f:{id}", cache_type="hash_fields"),
    template("s", "s:{id}", cache_type="string"),
    template("n", "n:t:{{{tenant}}}:u:{address.city}:{id}"),
    template("b", "b:{{lit}}:{a.b.c}:{flag}"),
    template("c", "c}}{id}{{", cache_type="string"),
    # sync modes
    template("a", "a:{id}", cache_type="hash_fields"),
    template("d", "d:{id}"),
    template("ds", "ds:{id}", cache_type="string"),
    template("user", "user:{id}"),
    template("lw", "lw:{id}", cache_type="string"),
    template("g", "g:{id}"),
]


@pytest.fixture(scope="module")
def two_syncs(redis_server: RedisServer) -> Iterator[TwoSyncs]:
    """Two syncs of twelve templated streams under key_prefix `app:`, the application writing its
    own keys between them; the database is dumped after each."""
    with redis_server.flushed_client() as client:
        catalog = [configured(name, "append") for name in ("h", "f", "s", "n", "b", "c", "a", "ds")]
        catalog += [
            configured("d", "append_dedup", [["id"]]),
            configured("user", "overwrite"),
            configured("lw", "overwrite"),
            configured("g", "append", generation=1, minimum=1),
        ]
        first = sync_here(
            redis_server, catalog,
            raw_record("h", H1, 1), raw_record("h", H2, 2), raw_record("h", H3, 3), raw_record("h", H4, 4),
            raw_record("f", F1, 5), raw_record("s", S1, 6), raw_record("s", S2, 16),
            raw_record("n", N1, 7), raw_record("n", N2, 8),
            raw_record("b", B1, 9), raw_record("c", C1, 10),
            raw_record("a", '{"id":1,"x":"1","y":"2"}', 11),
            raw_record("a", '{"id":2,"x":"b"}', 12),
            raw_record("d", '{"id":1,"v":"a"}', 13),
            raw_record("d", '{"id":2,"v":"b"}', 14),
            raw_record("d", '{"id":1,"v":"a2"}', 15),
            raw_record("ds", '{"id":1,"v":"s1"}', 16),
            raw_record("ds", '{"id":2,"v":"s2"}', 17),
            *(raw_record("user", f'{{"id":{i}}}', 20 + i) for i in (1, 2, 3, 7)),
            raw_record("lw", '{"id":1}', 30), raw_record("lw", '{"id":2}', 31),
            status("g", "STARTED"), raw_record("g", '{"id":1}', 40), raw_record("g", '{"id":2}', 41),
            status("g", "COMPLETE"),
            stream_state("d", {"c": 1}),
            key_prefix=PREFIX, streams=OVERRIDES,
        )
        after_first = dump(client)
        app_keys: Dump = {
            # Look-alikes of the stream's keys, never written by it (one with our id field).
            b"app:user:999": {b"_airbyte_ab_id": b"1", b"owner": b"app"},
            b"app:user:42:sessions": b"s",
            # Keys the stream wrote, then rewritten by the application: no longer ours.
            b"app:user:7": {b"owner": b"app"},
            b"app:user:3": b"the app's",
            b"app:lw:999": b"app",
            b"app:lw:1:sessions": b"app",
        }
        client.delete(b"app:user:7", b"app:user:3")
        put(client, app_keys)
        client.set(b"app:lw:2", b"rewritten by the app")  # string: the book is trusted, it goes
        client.hset(b"app:a:1", b"stale", b"from elsewhere")
        second = sync_here(
            redis_server, catalog,
            raw_record("a", '{"id":1,"x":"3"}', 50),
            raw_record("a", f'{{"id":2,"_ab_cdc_deleted_at":{DELETED_AT}}}', 51),
            raw_record("d", f'{{"id":2,"_ab_cdc_deleted_at":{DELETED_AT}}}', 52),
            raw_record("d", f'{{"id":9,"_ab_cdc_deleted_at":{DELETED_AT}}}', 53),
            raw_record("d", '{"id":3,"_ab_cdc_deleted_at":null}', 54),
            raw_record("ds", f'{{"id":1,"_ab_cdc_deleted_at":{DELETED_AT}}}', 55),
            raw_record("user", '{"id":2,"v":"new"}', 60), raw_record("user", '{"id":5}', 61),
            raw_record("lw", '{"id":3}', 62),
            status("g", "STARTED"), raw_record("g", '{"id":2,"v":2}', 70), raw_record("g", '{"id":3}', 71),
            status("g", "COMPLETE"),
            stream_state("d", {"c": 2}),
            key_prefix=PREFIX, streams=OVERRIDES,
        )
        yield TwoSyncs(first, second, after_first, dump(client), app_keys)


@pytest.mark.core
def test_layouts_byte_for_byte_with_nested_paths_and_literal_braces(two_syncs: TwoSyncs) -> None:
    """A stream per per-record type (hash, hash_fields, string) and three of nested paths and
    literal braces: the exact keys, values, ids and key books, nothing else. Values go in
    unescaped (':' and non-ASCII kept, a number as the source wrote it, true/false)."""
    k_n1 = "app:n:t:{acme}:u:Zürich:Nord:1.50".encode()
    k_n2 = b"app:n:t:{ac me}:u:Bern:x:y"
    k_b1 = b"app:b:{lit}:12345678901234567890123:false"
    assert owned_by(two_syncs.after_first, "h", "f", "s", "n", "b", "c") == {
        # The id counters: ids still count per stream.
        b"app::h": b"4", b"app::f": b"1", b"app::s": b"2", b"app::n": b"2", b"app::b": b"1", b"app::c": b"1",
        b"app:h:1": seed(1, 1, H1),
        "app:h:a:b ü".encode(): seed(2, 2, H2),
        b"app:h:true": seed(3, 3, H3),
        b"app:h:1.50": seed(4, 4, H4),
        b"app:f:7": fields(1, 5, id="7", name="Zoë", n="1.50", t="true", obj='{"a":1}', s="x:y"),
        b"app:s:x": S1.encode(),  # string: the record's JSON alone, no id
        'app:s:e"ü\\n'.encode(): '{"id":"e\\"ü\\\\n"}'.encode(),  # the key: `e"ü\n`, a backslash and n
        k_n1: seed(1, 7, N1),
        k_n2: seed(2, 8, N2),
        k_b1: seed(1, 9, B1),
        b"app:c}-7{": C1.encode(),
        **books(":h", {b"app:h:1": 1, "app:h:a:b ü".encode(): 2, b"app:h:true": 3, b"app:h:1.50": 4}),
        **books(":f", {b"app:f:7": 1}),
        **books(":s", {b"app:s:x": 1, 'app:s:e"ü\\n'.encode(): 2}),
        **books(":n", {k_n1: 1, k_n2: 2}),
        **books(":b", {k_b1: 1}),
        **books(":c", {b"app:c}-7{": 1}),
    }
    # A key with a hash tag has its book in the tag's slot: `{acme}` -> the slot of "acme".
    assert book(":n", k_n1) == keys.owned_keys_book(b":n", PREFIX, keys.key_slot(b"acme"))
    assert re.fullmatch(rb"app:_airbyte_meta:\{[0-9A-Za-z]{1,3}\}::n:keys", book(":n", k_n1))
    assert owned_by(two_syncs.after_second, "h", "f", "s", "n", "b", "c") == owned_by(
        two_syncs.after_first, "h", "f", "s", "n", "b", "c"
    )  # streams of the catalog without records in the second sync: untouched


@pytest.mark.core
def test_append_replaces_the_whole_value_and_cdc_deletes_key_and_book_entry(two_syncs: TwoSyncs) -> None:
    """append (hash_fields `a`): a later record with the same key replaces the whole value (no
    stale field: neither the record's old `y` nor one the application added). A CDC delete, in
    append too (`a`, and the string stream `ds`), deletes the key and its book entry."""
    assert owned_by(two_syncs.after_first, "a", "ds") == {
        b"app::a": b"2", b"app::ds": b"2",
        b"app:a:1": fields(1, 11, id="1", x="1", y="2"),
        b"app:a:2": fields(2, 12, id="2", x="b"),
        b"app:ds:1": b'{"id":1,"v":"s1"}',
        b"app:ds:2": b'{"id":2,"v":"s2"}',
        **books(":a", {b"app:a:1": 1, b"app:a:2": 2}),
        **books(":ds", {b"app:ds:1": 1, b"app:ds:2": 2}),
    }
    assert owned_by(two_syncs.after_second, "a", "ds") == {
        b"app::a": b"3", b"app::ds": b"2",  # a delete takes no id
        b"app:a:1": fields(3, 50, id="1", x="3"),
        b"app:ds:2": b'{"id":2,"v":"s2"}',
        **books(":a", {b"app:a:1": 3}),
        **books(":ds", {b"app:ds:2": 2}),
    }


@pytest.mark.core
def test_dedup_later_record_wins_and_cdc_deletes(two_syncs: TwoSyncs) -> None:
    """append_dedup (hash, primary key id): the later record of a sync wins; a CDC delete deletes
    the key and its entry (one of a key never written is harmless); `_ab_cdc_deleted_at: null`
    is an upsert. The states come out after their records, counted per stream."""
    assert owned_by(two_syncs.after_first, "d") == {
        b"app::d": b"3",
        b"app:d:1": seed(3, 15, '{"id":1,"v":"a2"}'),
        b"app:d:2": seed(2, 14, '{"id":2,"v":"b"}'),
        **books(":d", {b"app:d:1": 3, b"app:d:2": 2}),
    }
    assert owned_by(two_syncs.after_second, "d") == {
        b"app::d": b"4",
        b"app:d:1": seed(3, 15, '{"id":1,"v":"a2"}'),
        b"app:d:3": seed(4, 54, '{"id":3,"_ab_cdc_deleted_at":null}'),
        **books(":d", {b"app:d:1": 3, b"app:d:3": 4}),
    }
    assert states_of(two_syncs.first) == [{"c": 1}]
    assert states_of(two_syncs.second) == [{"c": 2}]
    assert two_syncs.second.states[0]["state"]["destinationStats"]["recordCount"] == 3.0  # d's


@pytest.mark.core
def test_legacy_overwrite_deletes_only_the_keys_the_stream_wrote(two_syncs: TwoSyncs) -> None:
    """overwrite without generation ids: every key the stream wrote is deleted up front, the
    application's look-alikes are not (`user:999`, even with an `_airbyte_ab_id`;
    `user:42:sessions`), nor a key the application rewrote after the connector wrote it (its id no
    longer matches: `user:7`, a hash without our id; `user:3`, now a string). `string` stores no
    id: its book is trusted (`lw:2`, rewritten by the application, goes; `lw:999` stays)."""
    assert set(owned_by(two_syncs.after_first, "user", "lw")) == {
        b"app::user", b"app::lw", b"app:user:1", b"app:user:2", b"app:user:3", b"app:user:7",
        b"app:lw:1", b"app:lw:2",
        *books(":user", {b"app:user:1": 1, b"app:user:2": 2, b"app:user:3": 3, b"app:user:7": 4}),
        *books(":lw", {b"app:lw:1": 1, b"app:lw:2": 2}),
    }
    logs = two_syncs.second.logs
    assert "Overwrite of stream 'user': deleted 2 existing records." in logs  # user:1 and user:2
    assert "Overwrite of stream 'lw': deleted 2 existing records." in logs
    assert owned_by(two_syncs.after_second, "user", "lw") == {
        **two_syncs.app_keys,
        b"app::user": b"2", b"app::lw": b"1",  # ids restart at 1
        b"app:user:2": seed(1, 60, '{"id":2,"v":"new"}'),
        b"app:user:5": seed(2, 61, '{"id":5}'),
        b"app:lw:3": b'{"id":3}',
        # user:3's and user:7's entries are gone with the old ones: the books hold the new keys only.
        **books(":user", {b"app:user:2": 1, b"app:user:5": 2}),
        **books(":lw", {b"app:lw:3": 1}),
    }


@pytest.mark.core
def test_refresh_aware_append_of_a_completed_generation_keeps_everything(two_syncs: TwoSyncs) -> None:
    """append with generation_id = minimum_generation_id = 1 on every run (as PyAirbyte sends it):
    the completed generation seen again is the same one, nothing it wrote goes; a record for an
    existing key replaces it."""
    assert owned_by(two_syncs.after_second, "g") == {
        b"app::g": b"4",
        b"app:g:1": seed(1, 40, '{"id":1}'),
        b"app:g:2": seed(3, 70, '{"id":2,"v":2}'),
        b"app:g:3": seed(4, 71, '{"id":3}'),
        **books(":g", {b"app:g:1": 1, b"app:g:2": 3, b"app:g:3": 4}),
    }
    assert not [line for line in two_syncs.second.logs if "older generations" in line]


# --- refreshes by generation, with failed attempts -----------------------------------------------


def _generation(
    server: RedisServer, generation: int, records: dict[str, list[int]], tail: list[str],
    overrides: list[dict[str, Any]],
) -> Run:
    """One attempt of a refresh of streams o (overwrite), a (append, minimum = generation) and
    d (append_dedup, minimum = generation): STARTED, the records {"id": i, "gen": generation}, `tail`."""
    catalog = [
        configured("o", "overwrite", generation=generation, minimum=generation),
        configured("a", "append", generation=generation, minimum=generation),
        configured("d", "append_dedup", [["id"]], generation=generation, minimum=generation),
    ]
    body = [status(name, "STARTED") for name in ("o", "a", "d")]
    body += [
        raw_record(name, f'{{"id":{i},"gen":{generation}}}')
        for name, values in records.items() for i in values
    ]
    return run_here(server, catalog, *body, *tail, key_prefix=PREFIX, streams=overrides)


def _ids_in_keys(client: redis.Redis) -> dict[str, list[int]]:
    """Per stream o, a, d: the ids in the names of its keys `app:<s>:<id>` (the application's
    look-alikes `app:<s>:999` left out)."""
    found: dict[str, list[int]] = {"o": [], "a": [], "d": []}
    for key in dump(client):
        name, _, rest = key.removeprefix(b"app:").decode().partition(":")
        if name in found and rest.isdigit() and rest != "999":
            found[name].append(int(rest))
    return {name: sorted(ids) for name, ids in found.items()}


@pytest.mark.core
def test_refresh_with_generation_ids_keeps_failed_attempts_and_removes_old_keys_on_completion(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """Generation 1 completes; generation 2's first attempt ends without the streams' COMPLETE,
    its second dies on a bad line: nothing is deleted. The third completes: exactly generation 2's
    keys remain (those of the failed attempts too), the application's look-alikes untouched. For
    overwrite (hash), and for append (hash_fields) and append_dedup (string) refreshed
    (minimum_generation_id = generation_id)."""
    overrides = [
        template("o", "o:{id}"),
        template("a", "a:{id}", cache_type="hash_fields"),
        template("d", "d:{id}", cache_type="string"),
    ]
    complete = [stream_state("o", {"c": 1}), *(status(name, "COMPLETE") for name in ("o", "a", "d"))]
    first = {"o": [1, 2, 3], "a": [1, 2], "d": [1, 2]}
    assert _generation(redis_server, 1, first, complete, overrides).error is None
    assert _ids_in_keys(redis_client) == first
    app_keys: Dump = {
        b"app:o:999": {b"_airbyte_ab_id": b"1", b"_airbyte_data": b"{}"},
        b"app:o:1:sessions": b"app",
        b"app:a:999": b"app",
        b"app:d:999": b"app",
    }
    put(redis_client, app_keys)

    # Attempt 1 of generation 2: statuses were sent, the streams' COMPLETE never came.
    attempt1 = _generation(
        redis_server, 2, {"o": [1, 4], "a": [3], "d": [2]}, [stream_state("o", {"c": 2})], overrides
    )
    assert attempt1.error is None, attempt1.error.message
    assert states_of(attempt1) == [{"c": 2}]
    assert not [line for line in attempt1.logs if "older generations" in line]
    assert _ids_in_keys(redis_client) == {"o": [1, 2, 3, 4], "a": [1, 2, 3], "d": [1, 2]}

    # Attempt 2 dies on a bad line after one more record: still nothing deleted.
    attempt2 = _generation(redis_server, 2, {"o": [5]}, ["this is not json"], overrides)
    refused_here(attempt2, "Input line 5 is not a valid Airbyte message")
    assert _ids_in_keys(redis_client) == {"o": [1, 2, 3, 4, 5], "a": [1, 2, 3], "d": [1, 2]}

    # Attempt 3 completes: generation 1's keys go, the failed attempts' keys stay.
    attempt3 = _generation(redis_server, 2, {"o": [6], "a": [4], "d": [3]}, complete, overrides)
    assert attempt3.error is None, attempt3.error.message
    for name, deleted in (("o", 2), ("a", 2), ("d", 1)):
        line = f"Stream '{name}' completed generation 2: deleted {deleted} records of older generations."
        assert line in attempt3.logs, attempt3.logs
    # Ids per stream: generation 1 took o 1-3, a 1-2, d 1-2; generation 2 starts after them:
    # attempt 1 wrote o:1 (4), o:4 (5), a:3 (3), d:2 (3); attempt 2 o:5 (6); attempt 3 o:6 (7), a:4, d:3 (4).
    assert dump(redis_client) == {
        **app_keys,
        b"app::o": b"7", b"app::a": b"4", b"app::d": b"4",
        b"app:o:1": seed(4, 0, '{"id":1,"gen":2}'),
        b"app:o:4": seed(5, 0, '{"id":4,"gen":2}'),
        b"app:o:5": seed(6, 0, '{"id":5,"gen":2}'),
        b"app:o:6": seed(7, 0, '{"id":6,"gen":2}'),
        b"app:a:3": fields(3, 0, id="3", gen="2"),
        b"app:a:4": fields(4, 0, id="4", gen="2"),
        b"app:d:2": b'{"id":2,"gen":2}',
        b"app:d:3": b'{"id":3,"gen":2}',
        **books(":o", {b"app:o:1": 4, b"app:o:4": 5, b"app:o:5": 6, b"app:o:6": 7}),
        **books(":a", {b"app:a:3": 3, b"app:a:4": 4}),
        **books(":d", {b"app:d:2": 3, b"app:d:3": 4}),
    }


# --- json ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def json_server() -> Iterator[RedisServer]:
    """Debian's redis-server 7.0 with the RedisJSON module loaded (as in test_cache_types.py)."""
    server = RedisServer(args=["--loadmodule", str(rejson_path())]).start()
    yield server
    server.stop()


def test_json_layout_byte_for_byte_and_legacy_overwrite_checks_ids(
    json_server: RedisServer, tmp_path: Path
) -> None:
    """json (RedisJSON loaded): the document with our fields at `user:<id>`, and the book; an
    overwrite without generation ids deletes the keys the stream wrote, except one the application
    rewrote (its `_airbyte_ab_id`, read with JSON.GET, no longer matches) and look-alikes."""
    with json_server.flushed_client() as client:
        overrides = [template("users", "user:{id}", cache_type="json")]
        catalog = [configured("users", "overwrite")]
        sync(
            json_server, tmp_path, catalog,
            raw_record("users", '{"id":1,"name":"Zoë","n":1.5,"t":true}', 1),
            raw_record("users", '{"id":"a:b","_airbyte_ab_id":"theirs"}', 2),
            raw_record("users", '{"id":7}', 3),
            key_prefix=PREFIX, streams=overrides,
        )
        assert dump(client) == {
            b"app::users": b"3",
            b"app:user:1": (
                '{"id":1,"name":"Zoë","n":1.5,"t":true,"_airbyte_ab_id":1,"_airbyte_emitted_at":1700000000001}'
            ).encode(),
            b"app:user:a:b": b'{"id":"a:b","_airbyte_ab_id":2,"_airbyte_emitted_at":1700000000002}',
            b"app:user:7": b'{"id":7,"_airbyte_ab_id":3,"_airbyte_emitted_at":1700000000003}',
            **books(":users", {b"app:user:1": 1, b"app:user:a:b": 2, b"app:user:7": 3}),
        }
        client.execute_command("JSON.SET", "app:user:7", "$", '{"id":7,"by":"app","_airbyte_ab_id":99}')
        client.execute_command("JSON.SET", "app:user:999", "$", '{"by":"app"}')
        result = sync(
            json_server, tmp_path, catalog, raw_record("users", '{"id":2}', 4),
            key_prefix=PREFIX, streams=overrides,
        )
        assert "Overwrite of stream 'users': deleted 2 existing records." in result.stdout
        assert dump(client) == {
            b"app::users": b"1",  # ids restart at 1 after a legacy overwrite
            b"app:user:2": b'{"id":2,"_airbyte_ab_id":1,"_airbyte_emitted_at":1700000000004}',
            b"app:user:7": b'{"id":7,"by":"app","_airbyte_ab_id":99}',
            b"app:user:999": b'{"by":"app"}',
            **books(":users", {b"app:user:2": 1}),
        }


# --- check ---------------------------------------------------------------------------------------


def check(server: RedisServer, tmp_path: Path, **config: Any) -> dict[str, Any]:
    """`check` on the command line: its CONNECTION_STATUS."""
    result = run_connector(["check", "--config", "{config}"], tmp_path, config=server.config(**config))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    return result.connection_status


def check_status(server: RedisServer, **config: Any) -> tuple[str, str]:
    """(status, message) of `check` in this process, as the CLI answers it: an invalid config is
    FAILED with the parsing error's message."""
    try:
        return check_here(server.config(**config))
    except ConnectorError as exc:
        return "FAILED", exc.message


@pytest.mark.core
def test_check_succeeds_and_shows_each_templated_streams_key_shape(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """`check` probes what templates (ZADD ... into a key book) and expiry from the data (PERSIST,
    PEXPIRE, PEXPIREAT) send, on this server; says what keys look like; leaves nothing behind."""
    redis_client.set(b"app:user:1", b"the app's")
    state, message = check_status(
        redis_server, key_prefix=PREFIX, expire_at_field="exp",
        streams=[
            template("users", "user:{id}", ttl_field="ttl"),
            template("orders", "o:{{{tenant}}}:{order.id}", namespace="shop", cache_type="hash_fields"),
        ],
    )
    assert state == "SUCCEEDED", message
    assert message.endswith(
        " Key templates: users: user:{id} -> app:user:<id>; shop.orders: o:{{{tenant}}}:{order.id} -> "
        "app:o:{<tenant>}:<order.id>. Keys expire from the data: expire_at_field 'exp', ttl_field 'ttl' "
        "(users)."
    ), message
    assert dump(redis_client, generations=True) == {b"app:user:1": b"the app's"}


def test_check_on_the_command_line_shows_the_key_shape(redis_server: RedisServer, tmp_path: Path) -> None:
    result = check(redis_server, tmp_path, key_prefix=PREFIX, streams=[template("users", "user:{id}")])
    assert result["status"] == "SUCCEEDED", result
    assert result["message"].endswith(" Key templates: users: user:{id} -> app:user:<id>."), result


# --- refusals of the config: check and write, before anything is written -------------------------


SYNTAX = [
    ("user:{id", "key_template 'user:{id' has an unbalanced brace: '{' at position 5 is never closed"),
    ("user:}{id}", "key_template 'user:}{id}' has an unbalanced brace: '}' at position 5 has no opening"),
    ("u:{a{b}}", "'{' at position 4 is inside the placeholder opened at position 2"),
    ("user:", "key_template 'user:' has no placeholder: every record would get the same key"),
    ("user:{{id}}", "key_template 'user:{{id}}' has no placeholder ('{{' and '}}' are literal braces)"),
    ("user:{}", "key_template 'user:{}' has an empty placeholder '{}' at position 5"),
    ("u:{a..b}", "an empty path segment: the placeholder '{a..b}' at position 2 has '..'"),
]


def test_template_syntax_is_refused_by_check_and_write_on_the_command_line(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    text, expected = SYNTAX[0]
    overrides = [template("users", text)]
    result = check(redis_server, tmp_path, streams=overrides)
    assert result["status"] == "FAILED", result
    assert f"Invalid configuration: streams.0.key_template: {expected}" in result["message"], result
    written = run_write(
        redis_server, tmp_path, [configured("users", "append")], raw_record("users", '{"id":1}'),
        streams=overrides,
    )
    refused(written, "Invalid configuration: streams.0.key_template", expected)
    assert redis_client.dbsize() == 0


@pytest.mark.parametrize(("text", "expected"), SYNTAX, ids=[text for text, _ in SYNTAX])
def test_template_syntax_is_refused(
    text: str, expected: str, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    overrides = [template("users", text)]
    state, message = check_status(redis_server, streams=overrides)
    assert state == "FAILED"
    assert "Invalid configuration: streams.0.key_template" in message
    assert expected in message, message
    run = run_here(
        redis_server, [configured("users", "append")], raw_record("users", '{"id":1}'), streams=overrides
    )
    refused_here(run, expected)
    assert run.states == []
    assert redis_client.dbsize() == 0


def test_collision_of_two_templates_is_refused_naming_both_streams(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Two entries whose templates can render the same key: check and write refuse, naming both;
    write before writing anything."""
    redis_client.set(b"app:user:1", b"the app's")
    before = dump(redis_client, generations=True)
    overrides = [template("users", "user:{id}"), template("admins", "user:{org}:{id}", namespace="corp")]
    expected = (
        "Streams 'users' (every namespace) and 'corp.admins' have key templates that can render the "
        "same key ('app:user:<id>' and 'app:user:<org>:<id>'): the records of one would replace the "
        "other's."
    )
    result = check(redis_server, tmp_path, key_prefix=PREFIX, streams=overrides)
    assert result["status"] == "FAILED", result
    assert expected in result["message"], result
    catalog = [configured("users", "append"), configured("admins", "append", namespace="corp")]
    written = run_write(
        redis_server, tmp_path, catalog, raw_record("users", '{"id":1}'), stream_state("users", {"c": 1}),
        key_prefix=PREFIX, streams=overrides,
    )
    refused(written, expected)
    assert written.states == []
    assert dump(redis_client, generations=True) == before

    # Same text, each a placeholder the other's literal could fill: `u:{a}` and `{b}:x`.
    state, message = check_status(
        redis_server, streams=[template("one", "u:{a}"), template("two", "{b}:x", namespace="")]
    )
    assert state == "FAILED"
    assert (
        "Streams 'one' (every namespace) and 'two' have key templates that can render the same key" in message
    ), message
    # Templates apart by their literal text are fine.
    fine = [template("users", "user:{id}"), template("admins", "admin:{id}")]
    assert check_status(redis_server, key_prefix=PREFIX, streams=fine)[0] == "SUCCEEDED"


def test_one_entry_for_two_namespaces_collides_in_write(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """An entry without a namespace applies to the stream in every namespace: check (one entry)
    cannot see a collision; write, whose catalog has shop.users and crm.users, refuses naming both."""
    overrides = [template("users", "user:{id}")]
    assert check_status(redis_server, streams=overrides)[0] == "SUCCEEDED"
    catalog = [
        configured("users", "append", namespace="shop"), configured("users", "append", namespace="crm")
    ]
    written = run_write(
        redis_server, tmp_path, catalog, raw_record("users", '{"id":1}', namespace="shop"), streams=overrides
    )
    refused(
        written,
        "Streams 'shop.users' and 'crm.users' have the same key_template that can render the same key "
        "('user:<id>' and 'user:<id>')",
    )
    assert redis_client.dbsize() == 0


CONFIG_REFUSALS: list[tuple[dict[str, Any], str]] = [
    (
        {"streams": [template("events", "e:{id}", cache_type="list")]},
        "The `streams` entry of 'events': key_template cannot be used with cache_type 'list', whose "
        "records are members of one key.",
    ),
    (
        {"cache_type": "sorted_set", "streams": [template("events", "e:{id}")]},
        "The `streams` entry of 'events': key_template cannot be used with cache_type 'sorted_set'",
    ),
    (
        {"streams": [{"name": "events", "cache_type": "set", "ttl_field": "ttl", "expire_at_field": "x"}]},
        "The `streams` entry of 'events': expire_at_field and ttl_field cannot be used with cache_type 'set'",
    ),
    (
        {"cache_type": "stream", "expire_at_field": "exp"},
        "The top-level settings: expire_at_field cannot be used with cache_type 'stream'",
    ),
    (
        {"key_prefix": "a{", "streams": [template("events", "e:{id}")]},
        "key_prefix 'a{' has a '{' that opens no hash tag within the prefix",
    ),
    (
        {"key_prefix": "{}:", "streams": [template("events", "e:{id}")]},
        "key_prefix '{}:' has a '{' that opens no hash tag within the prefix",
    ),
]
CONFIG_REFUSAL_IDS = [
    "list", "top-level-sorted_set", "set-expiry-fields", "top-level-expiry", "prefix-a{", "prefix-{}"
]


def test_config_refusal_on_the_command_line(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    config, expected = CONFIG_REFUSALS[0]
    redis_client.set(b"unrelated", b"1")
    result = check(redis_server, tmp_path, **config)
    assert result["status"] == "FAILED", result
    assert expected in result["message"], result
    written = run_write(
        redis_server, tmp_path, [configured("events", "append")],
        raw_record("events", '{"id":1}'), stream_state("events", {"c": 1}), **config,
    )
    refused(written, expected)
    assert written.states == []
    assert dump(redis_client, generations=True) == {b"unrelated": b"1"}


@pytest.mark.parametrize(("config", "expected"), CONFIG_REFUSALS, ids=CONFIG_REFUSAL_IDS)
def test_config_refusals_in_check_and_write_before_anything_is_written(
    config: dict[str, Any], expected: str, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    redis_client.set(b"unrelated", b"1")
    state, message = check_status(redis_server, **config)
    assert state == "FAILED"
    assert expected in message, message
    run = run_here(
        redis_server, [configured("events", "append")],
        raw_record("events", '{"id":1,"ttl":5,"x":1,"exp":1}'), stream_state("events", {"c": 1}), **config,
    )
    refused_here(run, expected)
    assert run.states == []
    assert dump(redis_client, generations=True) == {b"unrelated": b"1"}


def test_template_on_a_stream_a_collection_entry_covers_is_refused_by_write(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """One entry makes `events` a list in every namespace, another gives shop.events a template:
    the stream's settings combine both; write refuses before writing."""
    config: dict[str, Any] = {
        "streams": [{"name": "events", "cache_type": "list"}, template("events", "e:{id}", namespace="shop")]
    }
    run = run_here(
        redis_server, [configured("events", "append", namespace="shop")],
        raw_record("events", '{"id":1}', namespace="shop"), **config,
    )
    refused_here(run, "Stream 'shop.events': key_template cannot be used with cache_type 'list'")
    assert run.states == []
    assert redis_client.dbsize() == 0


def test_expiry_field_on_a_stream_a_collection_entry_covers_is_refused_by_write(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """As above, with the namespace's entry naming a ttl_field instead of a template: the stream is
    a list with a ttl_field, which a list cannot honour (no key per record); it must be refused like
    the template is, not synced with the field silently ignored."""
    config: dict[str, Any] = {
        "streams": [
            {"name": "events", "cache_type": "list"},
            {"name": "events", "namespace": "shop", "ttl_field": "ttl"},
        ]
    }
    run = run_here(
        redis_server, [configured("events", "append", namespace="shop")],
        raw_record("events", '{"id":1,"ttl":5}', namespace="shop"), **config,
    )
    assert run.error is not None, f"written without a refusal: {dump(redis_client, generations=True)}"
    refused_here(run, "Stream 'shop.events': ttl_field cannot be used with cache_type 'list'")
    assert run.states == []
    assert redis_client.dbsize() == 0


@pytest.mark.parametrize(
    ("namespace", "text", "expected"),
    [
        ("shop", "shop:{x}", "its key_template 'shop:{x}' can render 'app:shop:orders', the id counter of "
                             "stream 'shop.orders'"),
        ("shop", "shop:orders:{id}",
         "can render 'app:shop:orders:<id>', the record keys of stream 'shop.orders'"),
        ("tpl", "tpl:{x}", "can render 'app:tpl:tpl', the id counter of its own stream"),
    ],
)
def test_template_that_can_render_the_connectors_own_keys_is_refused_by_write(
    redis_server: RedisServer, redis_client: redis.Redis, namespace: str, text: str, expected: str
) -> None:
    """A template starting with literal text that could write over another stream's id counter or
    record keys, or over its own stream's counter: refused before anything is written."""
    redis_client.set("unrelated", "1")
    catalog = [
        configured("orders", "append", namespace="shop"), configured("tpl", "append", namespace=namespace)
    ]
    run = run_here(
        redis_server, catalog, raw_record("tpl", '{"x":"tpl","id":1}', namespace=namespace),
        key_prefix=PREFIX, streams=[template("tpl", text)],
    )
    refused_here(run, f"Stream '{namespace}.tpl'", expected)
    assert run.states == []
    assert dump(redis_client, generations=True) == {b"unrelated": b"1"}


def test_template_starting_with_a_placeholder_is_not_refused_for_the_layouts_it_could_meet(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """`{id}` could render any key at all; keys that are bare ids are a layout users choose on
    purpose (a database of their own), so it is not refused beside other streams."""
    catalog = [configured("orders", "append", namespace="shop"), configured("tokens", "append")]
    run = sync_here(
        redis_server, catalog,
        raw_record("tokens", '{"id":"t-1"}'), raw_record("orders", '{"n":1}', namespace="shop"),
        key_prefix=PREFIX, streams=[template("tokens", "{id}")],
    )
    assert run.error is None
    assert redis_client.exists("app:t-1") == 1
    assert redis_client.exists("app:shop:orders:1") == 1


def test_top_level_expiry_fields_do_not_apply_to_a_collection_stream(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """A top-level expire_at_field serves the per-record streams; a stream made a list by its own
    entry is synced as a list without it (not refused): only a stream's own entry naming an expiry
    field on a collection is refused."""
    catalog = [configured("events", "append"), configured("users", "append")]
    sync_here(
        redis_server, catalog, raw_record("events", '{"id":1,"exp":4102444800}'),
        raw_record("users", '{"id":1,"exp":4102444800}'),
        key_prefix=PREFIX, expire_at_field="exp", streams=[{"name": "events", "cache_type": "list"}],
    )
    assert redis_client.lrange("app::events", 0, -1) == [b'{"id":1,"exp":4102444800}']
    assert redis_client.pttl("app::events") == -1
    assert redis_client.pttl("app::users:1") > 10**12


def test_key_prefix_with_a_whole_hash_tag_is_accepted(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """`{app}:` puts every key of the stream, its book included, in the slot of "app"."""
    overrides = [template("users", "user:{id}")]
    assert check_status(redis_server, key_prefix="{app}:", streams=overrides)[0] == "SUCCEEDED"
    sync(
        redis_server, tmp_path, [configured("users", "append")], raw_record("users", '{"id":1}', 1),
        key_prefix="{app}:", streams=overrides,
    )
    assert dump(redis_client) == {
        b"{app}::users": b"1",
        b"{app}:user:1": seed(1, 1, '{"id":1}'),
        keys.owned_keys_book(b":users", "{app}:", keys.key_slot(b"app")): [(b"{app}:user:1", 1.0)],
    }


SCHEMA_REFUSALS: list[tuple[dict[str, Any], str, str]] = [
    ({"type": "object", "properties": {"id": {}, "name": {}}}, "user:{uid}", "uid"),
    (
        {
            "type": "object",
            "properties": {"id": {}, "address": {"type": "object", "properties": {"city": {}}}},
        },
        "user:{id}:{address.zip}",
        "address.zip",
    ),
]


def test_placeholder_the_schema_does_not_list_is_refused_by_write(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """The catalog's json_schema lists the stream's properties and not the placeholder's: write
    refuses before writing (check, without the catalog, succeeds). A nested path too (in process)."""
    for number, (schema, text, missing) in enumerate(SCHEMA_REFUSALS):
        overrides = [template("users", text)]
        assert check_status(redis_server, streams=overrides)[0] == "SUCCEEDED"
        expected = (
            f"Stream 'users': the key_template '{text}' needs '{missing}', which the stream's schema does "
            "not list, so no record would have a key."
        )
        catalog = [with_schema("users", "append", schema)]
        record = raw_record("users", '{"id":1,"uid":1,"address":{"zip":1}}')
        if number == 0:
            refused(run_write(redis_server, tmp_path, catalog, record, streams=overrides), expected)
        else:
            refused_here(run_here(redis_server, catalog, record, streams=overrides), expected)
        assert redis_client.dbsize() == 0


def test_placeholder_under_a_schema_open_to_more_properties_is_accepted(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """additionalProperties, or an object without a `properties` list: the path may exist."""
    schema = {
        "type": "object", "properties": {"id": {}, "meta": {"type": "object"}}, "additionalProperties": True
    }
    sync_here(
        redis_server, [with_schema("users", "append", schema)],
        raw_record("users", '{"uid":5,"meta":{"org":"x"}}', 1),
        streams=[template("users", "user:{uid}:{meta.org}")],
    )
    assert dump(redis_client) == {
        b":users": b"1",
        b"user:5:x": seed(1, 1, '{"uid":5,"meta":{"org":"x"}}'),
        **books(":users", {b"user:5:x": 1}, prefix=""),
    }


# --- refusals per record: the line named, what came before it written ----------------------------


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ('{"v":3}', "needs 'id', which is missing or null in this record"),
        ('{"id":null,"v":3}', "needs 'id', which is missing or null in this record"),
        ('{"id":{"a":1},"v":3}', "needs 'id', which is an object in this record"),
        ('{"id":[1],"v":3}', "needs 'id', which is an array in this record"),
        ('{"id":3,"org":{"name":"x"}}', "needs 'org.id', which is missing or null in this record"),
        ('{"id":3,"org":"flat"}', "needs 'org.id', which is missing or null in this record"),
    ],
    ids=["missing", "null", "object", "array", "nested-missing", "nested-not-an-object"],
)
def test_record_without_a_key_value_names_its_line(
    data: str, problem: str, redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Records before the bad line are written and their states emitted; exit 1, config_error."""
    text = "u:{id}" if "org" not in data else "u:{id}:{org.id}"
    result = run_write(
        redis_server, tmp_path, [configured("users", "append")],
        raw_record("users", '{"id":1,"org":{"id":"o"}}', 1),
        stream_state("users", {"c": 1}),
        raw_record("users", '{"id":2,"org":{"id":"o"}}', 2),
        raw_record("users", data, 3),
        raw_record("users", '{"id":4,"org":{"id":"o"}}', 4),
        stream_state("users", {"c": 4}),
        key_prefix=PREFIX, streams=[template("users", text)],
    )
    message = refused(
        result,
        f"Input line 4: the key_template '{text}' of stream 'users' {problem}.",
        "Everything before it was written and its states emitted.",
    )
    assert message.startswith("Input line 4:"), message
    assert states_of(result) == [{"c": 1}]
    suffix = b"" if "org" not in data else b":o"
    assert dump(redis_client) == {
        b"app::users": b"2",
        b"app:u:1" + suffix: seed(1, 1, '{"id":1,"org":{"id":"o"}}'),
        b"app:u:2" + suffix: seed(2, 2, '{"id":2,"org":{"id":"o"}}'),
        **books(":users", {b"app:u:1" + suffix: 1, b"app:u:2" + suffix: 2}),
    }


def test_empty_rendered_key_names_its_line(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """`{id}` without a key_prefix and an empty string id: no key to write."""
    result = run_write(
        redis_server, tmp_path, [configured("users", "append_dedup", [["id"]])],
        raw_record("users", '{"id":"a"}', 1),
        stream_state("users", {"c": 1}),
        raw_record("users", '{"id":""}', 2),
        streams=[template("users", "{id}")],
    )
    refused(
        result,
        "Input line 3: the key_template '{id}' of stream 'users' renders an empty key for this record.",
    )
    assert states_of(result) == [{"c": 1}]
    assert dump(redis_client) == {
        b":users": b"1",
        b"a": seed(1, 1, '{"id":"a"}'),
        **books(":users", {b"a": 1}, prefix=""),
    }


# --- big key books: read and cleaned up page by page ---------------------------------------------


def test_a_book_of_thousands_of_keys_is_cleaned_up_page_by_page(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """key_prefix `{t}:` puts every key, and so every entry, in one slot's book: 2,500 keys of
    generation 1, then generation 2 with 3 records. The cleanup reads the book in pages (by score,
    as it deletes) and leaves exactly generation 2's keys and entries; an application key stays."""
    prefix = "{t}:"
    redis_client.set("{t}:u:app", "1")
    first = [configured("u", "overwrite", generation=1, minimum=1)]
    sync_here(redis_server, first, *(raw_record("u", f'{{"id":{i}}}') for i in range(2500)),
              key_prefix=prefix, streams=[template("u", "u:{id}")])
    assert redis_client.zcard(book(":u", b"{t}:u:1", prefix)) == 2500
    second = [configured("u", "overwrite", generation=2, minimum=2)]
    run = sync_here(redis_server, second, *(raw_record("u", f'{{"id":{i}}}') for i in (7, 5000, 5001)),
                    key_prefix=prefix, streams=[template("u", "u:{id}")])
    assert any("deleted 2499 records of older generations" in line for line in run.logs), run.logs
    keys_left = {k for k in redis_client.keys("{t}:u:*") if isinstance(k, bytes)}
    assert keys_left == {b"{t}:u:7", b"{t}:u:5000", b"{t}:u:5001", b"{t}:u:app"}
    entries = redis_client.zrange(book(":u", b"{t}:u:1", prefix), 0, -1)
    assert entries == [b"{t}:u:7", b"{t}:u:5000", b"{t}:u:5001"]


def test_expired_keys_are_forgotten_page_by_page(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """1,500 records whose ttl_field removes their key at once (0 s) and 2 that live: when the
    stream completes, its one book forgets the 1,500 and keeps the 2."""
    prefix = "{e}:"
    records = [raw_record("e", f'{{"id":{i},"ttl":0}}') for i in range(1500)]
    records += [raw_record("e", f'{{"id":{i},"ttl":3600}}') for i in (9000, 9001)]
    run = sync_here(redis_server, [configured("e", "append")], *records,
                    key_prefix=prefix, streams=[template("e", "e:{id}", ttl_field="ttl")])
    assert any("forgot 1500 recorded keys that have expired" in line for line in run.logs), run.logs
    entries = redis_client.zrange(book(":e", b"{e}:e:1", prefix), 0, -1)
    assert entries == [b"{e}:e:9000", b"{e}:e:9001"]
