"""Key templates on the topologies, and when things go wrong: a real Redis Cluster, Sentinel, a
lost reply, a killed connector.

A templated stream writes each record at the key its template renders (`user:{id}` ->
`app:user:42`) and records that key in its key book: a sorted set per hash slot used,
`app:_airbyte_meta:{<tag>}:<ns>:<stream>:keys`, in the key's own slot (member the key, score the
id of the record last written to it), in the same MULTI .. EXEC as the write. What every test here
checks, from what the servers hold (SCAN of each primary, not the connector's word):

- the books are exactly the stream's keys: every key of the template's shape the stream wrote
  has one entry, in the book of its own slot, scored with the id the key holds; no entry names a
  key that is gone; the application's keys of the same shape are in no book;
- an overwrite or refresh deletes exactly the keys of older generations that still hold what
  we wrote, on every primary, and nothing of the application's;
- a lost reply (integration_tests/proxy.py) or a killed connector never leaves a key written
  but not recorded, nor a record written twice under two ids.

Cluster and Sentinel are the session's (`redis_cluster`, `sentinel_group`): emptied before each
test by the fixtures, and again after it here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
import redis
import redis.cluster

from destination_redis import keys
from integration_tests.cli import Result, lines, record, run_connector, stream_state
from integration_tests.cluster import RedisCluster
from integration_tests.proxy import ReplyDroppingProxy
from integration_tests.sentinel import SentinelGroup
from integration_tests.servers import RedisServer
from integration_tests.test_cli_write import _read_until_state, _script
from integration_tests.test_cluster import assert_on_their_primaries, spread_keys
from integration_tests.test_sync_modes import configured, status
from integration_tests.topology import Address, text

WRITE_ARGS = ["write", "--config", "{config}", "--catalog", "{catalog}"]
PREFIX = "app:"
EMITTED = 1_700_000_000_000
F_ID = "_airbyte_ab_id"

Config = dict[str, Any]
NodeClients = dict[Address, redis.Redis]


# --- fixtures: the shared topologies, emptied before and after ------------------------------------


@pytest.fixture
def primaries(
    redis_cluster: RedisCluster, cluster_client: redis.cluster.RedisCluster
) -> Iterator[NodeClients]:
    """A direct client to each primary of the emptied session cluster; emptied again afterwards."""
    with ExitStack() as stack:
        clients = {
            address: stack.enter_context(redis_cluster.node_client(address))
            for address in redis_cluster.primaries()
        }
        try:
            yield clients
        finally:
            redis_cluster.flushall()


@pytest.fixture
def master(sentinel_group: SentinelGroup) -> Iterator[redis.Redis]:
    """A client to the Sentinel group's current master, emptied (with the replica) before and after."""
    client = sentinel_group.master_client()
    client.flushall()
    assert client.wait(1, 10_000) == 1, "the replica did not follow FLUSHALL"
    try:
        yield client
    finally:
        client.flushall()
        client.close()


# --- what the servers hold ------------------------------------------------------------------------


def book_match(stream: str, namespace: str = "", prefix: str = PREFIX) -> str:
    """SCAN MATCH for every key book of a stream (`{` and `}` are no glob characters)."""
    return f"{prefix}_airbyte_meta:{{*}}:{namespace}:{stream}:keys"


@dataclass
class Held:
    """A stream's keys of the template's shape and its books, as SCAN found them on each node."""

    ids: dict[bytes, int | None]  # key -> the id it holds (_airbyte_ab_id; None: none, or no hash)
    books: dict[bytes, dict[bytes, int]]  # book -> {key: score}
    node: dict[bytes, Address]  # each key and book -> the node whose SCAN returned it

    @property
    def entries(self) -> dict[bytes, int]:
        """Every book's entries together (a key in two books fails)."""
        union: dict[bytes, int] = {}
        for book, members in self.books.items():
            for key, score in members.items():
                assert key not in union, f"{key!r} is recorded in two books, the other beside {book!r}"
                union[key] = score
        return union


def held(nodes: NodeClients, key_match: str, stream: str, namespace: str = "", prefix: str = PREFIX) -> Held:
    """SCAN each node for `key_match` and the stream's books; read ids and entries pipelined."""
    found = Held({}, {}, {})
    for address, client in nodes.items():
        record_keys = list(client.scan_iter(match=key_match, count=1000))
        books = list(client.scan_iter(match=book_match(stream, namespace, prefix), count=1000))
        for key in [*record_keys, *books]:
            assert key not in found.node, f"{key!r} is on {found.node[key]} and on {address}"
            found.node[key] = address
        pipe = client.pipeline(transaction=False)
        for key in record_keys:
            pipe.hget(key, F_ID)
        for book in books:
            pipe.zrange(book, 0, -1, withscores=True)
        replies = pipe.execute(raise_on_error=False)
        for key, reply in zip(record_keys, replies[: len(record_keys)], strict=True):
            found.ids[key] = int(reply) if isinstance(reply, bytes) and reply.isdigit() else None
        for book, reply in zip(books, replies[len(record_keys) :], strict=True):
            found.books[book] = {member: int(score) for member, score in reply}
    return found


