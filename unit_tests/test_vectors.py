"""Vector properties of a search index: hash_fields stores them as FLOAT32 little endian, json
keeps the array; both refuse a vector that is not `dims` numbers within float32 range."""

from __future__ import annotations

import re
import struct

import pytest

from destination_redis.commands import pack_command
from destination_redis.connection.server import ServerInfo
from destination_redis.writers.base import RecordError
from destination_redis.writers.encoding import F_EMITTED_AT, F_ID, Encoding
from destination_redis.writers.hash import HashEncoding
from destination_redis.writers.hash_fields import HashFieldsEncoding
from destination_redis.writers.json import JsonEncoding
from destination_redis.writers.string import StringEncoding
from destination_redis.writers.vectors import FLOAT32_MAX

SERVER = ServerInfo(version=(7, 2, 0), mode="standalone")
OLD_SERVER = ServerInfo(version=(3, 2, 6), mode="standalone")  # HMSET
KEY = b"users:1"
EMITTED = 1_700_000_000_000
F32_MAX_BYTES = struct.pack("<f", FLOAT32_MAX)


def f32(*values: float) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def packed(encoding: Encoding, data: bytes) -> bytes:
    return encoding.pack_at(KEY, 42, EMITTED, data)


def commands_packed(encoding: Encoding, data: bytes) -> bytes:
    return b"".join(pack_command(tuple(c)) for c in encoding.commands(KEY, 42, EMITTED, data))


def hset(verb: bytes, *fields: bytes) -> bytes:
    return pack_command((verb, KEY, *fields, F_ID, b"42", F_EMITTED_AT, b"%d" % EMITTED))


# hash_fields: FLOAT32 LE bytes ------------------------------------------------------------------


@pytest.mark.parametrize(("server", "verb"), [(SERVER, b"HSET"), (OLD_SERVER, b"HMSET")])
def test_hash_fields_packs_a_vector_as_float32_little_endian(server: ServerInfo, verb: bytes) -> None:
    encoding = HashFieldsEncoding(server, {"emb": 3})
    data = b'{"id":1,"emb":[0.1,0.2,0.3],"name":"a \\"b\\"","n":null,"tags":[1,2]}'
    encoding.check_record(data)
    expected = hset(verb, b"id", b"1", b"emb", f32(0.1, 0.2, 0.3), b"name", b'a "b"', b"tags", b"[1,2]")
    assert f32(0.1, 0.2, 0.3) == bytes.fromhex("cdcccc3dcdcc4c3e9a99993e")  # LE, 4 bytes each
    assert packed(encoding, data) == expected
    assert commands_packed(encoding, data) == expected


def test_hash_fields_packs_every_vector_and_the_id_layout_and_replace_agree() -> None:
    encoding = HashFieldsEncoding(SERVER, {"a": 2, "b": 1})
    data = b'{"b":[-1.5],"x":"y","a":[1e-3,2E2]}'
    expected = hset(b"HSET", b"b", f32(-1.5), b"x", b"y", b"a", f32(1e-3, 2e2))
    assert packed(encoding, data) == expected
    assert commands_packed(encoding, data) == expected
    pack = encoding.packer(b"users", 60)
    fields = (b"b", f32(-1.5), b"x", b"y", b"a", f32(1e-3, 2e2))
    at_id = pack_command((b"HSET", b"users:7", *fields, F_ID, b"7", F_EMITTED_AT, b"0"))
    assert pack(7, 0, data) == at_id + pack_command((b"EXPIRE", b"users:7", b"60"))
    replace = encoding.pack_replace(KEY, 42, EMITTED, data)
    assert replace == pack_command((b"MULTI",)) + pack_command((b"DEL", KEY)) + expected + pack_command(
        (b"EXEC",)
    )


def test_ints_and_every_json_number_form_are_accepted() -> None:
    data = b'{"emb":[1,-2,0,-0,-0.0,3e2,1E-3,2.5e+1,12345678901234567890,1e-50]}'
    for encoding in (HashFieldsEncoding(SERVER, {"emb": 10}), JsonEncoding(SERVER, {"emb": 10})):
        encoding.check_record(data)
    # -0 is the integer 0; -0.0 keeps its sign; 1e-50 is below float32's smallest: 0
    values = (1, -2, 0, 0, -0.0, 300, 0.001, 25, 12345678901234567890, 1e-50)
    expected = hset(b"HSET", b"emb", f32(*values))
    assert packed(HashFieldsEncoding(SERVER, {"emb": 10}), data) == expected


