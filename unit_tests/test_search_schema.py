"""The search index's fields from a stream's JSON schema (search/schema.py), and FT.INFO's
attributes read back for comparison (search/index.py): pure logic, no server."""

from __future__ import annotations

from typing import Any

from destination_redis.search.index import _attributes, _shape
from destination_redis.search.schema import Vector, index_fields, schema_args

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": ["null", "string"]},
        "bio": {"type": "string"},
        "score": {"type": "number"},
        "ok": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "address": {"type": "object", "properties": {"city": {"type": "string"}, "geo": {
            "type": "object", "properties": {"lat": {"type": "number"}}}}},
        "emb": {"type": "array", "items": {"type": "number"}},
        "mixed": {"type": ["string", "integer"]},
        "untyped": {},
        "first name": {"type": "string"},
        "_airbyte_ab_id": {"type": "string"},
    },
}
OURS = ["_airbyte_ab_id", "NUMERIC", "SORTABLE", "_airbyte_emitted_at", "NUMERIC", "SORTABLE"]


def test_hash_fields_schema_scalars_only_text_fields_vectors_and_ours() -> None:
    fields = index_fields(SCHEMA, on_json=False, text_fields=["bio"], vectors={"emb": Vector(3)})
    assert schema_args(fields) == [
        "id", "NUMERIC", "SORTABLE", "name", "TAG", "SEPARATOR", "\x1f", "bio", "TEXT",
        "score", "NUMERIC", "SORTABLE", "ok", "TAG", "SEPARATOR", "\x1f",
        "first name", "AS", "first_name", "TAG", "SEPARATOR", "\x1f",
        "emb", "VECTOR", "HNSW", "6", "TYPE", "FLOAT32", "DIM", "3", "DISTANCE_METRIC", "COSINE",
        *OURS,
    ]


def test_json_schema_adds_arrays_of_strings_and_nested_scalars() -> None:
    fields = index_fields(SCHEMA, on_json=True, text_fields=["name", "tags"],
                          vectors={"emb": Vector(2, "L2", "FLAT")})
    args = schema_args(fields)
    assert args[:3] == ["$.id", "AS", "id"]
    assert args[5:9] == ["$.name", "AS", "name", "TEXT"]
    assert "$.tags[*]" in args
    assert args[args.index("$.tags[*]") + 3] == "TAG"
    assert args[args.index("$.address.city"):][:4] == ["$.address.city", "AS", "address_city", "TAG"]
    assert (
        args[args.index("$.address.geo.lat"):][:5]
    ) == ["$.address.geo.lat", "AS", "address_geo_lat", "NUMERIC", "SORTABLE"]
    assert args[args.index('$["first name"]'):][:4] == ['$["first name"]', "AS", "first_name", "TAG"]
    assert args[args.index("$.emb"):][:12] == [
        "$.emb", "AS", "emb", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM", "2", "DISTANCE_METRIC", "L2",
    ]
    assert args[-10:] == [
        "$._airbyte_ab_id", "AS", "_airbyte_ab_id", "NUMERIC", "SORTABLE",
        "$._airbyte_emitted_at", "AS", "_airbyte_emitted_at", "NUMERIC", "SORTABLE",
    ]
    assert "mixed" not in " ".join(args)
    assert "untyped" not in " ".join(args)


def test_no_schema_indexes_our_fields_only() -> None:
    assert schema_args(index_fields(None, on_json=False)) == OURS
    assert schema_args(index_fields({"type": "object"}, on_json=False)) == OURS


def test_ft_info_attributes_compare_with_the_fields_they_were_made_from() -> None:
    """FT.INFO's attribute lists (as RediSearch 2.10 answers them) read back to the same shapes."""
    info = {b"attributes": [
        [b"identifier", b"name", b"attribute", b"name", b"type", b"TEXT", b"WEIGHT", b"1"],
        [b"identifier", b"age", b"attribute", b"age", b"type", b"NUMERIC", b"SORTABLE", b"UNF"],
        [b"identifier", b"type", b"attribute", b"type", b"type", b"TAG", b"SEPARATOR", b","],
        [b"identifier", b"emb", b"attribute", b"emb", b"type", b"VECTOR", b"algorithm", b"HNSW",
         b"data_type", b"FLOAT32", b"dim", b"3", b"distance_metric", b"COSINE", b"M", b"16"],
    ]}
    schema = {"properties": {
        "name": {"type": "string"}, "age": {"type": "integer"}, "type": {"type": "string"},
    }}
    fields = index_fields(schema, on_json=False, text_fields=["name"], vectors={"emb": Vector(3)})
    read = _attributes(info)
    for field in fields[:4]:
        assert read[field.name] == _shape(field), field
    changed = index_fields(schema, on_json=False, vectors={"emb": Vector(4)})
    assert read["name"] != _shape(changed[0])  # TEXT -> TAG
    assert read["emb"] != _shape(next(f for f in changed if f.name == "emb"))  # dims 3 -> 4
