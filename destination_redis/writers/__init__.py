"""The per-record cache types: an addressing (by_id: `K:<id>`; by_key: `K:<pk>` for
append_dedup) combined with an encoding of the value (hash, hash_fields, json, string). The
collection types (list, set, sorted_set, stream) will be a third addressing, one key `K`."""

from destination_redis.catalog import Stream
from destination_redis.config import CacheType, RedisConfig
from destination_redis.connection.server import ServerInfo
from destination_redis.errors import config_error
from destination_redis.topology.router import Router
from destination_redis.writers.base import RecordError, StreamWriter
from destination_redis.writers.by_id import IdWriter
from destination_redis.writers.by_key import KeyWriter
from destination_redis.writers.encoding import Encoding
from destination_redis.writers.gates import GateError, require
from destination_redis.writers.hash import HashEncoding
from destination_redis.writers.hash_fields import HashFieldsEncoding
from destination_redis.writers.json import JsonEncoding
from destination_redis.writers.string import StringEncoding

ENCODINGS: dict[str, type[Encoding]] = {
    e.name: e for e in (HashEncoding, HashFieldsEncoding, JsonEncoding, StringEncoding)
}


def encoding_of(cache_type: CacheType, server: ServerInfo) -> Encoding:
    return ENCODINGS[cache_type](server)


def make_writers(config: RedisConfig, streams: list[Stream], router: Router) -> dict[Stream, StreamWriter]:
    """One writer per stream; refuses (config_error) before anything is written when a stream's
    cache type cannot be synced as asked on this server."""
    chosen = {stream: config.settings_for(stream.namespace, stream.name) for stream in streams}
    for stream, settings in chosen.items():
        _refuse_unsupported(stream, settings.cache_type)
    try:
        require(router, {settings.cache_type for settings in chosen.values()})
    except GateError as exc:
        raise config_error(str(exc)) from None
    return {
        stream: make_writer(stream, router, settings.cache_type, settings.ttl_seconds, config.key_prefix)
        for stream, settings in chosen.items()
    }


def make_writer(
    stream: Stream, router: Router, cache_type: CacheType = "hash", ttl_seconds: int | None = None,
    key_prefix: str = "",
) -> StreamWriter:
    encoding = encoding_of(cache_type, router.server)
    addressing = KeyWriter if stream.sync_mode == "append_dedup" else IdWriter
    return addressing(stream, router, encoding, ttl_seconds, key_prefix)


def _refuse_unsupported(stream: Stream, cache_type: CacheType) -> None:
    """`string` + append_dedup + a refresh that deletes: a SET value carries no record id, so the
    keys older generations wrote cannot be told from current ones (see string.py)."""
    if cache_type == "string" and stream.sync_mode == "append_dedup" and stream.oldest_kept_generation > 0:
        raise config_error(
            f"Stream '{stream.label}': cache_type 'string' cannot take append_dedup with a refresh "
            f"that removes older generations (minimum_generation_id {stream.minimum_generation_id}): "
            f"a string value does not carry its record id, so the keys of older generations cannot "
            f"be told apart. Use hash, hash_fields or json for this stream (a `streams` override), "
            f"or a refresh that keeps existing data."
        )


__all__ = ["ENCODINGS", "IdWriter", "KeyWriter", "RecordError", "StreamWriter", "encoding_of", "make_writers"]