def test_float32_range_bounds_are_accepted() -> None:
    encoding = HashFieldsEncoding(SERVER, {"emb": 2})
    data = b'{"emb":[3.4028235e38,-3.4028235e38]}'
    encoding.check_record(data)
    JsonEncoding(SERVER, {"emb": 2}).check_record(data)
    expected = hset(b"HSET", b"emb", F32_MAX_BYTES + struct.pack("<f", -FLOAT32_MAX))
    assert packed(encoding, data) == expected
    assert bytes.fromhex("ffff7f7f") == F32_MAX_BYTES  # the largest float32


def test_a_vector_name_is_found_when_the_record_escapes_it() -> None:
    encoding = HashFieldsEncoding(SERVER, {"\u00e9mb": 1})
    data = b'{"\\u00e9mb":[2]}'
    encoding.check_record(data)
    assert packed(encoding, data) == hset(b"HSET", "\u00e9mb".encode(), f32(2))
    with pytest.raises(RecordError, match="holds a string"):
        encoding.check_record(b'{"\\u00e9mb":["2"]}')


# json: the document keeps the array ----------------------------------------------------------


def test_json_keeps_the_document_as_it_is() -> None:
    data = b'{"id":1,"emb":[0.1,2,3e0],"other":[1,"x"]}'
    with_vectors = JsonEncoding(SERVER, {"emb": 3})
    with_vectors.check_record(data)
    assert with_vectors.commands(KEY, 42, EMITTED, data) == JsonEncoding(SERVER).commands(
        KEY, 42, EMITTED, data
    )
    doc = b'{"id":1,"emb":[0.1,2,3e0],"other":[1,"x"],"_airbyte_ab_id":42,"_airbyte_emitted_at":%d}'
    assert with_vectors.commands(KEY, 42, EMITTED, data) == [(b"JSON.SET", KEY, b"$", doc % EMITTED)]
    assert packed(with_vectors, data) == pack_command((b"JSON.SET", KEY, b"$", doc % EMITTED))


# absent or null: no vector -------------------------------------------------------------------


@pytest.mark.parametrize("data", [b'{"id":1}', b'{"id":1,"emb":null}', b"{}"])
def test_an_absent_or_null_vector_is_allowed(data: bytes) -> None:
    hash_fields = HashFieldsEncoding(SERVER, {"emb": 3})
    json = JsonEncoding(SERVER, {"emb": 3})
    hash_fields.check_record(data)
    json.check_record(data)
    fields = (b"id", b"1") if b"id" in data else ()
    assert packed(hash_fields, data) == hset(b"HSET", *fields)  # no emb field
    assert commands_packed(hash_fields, data) == hset(b"HSET", *fields)
    assert json.commands(KEY, 42, EMITTED, data) == JsonEncoding(SERVER).commands(KEY, 42, EMITTED, data)


# refusals --------------------------------------------------------------------------------------

OUT_OF_RANGE = "the vector field 'emb' holds a number out of float32 range at position %d"

REFUSALS = [
    (b'{"emb":[1,2]}', "the vector field 'emb' holds 2 numbers; its search index expects 3"),
    (b'{"emb":[1,2,3,4]}', "the vector field 'emb' holds 4 numbers; its search index expects 3"),
    (b'{"emb":[1]}', "the vector field 'emb' holds 1 number; its search index expects 3"),
    (b'{"emb":[]}', "the vector field 'emb' holds 0 numbers; its search index expects 3"),
    (b'{"emb":[1,2,"3"]}', "the vector field 'emb' holds a string at position 2, not a number"),
    (b'{"emb":[1,null,3]}', "the vector field 'emb' holds null at position 1, not a number"),
    (b'{"emb":[true,2,3]}', "the vector field 'emb' holds true at position 0, not a number"),
    (b'{"emb":[1,false,3]}', "the vector field 'emb' holds false at position 1, not a number"),
    (b'{"emb":[1,2,[3]]}', "the vector field 'emb' holds an array at position 2, not a number"),
    (b'{"emb":[{"x":1},2,3]}', "the vector field 'emb' holds an object at position 0, not a number"),
    (b'{"emb":[1,"x"]}', "the vector field 'emb' holds a string at position 1, not a number"),
    (b'{"emb":"[1,2,3]"}', "the vector field 'emb' is not an array of numbers"),
    (b'{"emb":1}', "the vector field 'emb' is not an array of numbers"),
    (b'{"emb":true}', "the vector field 'emb' is not an array of numbers"),
    (b'{"emb":{"0":1,"1":2,"2":3}}', "the vector field 'emb' is not an array of numbers"),
    (b'{"emb":[1,3.5e38,3]}', OUT_OF_RANGE % 1),
    (b'{"emb":[1,2,-1e39]}', OUT_OF_RANGE % 2),
    (b'{"emb":[3.4028236e38,2,3]}', OUT_OF_RANGE % 0),
    (b'{"emb":[1,2,3.4028235000001e38]}', OUT_OF_RANGE % 2),  # rounds to the largest float32
    (b'{"emb":[1,-3.40282356e38,3]}', OUT_OF_RANGE % 1),
    (b'{"emb":[1e400,2,3]}', OUT_OF_RANGE % 0),
    (b'{"emb":[1,1' + b"0" * 400 + b",3]}", OUT_OF_RANGE % 1),
    (b'{"emb":[1e39,2]}', OUT_OF_RANGE % 0),  # a number's problem is told before the count
]


