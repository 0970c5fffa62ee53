"""The cache types. Per-record types: an addressing (by_id: `K:<id>`; by_key: `K:<pk>` for
append_dedup) combined with an encoding of the value (hash, hash_fields, json, string).
Collection types: the third addressing, one key `K` (collection.py), combined with how records
become its members (list_type, set_type, sorted_set, stream: "list.py" and "set.py" would
shadow the builtins inside this package)."""

from collections.abc import Mapping

from destination_redis import keys
from destination_redis.catalog import Stream
from destination_redis.config import (
    COLLECTION_TYPES,
    CacheType,
    RedisConfig,
    SearchIndexConfig,
    StreamSettings,
)
from destination_redis.connection.server import ServerInfo
from destination_redis.errors import GateError, config_error
from destination_redis.key_template import KeyTemplate
from destination_redis.search.gates import require_search
from destination_redis.search.plan import (
    index_name,
    index_settings,
    refuse_shared_names,
    stream_index,
    vectors_of,
)
from destination_redis.topology.router import Router
from destination_redis.writers.base import RecordError, StreamWriter
from destination_redis.writers.by_id import IdWriter
from destination_redis.writers.by_key import KeyWriter
from destination_redis.writers.by_template import TemplateWriter
from destination_redis.writers.collection import CollectionWriter
from destination_redis.writers.encoding import Encoding
from destination_redis.writers.expiry import Expiry
from destination_redis.writers.gates import require
from destination_redis.writers.hash import HashEncoding
from destination_redis.writers.hash_fields import HashFieldsEncoding
from destination_redis.writers.json import JsonEncoding
from destination_redis.writers.key_rules import (
    refuse_collisions,
    refuse_config,
    refuse_overlaps,
    refuse_stream,
)
from destination_redis.writers.list_type import ListMembers
from destination_redis.writers.members import Members
from destination_redis.writers.set_type import SetMembers
from destination_redis.writers.sorted_set import SortedSetMembers
from destination_redis.writers.stream import StreamMembers
from destination_redis.writers.string import StringEncoding

ENCODINGS: dict[str, type[Encoding]] = {
    e.name: e for e in (HashEncoding, HashFieldsEncoding, JsonEncoding, StringEncoding)
}
MEMBERS: dict[str, type[Members]] = {
    m.name: m for m in (ListMembers, SetMembers, SortedSetMembers, StreamMembers)
}


def encoding_of(
    cache_type: CacheType, server: ServerInfo, vectors: Mapping[str, int] | None = None
) -> Encoding:
    """The type's encoding; `vectors`: properties stored as vectors (name -> dims), for an index."""
    return ENCODINGS[cache_type](server, vectors)


def make_writers(config: RedisConfig, streams: list[Stream], router: Router) -> dict[Stream, StreamWriter]:
    """One writer per stream; refuses (config_error) before anything is written when a stream's
    cache type cannot be synced as asked on this server."""
    refuse_config(config)
    chosen = {stream: config.settings_for(stream.namespace, stream.name) for stream in streams}
    for stream, settings in chosen.items():
        _refuse_unsupported(stream, settings, config)
    refuse_collisions(
        [(f"'{stream.label}'", settings.key_template) for stream, settings in chosen.items()],
        config.key_prefix,
    )
    refuse_overlaps(chosen, config.key_prefix)
    indexes = {stream: index_settings(config, stream, settings) for stream, settings in chosen.items()}
    indexed = {stream: index for stream, index in indexes.items() if index is not None}
    prefix = config.key_prefix
    refuse_shared_names({stream: index_name(index, stream, prefix) for stream, index in indexed.items()})
    try:
        require(router, {settings.cache_type for settings in chosen.values()})
        if indexed:
            require_search(router, {chosen[stream].cache_type for stream in indexed})
    except GateError as exc:
        raise config_error(str(exc)) from None
    writers = {}
    for stream, settings in chosen.items():
        index = indexes[stream]
        writer = make_writer(stream, router, settings, prefix, index)
        if index is not None:
            writer.index = stream_index(stream, settings, index, prefix, router)
        writers[stream] = writer
    return writers