def assert_books_match_keys(
    found: Held, stream: str, expected: set[bytes], others: Iterable[bytes] = (), namespace: str = "",
    prefix: str = PREFIX,
) -> dict[bytes, int]:
    """The stream's keys are exactly `expected` (besides the application's `others`), each
    recorded once, in the book of its own hash slot, scored with the id it holds. Returns the
    entries (key -> id)."""
    others = set(others)
    assert not expected & others
    missing, extra = expected - set(found.ids), set(found.ids) - expected - others
    assert not missing, f"{len(missing)} keys missing, e.g. {sorted(missing)[:3]}"
    assert not extra, f"{len(extra)} keys not expected, e.g. {sorted(extra)[:3]}"
    entries = found.entries
    unrecorded, stale = expected - set(entries), set(entries) - expected
    assert not unrecorded, f"{len(unrecorded)} keys written but in no book, e.g. {sorted(unrecorded)[:3]}"
    assert not stale, f"{len(stale)} book entries for keys not the stream's, e.g. {sorted(stale)[:3]}"
    stream_key = keys.stream_key(namespace, stream)
    for book, members in found.books.items():
        assert members, f"an empty book {book!r}"  # (Redis removes an emptied sorted set)
        for key in members:
            slot = keys.key_slot(key)
            assert keys.key_slot(book) == slot, f"{key!r} (slot {slot}) recorded in {book!r}"
            assert book == keys.owned_keys_book(stream_key, prefix, slot), book
            assert found.node[book] == found.node[key], (book, key)
    wrong = {key: (found.ids[key], entries[key]) for key in expected if found.ids[key] != entries[key]}
    assert not wrong, f"{len(wrong)} keys hold another id than their entry (held, recorded): {wrong}"
    return entries


def stored_fields(client: redis.Redis | redis.cluster.RedisCluster, key: bytes) -> dict[str, str]:
    return {text(field): text(value) for field, value in client.hgetall(key).items()}


def logs(result: Result) -> list[str]:
    return [str(m["log"]["message"]) for m in result.of_type("LOG")]


def assert_ok(result: Result) -> None:
    output = result.stdout[-4000:] + result.stderr[-4000:]
    assert result.returncode == 0, output
    assert result.errors == [], result.errors
    assert "Traceback" not in result.stdout + result.stderr, output


def write(config: Config, tmp_path: Path, streams: list[dict[str, Any]], messages: Iterable[str]) -> Result:
    return run_connector(WRITE_ARGS, tmp_path, config=config, catalog={"streams": streams},
                         stdin=lines(*messages))


def user_key(n: int | str) -> bytes:
    return f"{PREFIX}user:{n}".encode()


def hash_fields_of(data: dict[str, Any], record_id: int) -> dict[str, str]:
    """What hash_fields stores: a string property as its text, any other as its JSON."""
    fields = {name: value if isinstance(value, str) else json.dumps(value) for name, value in data.items()}
    return {**fields, F_ID: str(record_id), "_airbyte_emitted_at": str(EMITTED)}


def user(n: int | str, **extra: Any) -> dict[str, Any]:
    return {"id": n, "name": f"user {n}", **extra}


def users_config(cache_type: str = "hash_fields", **more: Any) -> dict[str, Any]:
    """The config fields of a `users` stream written at `app:user:<id>`."""
    return {"key_prefix": PREFIX, "cache_type": cache_type,
            "streams": [{"name": "users", "key_template": "user:{id}"}], **more}


def meta(client: redis.Redis | redis.cluster.RedisCluster, stream: str) -> dict[str, str]:
    key = keys.meta_key(keys.stream_key("", stream), PREFIX)
    return {text(field): text(value) for field, value in client.hgetall(key).items()}


# --- Redis Cluster --------------------------------------------------------------------------------


