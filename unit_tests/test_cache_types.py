"""The encodings' commands and the `streams` overrides' resolution, without Redis."""

from __future__ import annotations

import msgspec
import pytest

from destination_redis.config import RedisConfig
from destination_redis.connection.server import ServerInfo
from destination_redis.writers import ENCODINGS, MEMBERS, encoding_of
from destination_redis.writers.base import RecordError
from destination_redis.writers.encoding import Encoding
from destination_redis.writers.json import JsonEncoding
from destination_redis.writers.list_type import ListMembers
from destination_redis.writers.set_type import SetMembers
from destination_redis.writers.sorted_set import SortedSetMembers

SERVER = ServerInfo(version=(7, 0, 15), mode="standalone")
OLD = ServerInfo(version=(3, 2, 6), mode="standalone")


def test_every_offered_cache_type_has_an_encoding() -> None:
    offered = set(RedisConfig.model_json_schema()["properties"]["cache_type"]["enum"])
    assert offered == set(ENCODINGS) | set(MEMBERS)


def test_hash_fields_one_field_per_property_nulls_skipped_strings_as_text() -> None:
    data = '{"s":"Zoë","n":12345678901234567890123,"f":1.50,"o":{"a":[1,null]},"z":null,"t":false}'.encode()
    (command,) = encoding_of("hash_fields", SERVER).commands(b"K:3", 3, 99, data)
    assert command == (
        b"HSET",
        b"K:3",
        b"s",
        "Zoë".encode(),
        b"n",
        b"12345678901234567890123",
        b"f",
        b"1.50",
        b"o",
        b'{"a":[1,null]}',
        b"t",
        b"false",
        b"_airbyte_ab_id",
        3,
        b"_airbyte_emitted_at",
        99,
    )


@pytest.mark.parametrize(
    "value",
    ["plain", "", "Zoë 東京 😀", 'a "quoted" word', "back\\slash", "tab\tnew\nline", "\u0001",
     "\\u00e9 literal"],
)
def test_hash_fields_string_values_are_their_decoded_text(value: str) -> None:
    """Strings without escapes are taken between their quotes as they are; with escapes decoded."""
    data = msgspec.json.encode({"s": value})
    (command,) = encoding_of("hash_fields", SERVER).commands(b"K:1", 1, 2, data)
    assert command[2:4] == (b"s", value.encode())


def test_hash_fields_uses_hmset_before_redis_4() -> None:
    (command,) = encoding_of("hash_fields", OLD).commands(b"K:1", 1, 2, b"{}")
    assert command[0] == b"HMSET"


@pytest.mark.parametrize(
    ("data", "doc"),
    [
        (b"{}", b'{"_airbyte_ab_id":5,"_airbyte_emitted_at":9}'),
        (b'{"a":1}', b'{"a":1,"_airbyte_ab_id":5,"_airbyte_emitted_at":9}'),
        (b'{"_airbyte_ab_id":"x","a":1}', b'{"a":1,"_airbyte_ab_id":5,"_airbyte_emitted_at":9}'),
    ],
)
def test_json_doc_is_data_plus_our_two_numbers(data: bytes, doc: bytes) -> None:
    assert encoding_of("json", SERVER).commands(b"K:5", 5, 9, data) == [(b"JSON.SET", b"K:5", b"$", doc)]


@pytest.mark.parametrize(
    ("reply", "record_id"), [(b"[12]", 12), (b"[]", None), (None, None), (b'["x"]', None)]
)
def test_json_id_read_back(reply: bytes | None, record_id: int | None) -> None:
    assert JsonEncoding(SERVER).parse_id(reply) == record_id


def test_string_is_the_data_alone_and_carries_no_id() -> None:
    encoding = encoding_of("string", SERVER)
    assert encoding.commands(b"K:1", 1, 2, b'{"a":1}') == [(b"SET", b"K:1", b'{"a":1}')]
    assert encoding.id_command(b"K:1") is None


