"""Which streams get a search index, and what each covers: from the config's `search_index`
(top level: every stream of an indexable cache type; a stream's own entry: that stream, refused
on a type the query engine cannot index by property) and the stream's schema in the catalog."""

from __future__ import annotations

from collections.abc import Mapping

from destination_redis import keys
from destination_redis.catalog import Stream
from destination_redis.config import RedisConfig, SearchIndexConfig, StreamSettings
from destination_redis.errors import config_error
from destination_redis.key_template import KeyTemplate
from destination_redis.search.gates import INDEXABLE_TYPES
from destination_redis.search.index import Definition, SearchIndex
from destination_redis.search.schema import ID_FIELD, Vector, index_fields
from destination_redis.topology.router import Router

# Only records the connector wrote: with a template, the application's own keys of the same
# shape (which lack our id field) stay out of the index.
OWN_RECORDS = f"exists(@{ID_FIELD})"


def index_settings(config: RedisConfig, stream: Stream, settings: StreamSettings) -> SearchIndexConfig | None:
    """The stream's index settings, or None. A top-level `search_index` serves the streams of an
    indexable type; a stream's own entry asking for one on another type is refused, and so is a
    top-level one with a top-level type that cannot be indexed (as check refuses it)."""
    if settings.search_index is None:
        return None
    template = KeyTemplate.parse(settings.key_template) if settings.key_template is not None else None
    if template is not None and not isinstance(template.parts[0], str):
        raise config_error(
            f"Stream '{stream.label}': search_index needs its key_template ('{settings.key_template}') "
            f"to start with literal text: an index covers the keys that start with a prefix, and "
            f"keys that start with a value could be any stream's. Start the template with text of "
            f"its own (e.g. 'user:{{id}}')."
        )
    if settings.cache_type in INDEXABLE_TYPES:
        return settings.search_index
    top_level = config.search_index is not None and config.cache_type not in INDEXABLE_TYPES
    if top_level or any(entry.search_index for entry in config.overrides_for(stream.namespace, stream.name)):
        raise config_error(
            f"Stream '{stream.label}': search_index needs cache_type hash_fields or json (one field "
            f"per property); cache_type '{settings.cache_type}' stores a record as one value, which "
            f"the query engine cannot index by property."
        )
    return None


def indexed_types(config: RedisConfig) -> set[str]:
    """The cache types check must prove indexable: the top-level type with a top-level index, and
    each `streams` entry's type with an index of its own."""
    types: set[str] = {config.cache_type} if config.search_index else set()
    types |= {entry.cache_type or config.cache_type for entry in config.streams if entry.search_index}
    return types


def index_name(config: SearchIndexConfig, stream: Stream, key_prefix: str) -> str:
    return config.name or f"{key_prefix}idx:{stream.namespace}:{stream.name}"


def stream_index(
    stream: Stream, settings: StreamSettings, index: SearchIndexConfig, key_prefix: str, router: Router
) -> SearchIndex:
    """The stream's index: its fields from the schema, its prefix the one its keys start with."""
    on_json = settings.cache_type == "json"
    fields = index_fields(stream.json_schema, on_json, index.text_fields, vectors_of(index))
    if settings.key_template is not None:
        first = KeyTemplate.parse(settings.key_template).parts[0]
        prefix = (key_prefix + (first if isinstance(first, str) else "")).encode()
    else:
        prefix = keys.stream_key(stream.namespace, stream.name, key_prefix) + b":"
    definition = Definition(on_json, prefix, OWN_RECORDS, tuple(fields))
    name = index_name(index, stream, key_prefix)
    return SearchIndex(router, name, definition, stream.label, index.indexing_timeout_seconds)


def vectors_of(index: SearchIndexConfig | None) -> dict[str, Vector]:
    if index is None:
        return {}
    return {v.field: Vector(v.dims, v.distance_metric, v.algorithm) for v in index.vector_fields}


def refuse_shared_names(names: Mapping[Stream, str]) -> None:
    """Two streams' indexes under one name (a top-level `name` serving several streams)."""
    seen: dict[str, Stream] = {}
    for stream, name in names.items():
        other = seen.setdefault(name, stream)
        if other is not stream:
            raise config_error(
                f"Streams '{other.label}' and '{stream.label}' would share the search index "
                f"'{name}': give each stream's index a name of its own (search_index.name in its "
                f"`streams` entry), or leave name empty for <key_prefix>idx:<namespace>:<stream>."
            )
