"""The index's fields, from the stream's `json_schema` in the catalog (pure: no Redis).

- string -> TAG (TEXT when listed in `text_fields`); integer / number -> NUMERIC SORTABLE;
  boolean -> TAG (`true` / `false`); a type list with "null" is its other type.
- `json` also indexes arrays of strings (TAG over `$.f[*]`) and the scalar properties of nested
  objects (`$.a.b AS a_b`, any depth); `hash_fields` stores objects and arrays as JSON text,
  which is not indexed.
- `vector_fields`: VECTOR FLOAT32 (HNSW or FLAT) with the dims and distance metric given.
- The connector's `_airbyte_ab_id` and `_airbyte_emitted_at`: NUMERIC SORTABLE, always.
A property whose type cannot be told (absent, or several non-null types) is not indexed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["TAG", "TEXT", "NUMERIC", "VECTOR"]

ID_FIELD = "_airbyte_ab_id"
TAG_SEPARATOR = "\x1f"  # the unit separator: not in values, so a hash's TAG is the whole value
EMITTED_AT_FIELD = "_airbyte_emitted_at"
# An attribute name the query syntax takes as it is (@name); others are named a_b_c.
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Vector:
    """How a vector property is indexed: FLOAT32 of `dims` numbers."""

    dims: int
    distance_metric: str = "COSINE"
    algorithm: str = "HNSW"


@dataclass(frozen=True)
class IndexField:
    """One field of the index: where the value is (`source`: a hash field, or a JSONPath) and the
    attribute name queries use (`@name`)."""

    source: str
    name: str
    kind: Kind
    vector: Vector | None = None

    def args(self) -> list[str]:
        """This field's words in FT.CREATE / FT.ALTER's SCHEMA."""
        words = [self.source] if self.source == self.name else [self.source, "AS", self.name]
        if self.kind == "VECTOR" and self.vector is not None:
            v = self.vector
            return [*words, "VECTOR", v.algorithm, "6", "TYPE", "FLOAT32", "DIM", str(v.dims),
                    "DISTANCE_METRIC", v.distance_metric]
        if self.kind == "NUMERIC":
            return [*words, "NUMERIC", "SORTABLE"]
        if self.kind == "TAG" and not self.source.startswith("$"):
            # A hash's TAG splits on "," by default: a whole value ("tools, garden") is one tag.
            return [*words, "TAG", "SEPARATOR", TAG_SEPARATOR]
        return [*words, self.kind]


def index_fields(
    json_schema: Mapping[str, Any] | None,
    on_json: bool,
    text_fields: Sequence[str] = (),
    vectors: Mapping[str, Vector] | None = None,
) -> list[IndexField]:
    """The index's fields for a stream's schema; `on_json`: the `json` cache type (else
    `hash_fields`). Vector fields are indexed whether or not the schema lists them."""
    vectors = dict(vectors or {})
    texts = set(text_fields)
    fields: list[IndexField] = []
    properties = _properties(json_schema)
    for path, kind in _scalars(properties, on_json):
        dotted = ".".join(path)
        if dotted in vectors or path[0] in (ID_FIELD, EMITTED_AT_FIELD):
            continue
        array = on_json and _is_array(properties, path)
        if kind == "TAG" and dotted in texts and not array:
            kind = "TEXT"
        fields.append(IndexField(_source(path, on_json, array), _attribute(path), kind))
    for dotted, vector in vectors.items():
        path = tuple(dotted.split("."))
        fields.append(IndexField(_source(path, on_json), _attribute(path), "VECTOR", vector))
    fields.append(IndexField(_source((ID_FIELD,), on_json), ID_FIELD, "NUMERIC"))
    fields.append(IndexField(_source((EMITTED_AT_FIELD,), on_json), EMITTED_AT_FIELD, "NUMERIC"))
    return fields


def schema_args(fields: Sequence[IndexField]) -> list[str]:
    return [word for field in fields for word in field.args()]


def _source(path: tuple[str, ...], on_json: bool, array: bool = False) -> str:
    if not on_json:
        return path[0]
    steps = "".join(f".{p}" if _PLAIN.match(p) else f'["{_escape(p)}"]' for p in path)
    return f"${steps}[*]" if array else f"${steps}"


def _attribute(path: tuple[str, ...]) -> str:
    """`a_b` for `a.b`; characters the query syntax would need escaped become `_`."""
    name = "_".join(path)
    return name if _PLAIN.match(name) else re.sub(r"[^A-Za-z0-9_]", "_", name)


def _escape(part: str) -> str:
    return part.replace("\\", "\\\\").replace('"', '\\"')


def _properties(schema: Any) -> dict[str, Any]:
    if not isinstance(schema, Mapping):
        return {}
    properties = schema.get("properties")
    return dict(properties) if isinstance(properties, Mapping) else {}


def _types(schema: Any) -> set[str]:
    """The property's JSON types other than "null"."""
    if not isinstance(schema, Mapping):
        return set()
    declared = schema.get("type")
    names = [declared] if isinstance(declared, str) else list(declared or [])
    for option in schema.get("anyOf", []) or schema.get("oneOf", []) or []:
        if isinstance(option, Mapping) and isinstance(option.get("type"), str):
            names.append(option["type"])
    return {n for n in names if isinstance(n, str) and n != "null"}


_KINDS: dict[str, Kind] = {"string": "TAG", "integer": "NUMERIC", "number": "NUMERIC", "boolean": "TAG"}


def _scalars(properties: Mapping[str, Any], on_json: bool, at: tuple[str, ...] = ()) -> Iterator[
    tuple[tuple[str, ...], Kind]
]:
    """(path, kind) of each indexable property: top-level scalars; for `json` also arrays of
    strings and, recursively, the scalars of nested objects."""
    for name, schema in properties.items():
        path = (*at, name)
        types = _types(schema)
        if types == {"number", "integer"}:
            types = {"number"}
        if len(types) != 1:
            continue
        (kind_name,) = types
        if kind_name in _KINDS:
            yield path, _KINDS[kind_name]
        elif on_json and kind_name == "array" and _types(schema.get("items")) == {"string"}:
            yield path, "TAG"
        elif on_json and kind_name == "object":
            yield from _scalars(_properties(schema), on_json, path)


def _is_array(properties: Mapping[str, Any], path: tuple[str, ...]) -> bool:
    schema: Any = {"properties": properties}
    for part in path:
        schema = _properties(schema).get(part)
    return _types(schema) == {"array"}