def test_overrides_by_namespace_win_over_by_name_over_top_level() -> None:
    config = RedisConfig.model_validate(
        {
            "host": "h",
            "cache_type": "hash",
            "ttl_seconds": 60,
            "streams": [
                {"name": "users", "namespace": "shop", "cache_type": "json"},
                {"name": "users", "cache_type": "string", "ttl_seconds": 0},
            ],
        }
    )
    shop = config.settings_for("shop", "users")
    assert (shop.cache_type, shop.ttl_seconds) == ("json", None)  # ttl 0 of the by-name entry: none
    other = config.settings_for("crm", "users")
    assert (other.cache_type, other.ttl_seconds) == ("string", None)
    orders = config.settings_for("shop", "orders")
    assert (orders.cache_type, orders.ttl_seconds) == ("hash", 60)
    assert config.cache_types == {"hash", "json", "string"}


def test_an_override_with_empty_namespace_means_streams_without_one() -> None:
    config = RedisConfig.model_validate(
        {"host": "h", "streams": [{"name": "s", "namespace": "", "cache_type": "string"}]}
    )
    assert config.settings_for("", "s").cache_type == "string"
    assert config.settings_for("ns", "s").cache_type == "hash"


@pytest.mark.parametrize("ttl", [None, 60])
@pytest.mark.parametrize("server", [SERVER, OLD])
def test_hash_fast_packer_is_the_generic_packing(ttl: int | None, server: ServerInfo) -> None:
    """hash's hand-made RESP is byte for byte what packing its own commands gives."""
    encoding = encoding_of("hash", server)
    fast = encoding.packer(b"ns:50%off", ttl)
    generic = Encoding.packer(encoding, b"ns:50%off", ttl)
    for record_id, data in [(1, b"{}"), (123456, '{"a":"Zoë"}'.encode())]:
        assert fast(record_id, 1700000000000, data) == generic(record_id, 1700000000000, data)


class _NoRedis:
    """Members need a router only to talk to Redis; these cases never do."""

    server = SERVER


def _scores(score_field: str | None, *data: bytes) -> list[object]:
    members = SortedSetMembers(_NoRedis(), b"K", "", score_field)
    return [members.score(7, d) for d in data]


def test_sorted_set_scores_by_emitted_at_or_by_a_numeric_score_field() -> None:
    assert _scores(None, b'{"p":1}') == [7]
    assert _scores("p", b'{"p":12}', b'{"p":-1.5e3}', b'{"p":123456789012345678901234567890}') == [
        b"12.0", b"-1500.0", b"1.2345678901234568e+29",
    ]
    assert _scores("p", b'{"p":1e999}') == [b"inf"]  # Redis takes inf as a score


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b'{"q":1}', "missing or null"),
        (b'{"p":null}', "missing or null"),
        (b'{"p":"12"}', "a string"),
        (b'{"p":true}', "a boolean"),
        (b'{"p":{"a":1}}', "an object"),
        (b'{"p":[1]}', "an array"),
    ],
)
def test_sorted_set_refuses_a_record_without_a_numeric_score(data: bytes, kind: str) -> None:
    with pytest.raises(RecordError) as refused:
        _scores("p", data)
    assert str(refused.value) == (
        f"cache_type 'sorted_set' scores records by 'p' (score_field), and this record's 'p' is "
        f"{kind}, not a number"
    )


def test_collection_batches_are_chunked_commands_on_the_target_key() -> None:
    data = [b'{"i":%d}' % i for i in range(2500)]
    router: object = _NoRedis()
    set_commands = SetMembers(router, b"K", "").commands(b"S", [0] * 2500, data)  # type: ignore[arg-type]
    assert [len(c) - 2 for c in set_commands] == [1000, 1000, 500]
    assert all(c[:2] == (b"SADD", b"S") for c in set_commands)
    assert [m for c in set_commands for m in c[2:]] == data
    zadd = SortedSetMembers(router, b"K", "").commands(b"Z", [5, 6], [b"a", b"b"])
    assert zadd == [(b"ZADD", b"Z", 5, b"a", 6, b"b")]
    rpush = ListMembers(router, b"app:ns:s", "app:").commands(b"L", [], data[:2])
    assert rpush == [(b"RPUSH", b"L", *data[:2])]
