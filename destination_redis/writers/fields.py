"""Reading only the properties a writer needs from a record's JSON: the values of a key (primary
key or key template) and of its expiry, without decoding the rest of the record."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

_NULL = msgspec.Raw(b"null")

# A JSON object's fields as raw JSON: only the top level is decoded, numbers keep their text.
object_fields = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode


def fields_decoder(names: list[str]) -> Callable[[bytes], msgspec.Struct]:
    """Decodes a record's JSON object into a struct of the named top-level properties, each as
    raw JSON (`null` where absent; msgspec skips the other properties without building them).
    Field names are f0, f1, ... renamed to the property names, so any property name works."""
    fields = [(f"f{i}", msgspec.Raw, _NULL) for i in range(len(names))]
    rename = {f"f{i}": name for i, name in enumerate(names)}
    struct = msgspec.defstruct("RecordFields", fields, rename=rename)
    return msgspec.json.Decoder(struct).decode


def follow(raw: msgspec.Raw, path: tuple[str, ...]) -> msgspec.Raw | None:
    """The raw value at a dotted `path`, `raw` being the value of its first property; None where
    a step of the path is absent, null or not an object."""
    value: msgspec.Raw | None = raw
    for part in path[1:]:
        fields = object_fields(value) if value is not None and bytes(value)[:1] == b"{" else None
        value = fields.get(part) if fields is not None else None
    return value