def make_writer(
    stream: Stream, router: Router, settings: StreamSettings | None = None, key_prefix: str = "",
    index: SearchIndexConfig | None = None,
) -> StreamWriter:
    """The stream's writer; `index`: its search index's settings (vector properties are encoded
    for it), the index itself is set by make_writers."""
    settings = settings or StreamSettings("hash", None)
    cache_type, ttl_seconds = settings.cache_type, settings.ttl_seconds
    if cache_type in MEMBERS:
        key = keys.stream_key(stream.namespace, stream.name, key_prefix)
        members = MEMBERS[cache_type](router, key, key_prefix, settings.score_field)
        return CollectionWriter(stream, router, members, ttl_seconds, key_prefix)
    vectors = {field: vector.dims for field, vector in vectors_of(index).items()}
    encoding = encoding_of(cache_type, router.server, vectors)
    expiry = Expiry(settings.expire_at_field, settings.ttl_field, ttl_seconds)
    if settings.key_template is not None:
        template = KeyTemplate.parse(settings.key_template)
        return TemplateWriter(stream, router, encoding, template, ttl_seconds, key_prefix, expiry)
    addressing = KeyWriter if stream.sync_mode == "append_dedup" else IdWriter
    return addressing(stream, router, encoding, ttl_seconds, key_prefix, expiry)


def members_of(cache_type: CacheType, router: Router, stream_key: bytes, key_prefix: str = "") -> Members:
    """A collection type's Members for `stream_key` (check's probe key plays the stream key)."""
    return MEMBERS[cache_type](router, stream_key, key_prefix)


def _refuse_unsupported(stream: Stream, settings: StreamSettings, config: RedisConfig) -> None:
    """What a cache type cannot do, refused before anything is written:
    - a collection with append_dedup (its members have no key to replace), or with an append
      that would remove some generations and keep others (its members carry no generation);
    - a key template the stream cannot use (key_rules.refuse_stream);
    - `string` + append_dedup + a refresh that deletes: a SET value carries no record id, so the
      keys older generations wrote cannot be told from current ones (see string.py), unless a
      key template records the keys (key_book.py)."""
    cache_type = settings.cache_type
    refuse_stream(stream, settings, config)
    if cache_type in COLLECTION_TYPES:
        _refuse_for_collection(stream, cache_type)
    if settings.key_template is not None:
        return
    if cache_type == "string" and stream.sync_mode == "append_dedup" and stream.oldest_kept_generation > 0:
        raise config_error(
            f"Stream '{stream.label}': cache_type 'string' cannot take append_dedup with a refresh "
            f"that removes older generations (minimum_generation_id {stream.minimum_generation_id}): "
            f"a string value does not carry its record id, so the keys of older generations cannot "
            f"be told apart. Use hash, hash_fields or json for this stream (a `streams` override), "
            f"or a refresh that keeps existing data."
        )


def _refuse_for_collection(stream: Stream, cache_type: CacheType) -> None:
    if stream.sync_mode == "append_dedup":
        raise config_error(
            f"Stream '{stream.label}': cache_type '{cache_type}' cannot take append_dedup: the "
            f"stream's records are members of one key, with no key per primary key to replace or "
            f"delete. Sync it with append or overwrite, or give it a per-record cache type (hash, "
            f"hash_fields, json, string) with a `streams` override."
        )
    oldest = stream.oldest_kept_generation
    if stream.sync_mode == "append" and stream.tracks_generations and 0 < oldest != stream.generation_id:
        raise config_error(
            f"Stream '{stream.label}': cache_type '{cache_type}' cannot keep generations "
            f"{oldest} to {stream.generation_id} and remove older ones (minimum_generation_id "
            f"{stream.minimum_generation_id}): the members of one key carry no generation. A "
            f"refresh that replaces the stream (overwrite) or one that keeps everything "
            f"(minimum_generation_id 0) works; or use a per-record cache type for this stream."
        )


__all__ = [
    "ENCODINGS", "MEMBERS", "IdWriter", "KeyWriter", "RecordError", "StreamWriter", "encoding_of",
    "make_writers", "members_of",
]