def test_templated_keys_spread_over_every_primary_with_their_book_entries_in_their_own_slots(
    redis_cluster: RedisCluster, cluster_client: redis.cluster.RedisCluster, primaries: NodeClients,
    tmp_path: Path,
) -> None:
    """Three templated streams on a 3-primary cluster, one per cache type: `users` (hash_fields,
    `user:{id}`, keys over every primary), `members` (hash, `t:{{{tenant}}}:m:{id}`: the literal
    braces make the tenant a hash tag, so each tenant's keys and their one book share a slot) and
    `tokens` (string, `tok:{id}`, with a TTL). Every key lives on the primary of its slot, once;
    its book entry is in the same slot and names the id the key holds, also where braces in the
    record's value make a hash tag of the key (a MULTI across slots would fail: CROSSSLOT); the
    servers agree on the slots; only the record keys expire, never a book."""
    config = redis_cluster.config(key_prefix=PREFIX, cache_type="hash", streams=[
        {"name": "users", "cache_type": "hash_fields", "key_template": "user:{id}"},
        {"name": "members", "key_template": "t:{{{tenant}}}:m:{id}"},
        {"name": "tokens", "cache_type": "string", "key_template": "tok:{id}", "ttl_seconds": 600},
    ])
    # ids 0..239, and ids whose braces make a hash tag of the key (`{t1}`), or do not (`{}`, ...)
    user_ids: list[int | str] = [*range(240), "x{t1}y", "{}z", "a{", "b}", "{t2", "}{t3}"]
    users = [user(n) for n in user_ids]
    # A tenant on each primary: the tag's slot is the slot of the tenant's name as a key.
    tenants = spread_keys(redis_cluster, lambda n: f"tenant{n}", per_primary=1)
    member_records = [{"tenant": tenant, "id": n, "role": "admin" if n % 7 == 0 else "member"}
                      for n in range(30) for tenant in tenants]
    tokens = [{"id": f"t-{n}", "scope": "read"} for n in range(30)]
    messages = [
        *(record("users", data) for data in users), stream_state("users", {"page": 1}),
        *(record("members", data) for data in member_records), stream_state("members", {"page": 1}),
        *(record("tokens", data) for data in tokens), stream_state("tokens", {"page": 1}),
    ]
    streams = [configured(name, "append") for name in ("users", "members", "tokens")]
    result = write(config, tmp_path, streams, messages)
    assert_ok(result)
    counts = [s["state"]["destinationStats"]["recordCount"] for s in result.states]
    assert counts == [len(user_ids), 30 * len(tenants), 30]

    # users: ids 1..246 in input order, keys on every primary, entries beside them.
    users_found = found = held(primaries, f"{PREFIX}user:*", "users")
    entries = assert_books_match_keys(found, "users", {user_key(n) for n in user_ids})
    assert entries == {user_key(n): i for i, n in enumerate(user_ids, start=1)}
    assert_on_their_primaries(redis_cluster, found.node)  # every primary holds keys and books
    assert len(found.books) > 200  # nearly one book per key: the slots differ
    assert stored_fields(cluster_client, user_key(17)) == hash_fields_of(user(17), 18)
    assert keys.key_slot(user_key("x{t1}y")) == keys.key_slot(b"t1")
    assert keys.key_slot(user_key("}{t3}")) == keys.key_slot(b"t3")
    assert stored_fields(cluster_client, user_key("x{t1}y")) == hash_fields_of(user("x{t1}y"), 241)

    # members: one slot per tenant, holding the tenant's keys and its book, and nothing else.
    members_found = found = held(primaries, f"{PREFIX}t:*", "members")
    by_tenant = {t: {f"{PREFIX}t:{{{t}}}:m:{n}".encode() for n in range(30)} for t in tenants}
    entries = assert_books_match_keys(found, "members", set().union(*by_tenant.values()))
    assert len(found.books) == len(tenants)
    for tenant, tenant_keys in by_tenant.items():
        slot = keys.key_slot(tenant.encode())
        book = keys.owned_keys_book(b":members", PREFIX, slot)
        assert set(found.books[book]) == tenant_keys
        assert {keys.key_slot(key) for key in tenant_keys} == {slot}
        assert {found.node[key] for key in [*tenant_keys, book]} == {redis_cluster.node_for_slot(slot)}
    assert_on_their_primaries(redis_cluster, found.node)  # a tenant on each primary
    tenant = tenants[0]
    assert cluster_client.hgetall(f"{PREFIX}t:{{{tenant}}}:m:7") == {
        b"_airbyte_ab_id": b"%d" % entries[f"{PREFIX}t:{{{tenant}}}:m:7".encode()],
        b"_airbyte_emitted_at": b"%d" % EMITTED,
        b"_airbyte_data": b'{"tenant":"%s","id":7,"role":"admin"}' % tenant.encode(),
    }

    # tokens: string values carry no id; the entries still name the key and the record's id.
    found = held(primaries, f"{PREFIX}tok:*", "tokens")
    token_keys = {f"{PREFIX}tok:t-{n}".encode() for n in range(30)}
    assert set(found.ids) == token_keys
    assert found.entries == {f"{PREFIX}tok:t-{n}".encode(): n + 1 for n in range(30)}
    for book, members in found.books.items():
        assert {keys.key_slot(key) for key in members} == {keys.key_slot(book)}
        assert {found.node[key] for key in members} == {found.node[book]}
    assert cluster_client.get(f"{PREFIX}tok:t-3") == b'{"id":"t-3","scope":"read"}'
    for key in token_keys:
        assert 0 < cluster_client.ttl(key) <= 600, key
    every_book = [*found.books, *users_found.books, *members_found.books]
    assert [cluster_client.ttl(book) for book in every_book] == [-1] * len(every_book)

    # The servers' own hash function agrees (not only ours and redis-py's).
    book = keys.owned_keys_book(b":members", PREFIX, keys.key_slot(tenant.encode()))
    sample = [book, f"{PREFIX}t:{{{tenant}}}:m:0".encode(), *[user_key(n) for n in user_ids[-6:]],
              *sorted(users_found.node)[:40]]
    client = next(iter(primaries.values()))
    assert [client.execute_command("CLUSTER", "KEYSLOT", key) for key in sample] == [
        keys.key_slot(key) for key in sample
    ]


def _owners(cluster: RedisCluster, found: Iterable[bytes]) -> set[Address]:
    return {cluster.node_for_slot(keys.key_slot(key)) for key in found}


