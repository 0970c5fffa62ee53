"""The configured catalog as this destination needs it, and matching records to its streams.

Parsed with our own tolerant model rather than the CDK's: unknown fields and nulls are fine,
while what the contract needs (stream name, sync mode) is checked with a clear message.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from destination_redis.errors import config_error

SUPPORTED_SYNC_MODES = ("append", "overwrite", "append_dedup")


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Stream(_Model):
    name: str
    namespace: str | None = None
    json_schema: dict[str, Any] | None = None


class _ConfiguredStream(_Model):
    stream: _Stream
    destination_sync_mode: str = "append"
    sync_mode: str | None = None
    primary_key: list[list[str]] | None = None
    generation_id: int | None = None
    minimum_generation_id: int | None = None
    sync_id: int | None = None


class _Catalog(_Model):
    streams: list[_ConfiguredStream]


@dataclass(frozen=True)
class Stream:
    """One configured stream: its identity in the catalog and how it is synced."""

    name: str
    namespace: str  # "" when the catalog gives none
    sync_mode: Literal["append", "overwrite", "append_dedup"]
    generation_id: int | None = None
    minimum_generation_id: int | None = None
    primary_key: tuple[tuple[str, ...], ...] = ()
    # The stream's JSON schema as the catalog gives it (not part of the stream's identity).
    json_schema: dict[str, Any] | None = field(default=None, compare=False, hash=False)

    def lacks_property(self, path: tuple[str, ...]) -> bool:
        """True when the schema lists the properties of the object along `path` and the path's
        property is not among them: a record can then never have it. Unknown (no schema, an
        object without a `properties` list, or with additionalProperties): False."""
        schema: Any = self.json_schema
        for part in path:
            if not isinstance(schema, dict):
                return False
            properties = schema.get("properties")
            if not isinstance(properties, dict) or schema.get("additionalProperties") not in (None, False):
                return False
            if part not in properties:
                return True
            schema = properties[part]
        return False

    @property
    def oldest_kept_generation(self) -> int:
        """Generations below this go once the stream completes. An `overwrite` keeps only its own
        generation whatever minimum it came with: it promises exactly this sync's records."""
        minimum = self.minimum_generation_id or 0
        if self.sync_mode == "overwrite" and self.generation_id is not None:
            return max(minimum, self.generation_id)
        return minimum

    @property
    def tracks_generations(self) -> bool:
        """Refresh-aware catalog (platform >= 1.0): old data goes only after a successful sync."""
        return self.generation_id is not None

    @property
    def label(self) -> str:
        return f"{self.namespace}.{self.name}" if self.namespace else self.name


def load_catalog(path: str | Path) -> list[Stream]:
    """Read and validate the catalog file (any file name: PyAirbyte writes `*.txt`)."""
    try:
        raw = orjson.loads(Path(path).read_bytes())
    except OSError as exc:
        raise config_error(f"Cannot read the catalog file {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise config_error(f"The catalog file {path} is not JSON: {exc}") from None
    return parse_catalog(raw)


def parse_catalog(raw: object) -> list[Stream]:
    try:
        catalog = _Catalog.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise config_error(f"Invalid configured catalog: {problems}") from None
    streams: list[Stream] = []
    seen: set[tuple[str, str]] = set()
    for configured in catalog.streams:
        namespace = configured.stream.namespace or ""
        name = configured.stream.name
        mode = configured.destination_sync_mode
        if mode not in SUPPORTED_SYNC_MODES:
            raise config_error(
                f"Stream '{name}' asks for destination sync mode '{mode}', which this destination "
                f"does not support; choose one of: {', '.join(SUPPORTED_SYNC_MODES)}."
            )
        primary_key = tuple(tuple(path) for path in configured.primary_key or () if path)
        if mode == "append_dedup" and not primary_key:
            raise config_error(
                f"Stream '{name}' asks for append_dedup but has no primary key; set a primary key "
                f"in the connection, or sync it with append or overwrite."
            )
        if (namespace, name) in seen:
            raise config_error(f"Stream '{name}' (namespace '{namespace}') appears twice in the catalog.")
        seen.add((namespace, name))
        streams.append(
            Stream(
                name=name,
                namespace=namespace,
                sync_mode=mode,  # type: ignore[arg-type]  # checked against SUPPORTED_SYNC_MODES
                generation_id=configured.generation_id,
                minimum_generation_id=configured.minimum_generation_id,
                primary_key=primary_key,
                json_schema=configured.stream.json_schema,
            )
        )
    return streams


class StreamResolver:
    """Finds the configured stream of a record or state from its (namespace, name).

    A record's own namespace wins; a record without one belongs to the configured stream of that
    name (whatever its namespace) as long as exactly one has that name.
    """

    def __init__(self, streams: Iterable[Stream]) -> None:
        self._exact: dict[tuple[str, str], Stream] = {}
        self._by_name: dict[str, list[Stream]] = {}
        for stream in streams:
            self._exact[(stream.namespace, stream.name)] = stream
            self._by_name.setdefault(stream.name, []).append(stream)

    def find(self, namespace: str | None, name: str) -> Stream | None:
        stream = self._exact.get((namespace or "", name))
        if stream is not None or namespace:
            return stream
        candidates = self._by_name.get(name, [])
        return candidates[0] if len(candidates) == 1 else None

    def describe_missing(self, namespace: str | None, name: str) -> str:
        candidates = self._by_name.get(name, [])
        if not namespace and len(candidates) > 1:
            spaces = ", ".join(sorted(s.namespace for s in candidates))
            return (
                f"Record for stream '{name}' has no namespace, and the catalog has this stream in "
                f"several namespaces ({spaces}); the source must send the record's namespace."
            )
        where = f" in namespace '{namespace}'" if namespace else ""
        known = ", ".join(sorted(f"'{s.label}'" for s in self._exact.values())) or "none"
        return (
            f"Record for stream '{name}'{where}, which is not in the configured catalog "
            f"(configured streams: {known})."
        )
