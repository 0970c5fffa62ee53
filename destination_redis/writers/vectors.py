"""Vector properties for the Redis query engine's VECTOR fields (FLOAT32): checked in every
record before it is buffered (so a bad one names its line), packed as FLOAT32 little endian where
a hash stores them (hash_fields); json keeps the arrays as they are."""

from __future__ import annotations

import struct
from collections.abc import Mapping

import msgspec

from destination_redis.writers.base import RecordError
from destination_redis.writers.fields import fields_decoder

FLOAT32_MAX = 3.4028235e38  # a larger magnitude is refused (struct.pack would round or overflow)
# The largest float32 magnitudes, packed: only a packed vector holding one of them can hold a
# number between FLOAT32_MAX and the float32 overflow (which rounds to them).
_EDGES = (struct.pack("<f", FLOAT32_MAX), struct.pack("<f", -FLOAT32_MAX))

_floats = msgspec.json.Decoder(list[float]).decode  # ints too; not bools, strings, nulls
_elements = msgspec.json.Decoder(list[msgspec.Raw]).decode
_float = msgspec.json.Decoder(float).decode
_NOT_NUMBERS = {0x22: "a string", 0x6E: "null", 0x74: "true", 0x66: "false", 0x5B: "an array",
                0x7B: "an object"}  # by the first byte of a JSON value


class Vectors:
    """A stream's vector properties (top-level names -> dimensions): checks a record's vectors
    and packs one as FLOAT32 little endian (what a hash's VECTOR field holds). A vector that is
    absent or null is allowed (the record has no vector); anything else must be an array of
    exactly `dims` JSON numbers (ints too), each of magnitude at most FLOAT32_MAX."""

    def __init__(self, vectors: Mapping[str, int]) -> None:
        for name, dims in vectors.items():
            if dims < 1:
                raise ValueError(f"the vector field {name!r} needs at least 1 dimension, not {dims}")
        self.dims = dict(vectors)
        self.names = list(self.dims)
        self.structs = {name: struct.Struct(f"<{dims}f") for name, dims in self.dims.items()}
        self._decode = fields_decoder(self.names)  # reads only the vector properties
        self._attributes = [(f"f{index}", name) for index, name in enumerate(self.names)]

    def check(self, data: bytes) -> None:
        """RecordError naming the first vector property of `data` that is no valid vector."""
        try:
            fields = self._decode(data)
        except msgspec.DecodeError:
            raise RecordError("the record's data is not a JSON object") from None
        for attribute, name in self._attributes:
            text = bytes(getattr(fields, attribute))
            if text != b"null" and self.packed(name, text) is None:
                raise RecordError(self.problem(name, text))

    def pack(self, name: str, text: bytes) -> bytes:
        """The FLOAT32 LE bytes of the vector property `name` whose JSON text is `text` (not
        null); RecordError if it is no valid vector (normally refused by `check` before)."""
        packed = self.packed(name, text)
        if packed is None:
            raise RecordError(self.problem(name, text))
        return packed

    def packed(self, name: str, text: bytes) -> bytes | None:
        """The FLOAT32 LE bytes of a valid vector's JSON text; None if it is no valid vector.
        One decode and one pack (C); a Python comparison of each number only when the packed
        bytes hold float32's largest magnitude."""
        try:
            values = _floats(text)
            packed = self.structs[name].pack(*values)
        except (msgspec.ValidationError, struct.error, OverflowError):
            return None  # no array of numbers, not `dims` of them, or beyond float32
        if (_EDGES[0] in packed or _EDGES[1] in packed) and (
            max(values) > FLOAT32_MAX or min(values) < -FLOAT32_MAX
        ):
            return None  # within rounding of the largest float32, beyond FLOAT32_MAX
        return packed

    def problem(self, name: str, text: bytes) -> str:
        """What is wrong with the vector property `name` (JSON text `text`, `packed` refused it),
        for a RecordError. Each value first (the first one that is no number, or out of float32
        range), then the count; positions count from 0, as in `$.emb[2]`."""
        try:
            elements = _elements(text)
        except msgspec.ValidationError:
            return f"the vector field {name!r} is not an array of numbers"
        for position, element in enumerate(elements):
            raw = bytes(element)
            kind = _NOT_NUMBERS.get(raw[0])
            if kind is not None:
                return f"the vector field {name!r} holds {kind} at position {position}, not a number"
            try:
                in_range = abs(_float(raw)) <= FLOAT32_MAX
            except msgspec.ValidationError:  # beyond a double's range
                in_range = False
            if not in_range:
                return (
                    f"the vector field {name!r} holds a number out of float32 range at position "
                    f"{position} (largest magnitude {FLOAT32_MAX:g})"
                )
        count = f"{len(elements)} number" + ("" if len(elements) == 1 else "s")
        return f"the vector field {name!r} holds {count}; its search index expects {self.dims[name]}"