def test_a_refresh_deletes_older_generations_keys_on_every_primary_and_no_application_key(
    redis_cluster: RedisCluster, cluster_client: redis.cluster.RedisCluster, primaries: NodeClients,
    tmp_path: Path,
) -> None:
    """Overwrite with generation ids: generation 1 writes users 0..199, then the application
    rewrites three of them (a string, a hash without our id, a hash with another id); generation
    2 writes users 50..109 and 200..209. When generation 2 completes the keys of generation 1 it
    did not write again are deleted, on every primary; the application's keys of the same shape
    (`user:999`, `user:app-<n>`, `user:<n>:sessions`, placed on every primary before) and the three
    rewritten keys stay as the application left them, and only their book entries go."""
    config = redis_cluster.config(**users_config())
    look_alikes = [user_key(999).decode(),
                   *spread_keys(redis_cluster, lambda n: f"{PREFIX}user:app-{n}", per_primary=1),
                   *spread_keys(redis_cluster, lambda n: f"{PREFIX}user:{n}:sessions", per_primary=1)]
    for key in look_alikes:
        cluster_client.hset(key, mapping={"owner": "the application", F_ID: "1"})
    assert _owners(redis_cluster, [key.encode() for key in look_alikes]) == set(redis_cluster.primaries())

    def sync(generation: int, ids: list[int]) -> Result:
        messages = [record("users", user(n, generation=generation)) for n in ids]
        messages.append(stream_state("users", {"generation": generation}))
        streams = [configured("users", "overwrite", generation=generation, minimum=generation)]
        result = write(config, tmp_path, streams, messages)
        assert_ok(result)
        return result

    first_ids = list(range(200))
    sync(1, first_ids)
    app_keys = {key.encode() for key in look_alikes}
    entries = assert_books_match_keys(held(primaries, f"{PREFIX}user:*", "users"), "users",
                                      {user_key(n) for n in first_ids}, app_keys)
    assert entries == {user_key(n): n + 1 for n in first_ids}

    # The application rewrites one key of generation 1 on each primary, in three ways.
    chosen: dict[Address, int] = {}
    for n in range(50):
        chosen.setdefault(redis_cluster.node_for_key(user_key(n)), n)
    as_string, no_id, other_id = (user_key(n) for n in chosen.values())
    cluster_client.set(as_string, "the application's value")
    cluster_client.delete(no_id)
    cluster_client.hset(no_id, "owner", "the application")
    cluster_client.delete(other_id)
    cluster_client.hset(other_id, mapping={"owner": "the application", F_ID: "7777"})
    rewritten = {as_string, no_id, other_id}

    second_ids = [*range(50, 110), *range(200, 210)]
    result = sync(2, second_ids)
    gone = {user_key(n) for n in first_ids} - {user_key(n) for n in second_ids} - rewritten
    assert _owners(redis_cluster, gone) == set(redis_cluster.primaries())  # deletes on every primary
    assert f"Stream 'users' completed generation 2: deleted {len(gone)} records of older generations." in (
        logs(result)
    )
    found = held(primaries, f"{PREFIX}user:*", "users")
    entries = assert_books_match_keys(found, "users", {user_key(n) for n in second_ids},
                                      app_keys | rewritten)
    assert_on_their_primaries(redis_cluster, found.node)
    # Generation 2 took ids 201..270, in input order.
    assert entries == {user_key(n): 201 + i for i, n in enumerate(second_ids)}
    assert stored_fields(cluster_client, user_key(60)) == hash_fields_of(user(60, generation=2), 211)
    for key in look_alikes:
        assert cluster_client.hgetall(key) == {b"owner": b"the application", F_ID.encode(): b"1"}, key
    assert cluster_client.get(as_string) == b"the application's value"
    assert cluster_client.hgetall(no_id) == {b"owner": b"the application"}
    assert cluster_client.hgetall(other_id) == {b"owner": b"the application", F_ID.encode(): b"7777"}
    assert meta(cluster_client, "users") == {"generation_id": "2", "status": "complete", "start:2": "201",
                                            "floor": "201"}
    assert cluster_client.get(f"{PREFIX}:users") == b"270"


def test_a_legacy_overwrite_deletes_the_recorded_keys_up_front_on_every_primary(
    redis_cluster: RedisCluster, cluster_client: redis.cluster.RedisCluster, primaries: NodeClients,
    tmp_path: Path,
) -> None:
    """Overwrite without generation ids, twice: the second deletes, before its first record, the
    keys the first recorded (on every primary) and restarts the ids at 1; the application's keys
    of the same shape and a recorded key the application rewrote stay."""
    config = redis_cluster.config(**users_config())
    streams = [configured("users", "overwrite")]
    look_alikes = {user_key(999), user_key("7:sessions"),
                   *(key.encode() for key in spread_keys(redis_cluster, lambda n: f"{PREFIX}user:app-{n}",
                                                         per_primary=1))}
    for key in look_alikes:
        cluster_client.hset(key, mapping={"owner": "the application", F_ID: "3"})
    assert_ok(write(config, tmp_path, streams,
                    [*(record("users", user(n)) for n in range(100)), stream_state("users", {"run": 1})]))
    cluster_client.delete(user_key(3))
    cluster_client.hset(user_key(3), mapping={"owner": "the application", F_ID: "4000"})

    second = write(config, tmp_path, streams, [*(record("users", user(n, run=2)) for n in range(50, 60)),
                                               stream_state("users", {"run": 2})])
    assert_ok(second)
    gone = {user_key(n) for n in range(100)} - {user_key(n) for n in range(50, 60)} - {user_key(3)}
    assert _owners(redis_cluster, gone) == set(redis_cluster.primaries())
    assert "Overwrite of stream 'users': deleted 99 existing records." in logs(second)
    found = held(primaries, f"{PREFIX}user:*", "users")
    entries = assert_books_match_keys(found, "users", {user_key(n) for n in range(50, 60)},
                                      look_alikes | {user_key(3)})
    assert entries == {user_key(n): n - 49 for n in range(50, 60)}
    for key in look_alikes:
        assert cluster_client.hgetall(key) == {b"owner": b"the application", F_ID.encode(): b"3"}, key
    assert cluster_client.hgetall(user_key(3)) == {b"owner": b"the application", F_ID.encode(): b"4000"}
    assert cluster_client.get(f"{PREFIX}:users") == b"10"