@pytest.mark.parametrize("encoding_type", [HashFieldsEncoding, JsonEncoding])
@pytest.mark.parametrize(("data", "message"), REFUSALS)
def test_a_bad_vector_is_refused_naming_the_property_and_the_problem(
    encoding_type: type[Encoding], data: bytes, message: str
) -> None:
    encoding = encoding_type(SERVER, {"emb": 3})
    with pytest.raises(RecordError) as refused:
        encoding.check_record(b'{"id":1,' + data[1:])
    text = str(refused.value)
    assert text.startswith(message)
    assert not text.endswith(".")  # the caller appends one and the line number


@pytest.mark.parametrize(("data", "message"), REFUSALS)
def test_hash_fields_packing_an_unchecked_bad_vector_refuses_as_the_check_does(
    data: bytes, message: str
) -> None:
    encoding = HashFieldsEncoding(SERVER, {"emb": 3})
    with pytest.raises(RecordError, match="^" + re.escape(message)):
        packed(encoding, data)
    with pytest.raises(RecordError, match="^" + re.escape(message)):
        encoding.commands(KEY, 42, EMITTED, data)


def test_the_first_bad_vector_is_named() -> None:
    encoding = HashFieldsEncoding(SERVER, {"a": 2, "b": 2})
    message = r"^the vector field 'b' holds 1 number; its search index expects 2$"
    with pytest.raises(RecordError, match=message):
        encoding.check_record(b'{"a":[1,2],"b":[1]}')
    with pytest.raises(RecordError, match=r"^the vector field 'a' "):
        encoding.check_record(b'{"b":[1],"a":["x",2]}')


@pytest.mark.parametrize("encoding_type", [HashFieldsEncoding, JsonEncoding])
@pytest.mark.parametrize("data", [b"[1,2,3]", b"not json", b'{"emb":[1,2,3]'])
def test_a_record_that_is_no_json_object_is_refused(encoding_type: type[Encoding], data: bytes) -> None:
    with pytest.raises(RecordError, match=r"^the record's data is not a JSON object$"):
        encoding_type(SERVER, {"emb": 3}).check_record(data)


def test_a_vector_needs_a_dimension() -> None:
    with pytest.raises(ValueError, match="'emb' needs at least 1 dimension"):
        HashFieldsEncoding(SERVER, {"emb": 0})


# without vectors: as before ----------------------------------------------------------------------


def test_a_stream_without_vectors_stores_a_vector_like_property_as_json_text() -> None:
    data = b'{"emb":[0.1,0.2,0.3],"bad":[1,"x"]}'
    no_vectors: list[dict[str, int] | None] = [None, {}]
    for vectors in no_vectors:
        encoding = HashFieldsEncoding(SERVER, vectors)
        assert encoding.vectors == {}
        encoding.check_record(data)  # checks nothing
        expected = hset(b"HSET", b"emb", b"[0.1,0.2,0.3]", b"bad", b'[1,"x"]')
        assert packed(encoding, data) == expected
        assert commands_packed(encoding, data) == expected
        JsonEncoding(SERVER, vectors).check_record(data)  # checks nothing
    # another stream's vector name does not matter here
    other = HashFieldsEncoding(SERVER, {"vec": 3})
    assert packed(other, data) == hset(b"HSET", b"emb", b"[0.1,0.2,0.3]", b"bad", b'[1,"x"]')


@pytest.mark.parametrize("encoding_type", [HashEncoding, StringEncoding, HashFieldsEncoding, JsonEncoding])
def test_every_encoding_takes_vectors_and_keeps_a_copy(encoding_type: type[Encoding]) -> None:
    given = {"emb": 3}
    encoding = encoding_type(SERVER, given)
    given["emb"] = 4
    assert encoding.vectors == {"emb": 3}
    assert encoding_type(SERVER).vectors == {}
    encoding_type(SERVER).check_record(b'{"emb":"no vector"}')  # without vectors: nothing to check
    # Given vectors (only hash_fields and json are: the types a search index covers), any
    # encoding checks them the same way.
    with pytest.raises(RecordError, match="the vector field 'emb' is not an array of numbers"):
        encoding.check_record(b'{"emb":"no vector"}')
