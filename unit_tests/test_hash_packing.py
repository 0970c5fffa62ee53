"""The hash writer's hand-made RESP must be byte for byte what hiredis packs."""

from __future__ import annotations

import pytest

from destination_redis.commands import pack_command
from destination_redis.writers.encoding import F_DATA, F_EMITTED_AT, F_ID
from destination_redis.writers.hash import (
    expire_template,
    hset_template,
    pack_record,
    pack_record_with_expire,
)


@pytest.mark.parametrize("verb", [b"HSET", b"HMSET"])
@pytest.mark.parametrize(
    "stream_key",
    [b":users", b"shop:orders", "ns:str\u00e9am \u2603".encode(), b"100%:done %s %d", b"we*ird[1]:x"],
)
@pytest.mark.parametrize(
    ("record_id", "emitted_at", "data"),
    [(1, 0, b"{}"), (123456789, 1_700_000_000_000, '{"a":"\u00e9\\n"}'.encode()), (9, -5, b'{"x":1}')],
)
def test_pack_hset_matches_hiredis(
    verb: bytes, stream_key: bytes, record_id: int, emitted_at: int, data: bytes
) -> None:
    expected = pack_command(
        (
            verb,
            b"%s:%d" % (stream_key, record_id),
            F_ID,
            b"%d" % record_id,
            F_EMITTED_AT,
            b"%d" % emitted_at,
            F_DATA,
            data,
        )
    )
    template = hset_template(verb, stream_key)
    assert pack_record(template, len(stream_key) + 1, record_id, emitted_at, data) == expected
    with_expire = template + expire_template(stream_key, 3600)
    expire = pack_command((b"EXPIRE", b"%s:%d" % (stream_key, record_id), b"3600"))
    packed = pack_record_with_expire(with_expire, len(stream_key) + 1, record_id, emitted_at, data)
    assert packed == expected + expire


# pack_at: the dedup layout's packing of a record's write at a key it names itself -------------

from destination_redis.connection.server import ServerInfo  # noqa: E402
from destination_redis.writers.encoding import Encoding, expire  # noqa: E402
from destination_redis.writers.hash import HashEncoding  # noqa: E402
from destination_redis.writers.hash_fields import HashFieldsEncoding  # noqa: E402
from destination_redis.writers.json import JsonEncoding  # noqa: E402
from destination_redis.writers.string import StringEncoding  # noqa: E402


@pytest.mark.parametrize("encoding_type", [HashEncoding, StringEncoding, HashFieldsEncoding, JsonEncoding])
@pytest.mark.parametrize("version", [(7, 0, 15), (3, 2, 6)])  # HSET / HMSET
@pytest.mark.parametrize("key", [b":users:1", "ns:\u00e9 %s:{7}".encode(), b"100%:x"])
@pytest.mark.parametrize("data", [
    b"{}",
    '{"a":"\u00e9\\n","n":1.50,"z":null}'.encode(),
    '{"s":"a \\"q\\" \\\\ b","o":{"x":[1,null]},"t":true,"f":false,'
    '"_airbyte_ab_id":"theirs","\u6771":"\u4eac"}'.encode(),
])
def test_pack_at_matches_hiredis_packing_of_the_commands(
    encoding_type: type[Encoding], version: tuple[int, int, int], key: bytes, data: bytes
) -> None:
    encoding = encoding_type(ServerInfo(version=version, mode="standalone"))
    expected = b"".join(pack_command(tuple(c)) for c in encoding.commands(key, 42, 1_700_000_000_000, data))
    assert encoding.pack_at(key, 42, 1_700_000_000_000, data) == expected


@pytest.mark.parametrize("key", [b":users:1", "\u00e9:{x}".encode()])
def test_expire_matches_hiredis(key: bytes) -> None:
    assert expire(key, 3600) == pack_command((b"EXPIRE", key, 3600))


@pytest.mark.parametrize("encoding_type", [HashEncoding, StringEncoding, HashFieldsEncoding, JsonEncoding])
@pytest.mark.parametrize("version", [(7, 0, 15), (3, 2, 6)])
@pytest.mark.parametrize("key", [b":users:a\\:b", "ns:\u00e9 %s:{7}".encode()])
def test_pack_replace_is_multi_del_write_exec(
    encoding_type: type[Encoding], version: tuple[int, int, int], key: bytes
) -> None:
    encoding = encoding_type(ServerInfo(version=version, mode="standalone"))
    data = '{"a":"\u00e9","n":1.50}'.encode()
    (write,) = encoding.commands(key, 7, 1_700_000_000_000, data)
    expected = b"".join(pack_command(tuple(c)) for c in [(b"MULTI",), (b"DEL", key), write, (b"EXEC",)])
    assert encoding.pack_replace(key, 7, 1_700_000_000_000, data) == expected