def test_append_dedup_cdc_deletes_remove_keys_and_entries_on_every_primary(
    redis_cluster: RedisCluster, cluster_client: redis.cluster.RedisCluster, primaries: NodeClients,
    tmp_path: Path,
) -> None:
    """append_dedup with a template, in namespace `shop` (its books are `..:shop:users:keys`): a
    later sync's CDC deletes (of keys on every primary, of a key never written, of a key created
    and deleted in the same batch) delete the key and its book entry together; a key deleted and
    then written again exists once, recorded with its new id; an application key of the same
    shape is not touched by the deletes of others."""
    config = redis_cluster.config(key_prefix=PREFIX, cache_type="hash_fields", streams=[
        {"name": "users", "namespace": "shop", "key_template": "user:{id}"},
    ])
    streams = [configured("users", "append_dedup", [["id"]], namespace="shop")]

    def shop(data: dict[str, Any]) -> str:
        return record("users", data, namespace="shop")

    cluster_client.hset(user_key("app"), "owner", "the application")
    first = write(config, tmp_path, streams, [*(shop(user(n)) for n in range(60)),
                                              stream_state("users", {"lsn": 1}, namespace="shop")])
    assert_ok(first)

    deleted_at = {"_ab_cdc_deleted_at": "2026-12-01T00:00:00Z"}
    doomed = list(range(0, 40, 3))
    assert _owners(redis_cluster, [user_key(n) for n in doomed]) == set(redis_cluster.primaries())
    messages = [
        shop(user(1, v=2)),  # id 61
        *(shop({"id": n, **deleted_at}) for n in doomed),
        shop({"id": 500, **deleted_at}),  # never written
        shop(user(600)),  # id 62, deleted two lines later
        shop(user(3, v=3)),  # id 63: re-created after its delete
        shop({"id": 600, **deleted_at}),
        stream_state("users", {"lsn": 2}, namespace="shop"),
    ]
    second = write(config, tmp_path, streams, messages)
    assert_ok(second)
    assert [s["state"]["destinationStats"]["recordCount"] for s in second.states] == [len(messages) - 1]

    remaining = {user_key(n) for n in range(60)} - {user_key(n) for n in doomed} | {user_key(3)}
    found = held(primaries, f"{PREFIX}user:*", "users", namespace="shop")
    entries = assert_books_match_keys(found, "users", remaining, [user_key("app")], namespace="shop")
    assert_on_their_primaries(redis_cluster, found.node)
    assert entries[user_key(1)] == 61
    assert entries[user_key(3)] == 63
    assert stored_fields(cluster_client, user_key(3)) == hash_fields_of(user(3, v=3), 63)
    assert entries[user_key(2)] == 3
    assert cluster_client.hgetall(user_key("app")) == {b"owner": b"the application"}
    assert cluster_client.get(f"{PREFIX}shop:users") == b"63"


def test_a_key_prefix_that_is_a_hash_tag_keeps_the_stream_and_its_one_book_in_one_slot(
    redis_cluster: RedisCluster, cluster_client: redis.cluster.RedisCluster, primaries: NodeClients,
    tmp_path: Path,
) -> None:
    """key_prefix `{app}:` (a whole hash tag, as the refusal of other braces suggests): every key
    of the templated stream, even one whose template makes a tag of its own, hashes by `app`:
    one slot, one book; a refresh there deletes the old generation's keys."""
    prefix = "{app}:"
    config = redis_cluster.config(key_prefix=prefix, cache_type="hash", streams=[
        {"name": "users", "key_template": "t:{{{tenant}}}:u:{id}"},
    ])
    slot = keys.key_slot(b"app")
    book = keys.owned_keys_book(b":users", prefix, slot)

    def sync(generation: int, ids: range) -> set[bytes]:
        messages = [record("users", {"tenant": t, "id": n}) for n in ids for t in ("acme", "globex")]
        streams = [configured("users", "overwrite", generation=generation, minimum=generation)]
        assert_ok(write(config, tmp_path, streams, [*messages, stream_state("users", {"g": generation})]))
        return {f"{prefix}t:{{{t}}}:u:{n}".encode() for n in ids for t in ("acme", "globex")}

    for generation, ids in ((1, range(20)), (2, range(15, 25))):
        expected = sync(generation, ids)
        found = held(primaries, f"{prefix}t:*", "users", prefix=prefix)
        assert_books_match_keys(found, "users", expected, prefix=prefix)
        assert list(found.books) == [book]
        assert {keys.key_slot(key) for key in found.node} == {slot}
        assert set(found.node.values()) == {redis_cluster.node_for_slot(slot)}


# --- Sentinel -------------------------------------------------------------------------------------

TENANTS = ("acme", "globex", "initech")


