"""Typed configuration, built once from the JSON the user gave; the one place for defaults.

The models accept every config that Airbyte's 0.1.4 connector accepted (host, port, username,
password, ssl, ssl_mode, cache_type, tunnel_method) and ignore unknown keys, so old configs keep
working. `unit_tests/test_spec.py` proves that these models and `spec.json` agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from destination_redis.errors import config_error
from destination_redis.key_template import KeyTemplate, TemplateError


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SslDisabled(_Model):
    mode: Literal["disable"] = "disable"


class SslVerifyFull(_Model):
    mode: Literal["verify-full"]
    ca_certificate: SecretStr | None = None
    client_certificate: SecretStr | None = None
    client_key: SecretStr | None = None
    client_key_password: SecretStr | None = None


class NoTunnel(_Model):
    tunnel_method: Literal["NO_TUNNEL"] = "NO_TUNNEL"


class SshKeyTunnel(_Model):
    tunnel_method: Literal["SSH_KEY_AUTH"]
    tunnel_host: str
    tunnel_port: int = Field(22, ge=0, le=65536)
    tunnel_user: str
    ssh_key: SecretStr


class SshPasswordTunnel(_Model):
    tunnel_method: Literal["SSH_PASSWORD_AUTH"]
    tunnel_host: str
    tunnel_port: int = Field(22, ge=0, le=65536)
    tunnel_user: str
    tunnel_user_password: SecretStr


# "host:port", "[v6::addr]:port": another node of a cluster, or another Sentinel.
ADDRESS_PATTERN = r"^(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):[0-9]{1,5}$"
Address = Annotated[str, Field(pattern=ADDRESS_PATTERN)]


def parse_address(text: str) -> tuple[str, int]:
    """("host", port) of a validated "host:port" or "[v6]:port"."""
    host, _, port = text.strip().rpartition(":")
    return host.strip("[]"), int(port)


class StandaloneTopology(_Model):
    mode: Literal["standalone"] = "standalone"


class ClusterTopology(_Model):
    """`host`/`port` is one node of the cluster; `seed_nodes` more to try; the rest are discovered."""

    mode: Literal["cluster"]
    seed_nodes: list[Address] = []


class SentinelTopology(_Model):
    """`host`/`port` is one Sentinel; `sentinel_nodes` the others; the master is asked for by name."""

    mode: Literal["sentinel"]
    master_name: str = Field(min_length=1)
    sentinel_nodes: list[Address] = []
    sentinel_username: str | None = None
    sentinel_password: SecretStr | None = None

    _blank_to_none = field_validator("sentinel_username", "sentinel_password", mode="before")(
        lambda value: None if value == "" else value
    )


SslMode = Annotated[SslDisabled | SslVerifyFull, Field(discriminator="mode")]
Topology = Annotated[
    StandaloneTopology | ClusterTopology | SentinelTopology, Field(discriminator="mode")
]
TunnelMethod = Annotated[NoTunnel | SshKeyTunnel | SshPasswordTunnel, Field(discriminator="tunnel_method")]


# The cache types (writers/): one key per record, or the stream's records in one key (collections).
CacheType = Literal["hash", "hash_fields", "json", "string", "list", "set", "sorted_set", "stream"]
COLLECTION_TYPES: frozenset[str] = frozenset({"list", "set", "sorted_set", "stream"})

MAX_WAIT_TIMEOUT_MS = 25_000


class VectorFieldConfig(_Model):
    """A property holding an embedding: indexed as VECTOR FLOAT32 of `dims` numbers."""

    field: str = Field(min_length=1)
    dims: int = Field(ge=1, le=32768)
    distance_metric: Literal["COSINE", "L2", "IP"] = "COSINE"
    algorithm: Literal["HNSW", "FLAT"] = "HNSW"


class SearchIndexConfig(_Model):
    """A search index over a stream's records (search/): presence turns it on."""

    name: str | None = Field(None, min_length=1)
    text_fields: list[str] = []
    vector_fields: list[VectorFieldConfig] = []
    indexing_timeout_seconds: int = Field(300, ge=1, le=86_400)


def _valid_template(value: str | None) -> str | None:
    """A key_template's syntax is checked with the config, so `check` refuses a bad one too."""
    if value is not None:
        try:
            KeyTemplate.parse(value)
        except TemplateError as exc:
            raise ValueError(str(exc)) from None
    return value


class StreamOverride(_Model):
    """Settings for one stream; without `namespace` it applies to that name in every namespace."""

    name: str = Field(min_length=1)
    namespace: str | None = None
    cache_type: CacheType | None = None
    ttl_seconds: int | None = Field(None, ge=0)
    score_field: str | None = Field(None, min_length=1)
    key_template: str | None = None
    expire_at_field: str | None = Field(None, min_length=1)
    ttl_field: str | None = Field(None, min_length=1)
    search_index: SearchIndexConfig | None = None

    _blank_to_none = field_validator("key_template", "expire_at_field", "ttl_field", mode="before")(
        lambda value: None if value == "" else value
    )
    _template = field_validator("key_template")(_valid_template)


@dataclass(frozen=True)
class StreamSettings:
    """What one stream is written with, after the `streams` overrides."""

    cache_type: CacheType
    ttl_seconds: int | None  # None: keys never expire
    score_field: str | None = None  # sorted_set: the top-level property that scores; None: emitted_at
    key_template: str | None = None  # the record keys' names (key_template.py); None: K:<id> / K:<pk>
    expire_at_field: str | None = None  # a top-level property holding when the record's key expires
    ttl_field: str | None = None  # a top-level property holding the record key's seconds to live
    search_index: SearchIndexConfig | None = None  # None: no index