def test_templated_refresh_through_sentinel_writes_keys_and_books_on_the_master(
    sentinel_group: SentinelGroup, master: redis.Redis, tmp_path: Path
) -> None:
    """Two generations of a templated stream through the Sentinel topology config: the keys and
    their books are on the master the Sentinels name (and already on its replica when the sync
    ends); generation 2's completion deletes what only generation 1 wrote, not the application's
    key of the same shape."""
    config = sentinel_group.config(key_prefix=PREFIX, cache_type="hash_fields", streams=[
        {"name": "users", "key_template": "t:{{{tenant}}}:u:{id}"},
    ])
    master.hset(f"{PREFIX}t:{{acme}}:u:app", "owner", "the application")

    def key(tenant: str, n: int) -> bytes:
        return f"{PREFIX}t:{{{tenant}}}:u:{n}".encode()

    def sync(generation: int, ids: range) -> None:
        messages = [record("users", {"tenant": t, "id": n, "g": generation}) for n in ids for t in TENANTS]
        messages.append(stream_state("users", {"generation": generation}))
        streams = [configured("users", "overwrite", generation=generation, minimum=generation)]
        assert_ok(write(config, tmp_path, streams, messages))

    address = sentinel_group.master_address()
    app_key = [f"{PREFIX}t:{{acme}}:u:app".encode()]
    sync(1, range(10))
    found = held({address: master}, f"{PREFIX}t:*", "users")
    first = {key(t, n) for n in range(10) for t in TENANTS}
    entries = assert_books_match_keys(found, "users", first, app_key)
    assert sorted(entries.values()) == list(range(1, 31))
    assert set(found.books) == {keys.owned_keys_book(b":users", PREFIX, keys.key_slot(t.encode()))
                                for t in TENANTS}

    sync(2, range(5, 8))
    found = held({address: master}, f"{PREFIX}t:*", "users")
    expected = {key(t, n) for n in range(5, 8) for t in TENANTS}
    entries = assert_books_match_keys(found, "users", expected, app_key)
    assert sorted(entries.values()) == list(range(31, 40))
    assert stored_fields(master, key("globex", 6)) == {
        "tenant": "globex", "id": "6", "g": "2", F_ID: str(entries[key("globex", 6)]),
        "_airbyte_emitted_at": str(EMITTED),
    }
    assert master.hgetall(app_key[0]) == {b"owner": b"the application"}
    assert master.wait(1, 10_000) == 1  # (the connector waited for its writes; this is for ours)
    (replica_address,) = sentinel_group.replica_addresses()
    with sentinel_group.node(replica_address).client() as replica:
        on_replica = held({replica_address: replica}, f"{PREFIX}t:*", "users")
        assert (on_replica.ids, on_replica.books) == (found.ids, found.books)


# --- a lost reply ---------------------------------------------------------------------------------


def _groups_with_states(groups: list[list[dict[str, Any]]], stream: str = "users") -> list[str]:
    """Each group's records, then a STATE: one batch (one flush) per group."""
    messages = []
    for number, group in enumerate(groups, start=1):
        messages += [record(stream, data) for data in group]
        messages.append(stream_state(stream, {"batch": number}))
    return messages


def _assert_survived_a_lost_reply(result: Result, proxy: ReplyDroppingProxy, batches: int) -> None:
    assert proxy.dropped.is_set(), "the proxy never lost the reply: the test tested nothing"
    assert_ok(result)
    assert [s["state"]["stream"]["stream_state"]["batch"] for s in result.states] == list(
        range(1, batches + 1)
    )
    assert any("resending" in line for line in logs(result)), logs(result)