def _empty_to_none(value: Any) -> Any:
    """0.1.4 required username and password, so old configs carry "" where they mean none."""
    return None if value == "" else value


class RedisConfig(_Model):
    host: str = Field(min_length=1)
    port: int = Field(6379, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    db: int = Field(0, ge=0)
    cache_type: CacheType = "hash"
    ttl_seconds: int | None = Field(None, ge=0)
    score_field: str | None = None
    expire_at_field: str | None = None
    ttl_field: str | None = None
    search_index: SearchIndexConfig | None = None
    key_prefix: str = ""
    streams: list[StreamOverride] = []
    ssl: bool = False
    ssl_mode: SslMode = SslDisabled()
    tunnel_method: TunnelMethod = NoTunnel()
    topology: Topology = StandaloneTopology()
    # Durability (topology/durability.py): WAIT / WAITAOF before each state. The timeout is capped
    # so that WAIT and WAITAOF together stay under the connection's 60 s socket timeout.
    wait_for_replicas: int = Field(0, ge=0)
    wait_timeout_ms: int = Field(10_000, ge=1, le=MAX_WAIT_TIMEOUT_MS)
    wait_for_aof: bool = False

    _blank_to_none = field_validator(
        "username", "password", "score_field", "expire_at_field", "ttl_field", mode="before"
    )(_empty_to_none)

    @field_validator("host")
    @classmethod
    def _strip_host(cls, value: str) -> str:
        return value.strip()

    def settings_for(self, namespace: str, name: str) -> StreamSettings:
        """The stream's cache type and TTL: an override naming its namespace wins over one
        without a namespace, which wins over the top-level settings. ("" is no namespace.)"""
        cache_type, ttl, score_field = self.cache_type, self.ttl_seconds, self.score_field
        expire_at_field, ttl_field = self.expire_at_field, self.ttl_field
        template, index = None, self.search_index
        for override in self.overrides_for(namespace, name):
            cache_type = override.cache_type or cache_type
            ttl = override.ttl_seconds if override.ttl_seconds is not None else ttl
            score_field = override.score_field or score_field
            template = override.key_template or template
            expire_at_field = override.expire_at_field or expire_at_field
            ttl_field = override.ttl_field or ttl_field
            index = override.search_index or index
        return StreamSettings(  # ttl 0 means no TTL
            cache_type, ttl or None, score_field, template, expire_at_field, ttl_field, index
        )

    def overrides_for(self, namespace: str, name: str) -> list[StreamOverride]:
        """The `streams` entries of a stream, the one naming its namespace last (it wins)."""
        matches = [o for o in self.streams if o.name == name and o.namespace in (None, namespace)]
        return sorted(matches, key=lambda o: o.namespace is not None)

    @property
    def expires_from_data(self) -> bool:
        """Whether any stream's keys may expire from its data: what check must prove possible."""
        return bool(self.expire_at_field or self.ttl_field) or any(
            entry.expire_at_field or entry.ttl_field for entry in self.streams
        )

    @property
    def indexes(self) -> bool:
        """Whether any stream may have a search index: what check must prove possible."""
        return self.search_index is not None or any(o.search_index for o in self.streams)

    @property
    def cache_types(self) -> set[CacheType]:
        """Every cache type this config may write: what check must prove works."""
        return {self.cache_type} | {o.cache_type for o in self.streams if o.cache_type}

    @property
    def tls(self) -> SslVerifyFull | None:
        """TLS settings in force, or None.

        `ssl` is the switch, as in 0.1.4; `ssl_mode` only says how to verify. With `ssl` on and
        mode `disable` we still verify against the system trust store: never silently unverified.
        """
        if not self.ssl:
            return None
        if isinstance(self.ssl_mode, SslVerifyFull):
            return self.ssl_mode
        return SslVerifyFull(mode="verify-full")


def parse_config(raw: Any) -> RedisConfig:
    """Validate the user's JSON; a bad config is a config_error that names each bad field."""
    try:
        return RedisConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {_problem(err)}" for err in exc.errors()
        )
        raise config_error(f"Invalid configuration: {problems}") from None


def _problem(err: Any) -> str:
    """Pydantic's message, without its "Value error, " before our own validators' words."""
    if err["type"] == "value_error" and "error" in err.get("ctx", {}):
        return str(err["ctx"]["error"])
    return str(err["msg"])


def load_config_file(path: str | Path) -> dict[str, Any]:
    """The JSON object in the `--config` file; a missing, unreadable or malformed file is a
    config_error naming the file and the problem (no traceback: the user must fix the file)."""
    try:
        raw = orjson.loads(Path(path).read_bytes())
    except OSError as exc:
        raise config_error(
            f"Cannot read the config file {path}: {exc.strerror or type(exc).__name__}."
        ) from None
    except orjson.JSONDecodeError as exc:
        raise config_error(f"The config file {path} is not JSON ({exc}).") from None
    if not isinstance(raw, dict):
        raise config_error(
            f"The config file {path} must hold a JSON object of settings, not {_json_kind(raw)}."
        )
    return raw


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    return "a number" if isinstance(value, int | float) and not isinstance(value, bool) else "a boolean"