def test_a_templated_batch_whose_exec_reply_is_lost_is_written_once(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """An append of a templated stream whose keys exist from an earlier sync (ids 1..10), in
    three batches; the 2nd batch's first EXEC runs but its reply (and those of the batch's other
    MULTIs, sent in the same write) is lost. The batch is resent under the ids it reserved: the
    counter grew by exactly the number of records, each key holds the last record written to it
    and the id its book entry names, and the books hold exactly the stream's keys."""
    streams = [configured("users", "append")]
    assert_ok(write(redis_server.config(**users_config()), tmp_path, streams,
                    [*(record("users", user(n)) for n in range(10)), stream_state("users", {"batch": 0})]))
    redis_client.hset(user_key("app"), "owner", "the application")
    groups = [
        [user(n, sync=2) for n in (5, 6, 7, 10, 11)],  # ids 11..15
        [user(n, sync=2) for n in (0, 1, 12, 13)] + [user(0, sync=2, again=True)],  # ids 16..20
        [user(n, sync=2) for n in (14, 2)],  # ids 21, 22
    ]
    with ReplyDroppingProxy(redis_server.port) as proxy:
        proxy.drop_reply_to("EXEC", occurrence=len(groups[0]) + 1)
        result = write(redis_server.config(port=proxy.port, **users_config()), tmp_path, streams,
                       _groups_with_states(groups))
    _assert_survived_a_lost_reply(result, proxy, batches=3)

    last: dict[bytes, tuple[int, dict[str, Any]]] = {user_key(n): (n + 1, user(n)) for n in range(10)}
    for record_id, data in enumerate([data for group in groups for data in group], start=11):
        last[user_key(data["id"])] = (record_id, data)
    assert redis_client.get(f"{PREFIX}:users") == b"22"
    found = held({("127.0.0.1", redis_server.port): redis_client}, f"{PREFIX}user:*", "users")
    entries = assert_books_match_keys(found, "users", set(last), [user_key("app")])
    assert entries == {key: record_id for key, (record_id, _) in last.items()}
    for key, (record_id, data) in last.items():
        assert stored_fields(redis_client, key) == hash_fields_of(data, record_id), key


def test_a_cdc_delete_whose_exec_reply_is_lost_deletes_key_and_entry_once(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """append_dedup: the 2nd batch is CDC deletes (and one key written again after its delete);
    the reply to its first delete's EXEC is lost. Resent, the deletes delete nothing more (no
    key of the stream is lost that should stay, no entry is left for a deleted key), and the
    key written again exists with its one new id."""
    streams = [configured("users", "append_dedup", [["id"]])]
    assert_ok(write(redis_server.config(**users_config()), tmp_path, streams,
                    [*(record("users", user(n)) for n in range(10)), stream_state("users", {"batch": 0})]))
    deleted_at = {"_ab_cdc_deleted_at": "2026-12-01T00:00:00Z"}
    groups = [
        [user(10), user(11)],  # ids 11, 12
        [{"id": n, **deleted_at} for n in (0, 1, 2, 42)] + [user(1, back=True)],  # id 13
        [user(12), {"id": 3, **deleted_at}],  # id 14
    ]
    with ReplyDroppingProxy(redis_server.port) as proxy:
        proxy.drop_reply_to("EXEC", occurrence=len(groups[0]) + 1)
        result = write(redis_server.config(port=proxy.port, **users_config()), tmp_path, streams,
                       _groups_with_states(groups))
    _assert_survived_a_lost_reply(result, proxy, batches=3)

    expected = {user_key(n): n + 1 for n in range(4, 10)} | {
        user_key(10): 11, user_key(11): 12, user_key(1): 13, user_key(12): 14,
    }
    found = held({("127.0.0.1", redis_server.port): redis_client}, f"{PREFIX}user:*", "users")
    assert assert_books_match_keys(found, "users", set(expected)) == expected
    assert stored_fields(redis_client, user_key(1)) == hash_fields_of(user(1, back=True), 13)
    assert redis_client.get(f"{PREFIX}:users") == b"14"


def test_a_refresh_whose_cleanup_exec_reply_is_lost_completes(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Generation 2 of an overwrite completes; the reply to the EXEC of the first book's cleanup
    (UNLINK the old keys, ZREM their entries) is lost. Resent, it deletes nothing more: the sync
    succeeds and exactly generation 2's keys remain, recorded."""
    def streams(generation: int) -> list[dict[str, Any]]:
        return [configured("users", "overwrite", generation=generation, minimum=generation)]

    assert_ok(write(redis_server.config(**users_config()), tmp_path, streams(1),
                    [*(record("users", user(n)) for n in range(20)), stream_state("users", {"batch": 1})]))
    second = [user(n, g=2) for n in range(10, 15)]  # ids 21..25
    with ReplyDroppingProxy(redis_server.port) as proxy:
        proxy.drop_reply_to("EXEC", occurrence=len(second) + 1)  # the upserts' EXECs come first
        result = write(redis_server.config(port=proxy.port, **users_config()), tmp_path, streams(2),
                       _groups_with_states([second]))
    _assert_survived_a_lost_reply(result, proxy, batches=1)
    found = held({("127.0.0.1", redis_server.port): redis_client}, f"{PREFIX}user:*", "users")
    entries = assert_books_match_keys(found, "users", {user_key(n) for n in range(10, 15)})
    assert entries == {user_key(n): 11 + n for n in range(10, 15)}
    assert meta(redis_client, "users")["status"] == "complete"


# --- a connector killed mid-sync, then run again ----------------------------------------------------

FIRST_IDS = range(0, 2_000)  # generation 1
# Generation 2: half of generation 1's keys again (some in its first batch, the rest last), and many
# new ones (from its second batch on: each of its records adds a key).
SECOND_IDS = [*range(1_000, 1_500), *range(2_000, 13_000), *range(1_500, 2_000)]
FIRST_STATE = 500  # generation 2's first STATE comes after this many records: a small first batch,
STATE_EVERY = 3_000  # then a big batch per STATE, in flight when the connector is killed
HELD_BACK = 2_000  # generation 2's last lines, fed only after the kill: it cannot complete before


class _Feeder(threading.Thread):
    """Writes `messages` to the connector's stdin, all but the last `held_back` at once, those
    only once `release` is set; a broken pipe (the connector was killed) ends it quietly."""

    def __init__(
        self, stdin: IO[bytes], messages: list[str], held_back: int, release: threading.Event
    ) -> None:
        super().__init__(daemon=True)
        self.stdin, self.messages, self.held_back, self.release = stdin, messages, held_back, release

    def run(self) -> None:
        try:
            self.stdin.write(lines(*self.messages[: -self.held_back]).encode())
            self.stdin.flush()
            self.release.wait(60)
            self.stdin.write(lines(*self.messages[-self.held_back :]).encode())
            self.stdin.close()
        except OSError:  # BrokenPipeError: the connector is gone
            pass


def _generation_2(attempt: str) -> list[str]:
    """Generation 2's records, a STATE after the first FIRST_STATE and then every STATE_EVERY
    and after the last, then the stream's COMPLETE status."""
    messages = []
    for i, n in enumerate(SECOND_IDS, start=1):
        messages.append(record("users", user(n, attempt=attempt)))
        if i == len(SECOND_IDS) or (i >= FIRST_STATE and (i - FIRST_STATE) % STATE_EVERY == 0):
            messages.append(stream_state("users", {"at": n}))
    return [*messages, status("users", "COMPLETE")]


def _key_count(primaries: NodeClients) -> int:
    return sum(int(client.dbsize()) for client in primaries.values())


def _wait_until_writing(primaries: NodeClients, before: int, proc: subprocess.Popen[bytes]) -> None:
    """Until the cluster holds more than `before` keys: generation 2's second batch (each of its
    records adds a key) is being written to the primaries."""
    deadline = time.monotonic() + 30
    while _key_count(primaries) == before:
        assert proc.poll() is None, f"the connector exited ({proc.returncode}) before its next batch"
        assert time.monotonic() < deadline, "no key written after the first state: no next batch"


@contextmanager
def _connector(
    tmp_path: Path, config: Config, streams: list[dict[str, Any]]
) -> Iterator[subprocess.Popen[bytes]]:
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "catalog.json").write_text(json.dumps({"streams": streams}))
    argv = [_script(), "write", "--config", str(tmp_path / "config.json"),
            "--catalog", str(tmp_path / "catalog.json")]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def test_a_connector_killed_mid_refresh_leaves_no_unrecorded_key_and_a_rerun_completes_it(
    redis_cluster: RedisCluster, cluster_client: redis.cluster.RedisCluster, primaries: NodeClients,
    tmp_path: Path,
) -> None:
    """Generation 1 wrote users 0..1999 on the cluster. Generation 2 (users 1000..12999, a
    STATE after 500 records, then every 3,000) is fed through a pipe; after its first STATE,
    as soon as the next batch's first keys appear (its units are being written to the
    primaries), the connector is SIGKILLed. Then every key of the template's shape in the
    cluster is the application's or is in a book with the id it holds (no key written but not
    recorded), and all of generation 1's keys are still there. Generation 2 run again to
    completion leaves exactly its keys, each once, recorded with the rerun's ids; no key of
    generation 1 alone, no book entry for a deleted key; the application's keys untouched."""
    config = redis_cluster.config(**users_config())
    streams = [configured("users", "overwrite", generation=1, minimum=1)]
    app_keys = {user_key("app-1"), user_key("app-2"), user_key("5:sessions"), user_key(999_999)}
    for key in app_keys:
        cluster_client.hset(key, "owner", "the application")
    first = write(config, tmp_path, streams,
                  [*(record("users", user(n)) for n in FIRST_IDS), stream_state("users", {"g": 1})])
    assert_ok(first)
    first_keys = {user_key(n) for n in FIRST_IDS}
    second_keys = {user_key(n) for n in SECOND_IDS}

    streams = [configured("users", "overwrite", generation=2, minimum=2)]
    release = threading.Event()
    before = _key_count(primaries)  # the first batch of generation 2 adds no key
    with _connector(tmp_path, config, streams) as proc:
        assert proc.stdin is not None
        feeder = _Feeder(proc.stdin, _generation_2("killed"), HELD_BACK, release)
        feeder.start()
        try:
            state = _read_until_state(proc, timeout=60)
            _wait_until_writing(primaries, before, proc)
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
        finally:
            release.set()
            feeder.join(timeout=30)
    assert state["state"]["stream"]["stream_state"] == {"at": SECOND_IDS[FIRST_STATE - 1]}

    found = held(primaries, f"{PREFIX}user:*", "users")
    new = set(found.ids) - first_keys - app_keys  # generation 2's keys that generation 1 had not
    assert new <= second_keys
    # No key written but not recorded, nor an entry without its key: the books are the keys.
    entries = assert_books_match_keys(found, "users", first_keys | new, app_keys)
    assert_on_their_primaries(redis_cluster, found.node)
    start = int(meta(cluster_client, "users")["start:2"])
    assert meta(cluster_client, "users")["status"] == "running"
    by_second = {key for key, record_id in entries.items() if record_id >= start}
    assert by_second <= second_keys
    assert by_second >= new
    assert len(by_second) >= FIRST_STATE  # at least the records of the state that came out
    for key in list(by_second)[:50]:
        n = int(key.rsplit(b":", 1)[1])
        assert stored_fields(cluster_client, key) == hash_fields_of(user(n, attempt="killed"), entries[key])
    print(f"killed after the first state: {len(by_second)} records of generation 2 in Redis")

    rerun = run_connector(WRITE_ARGS, tmp_path, config=config, catalog={"streams": streams},
                          stdin=lines(*_generation_2("rerun")), timeout=120)
    assert_ok(rerun)
    assert len(rerun.states) == len(_generation_2("rerun")) - len(SECOND_IDS) - 1
    gone = len(first_keys - second_keys)
    assert f"Stream 'users' completed generation 2: deleted {gone} records of older generations." in (
        logs(rerun)
    )
    found = held(primaries, f"{PREFIX}user:*", "users")
    entries = assert_books_match_keys(found, "users", second_keys, app_keys)
    assert_on_their_primaries(redis_cluster, found.node)
    counter = int(cluster_client.get(f"{PREFIX}:users") or 0)
    # The rerun wrote every key again, in input order, under the last len(SECOND_IDS) ids.
    assert entries == {user_key(n): counter - len(SECOND_IDS) + 1 + i for i, n in enumerate(SECOND_IDS)}
    assert min(entries.values()) > start
    for n in (1_000, 1_999, 2_000, 12_999):
        assert stored_fields(cluster_client, user_key(n)) == hash_fields_of(
            user(n, attempt="rerun"), entries[user_key(n)]
        )
    for key in app_keys:
        assert cluster_client.hgetall(key) == {b"owner": b"the application"}
    assert meta(cluster_client, "users")["status"] == "complete"
