"""What key templates and expiry from the data may not do, refused before anything is written:
by `check` (from the config alone) and by `write` (with the catalog's streams as well).

Every refusal is a config_error that names the streams and the setting to change.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations

from destination_redis import keys
from destination_redis.catalog import Stream
from destination_redis.config import COLLECTION_TYPES, RedisConfig, StreamSettings
from destination_redis.errors import config_error
from destination_redis.key_template import KeyTemplate, could_collide, could_render


def refuse_config(config: RedisConfig) -> None:
    """What the config alone shows: templates or expiry fields on collection types, a key_prefix
    whose braces would split a stream's keys from their bookkeeping on Redis Cluster, and two
    `streams` entries whose templates could render the same key."""
    if config.cache_type in COLLECTION_TYPES and (config.expire_at_field or config.ttl_field):
        refuse_per_record_options("The top-level settings", config.cache_type, None, config.expire_at_field,
                                  config.ttl_field)
    for entry in config.streams:
        cache_type = entry.cache_type or config.cache_type
        if cache_type in COLLECTION_TYPES:
            where = f"The `streams` entry of '{entry.name}'"
            refuse_per_record_options(
                where, cache_type, entry.key_template, entry.expire_at_field, entry.ttl_field
            )
    templated = [entry for entry in config.streams if entry.key_template]
    if templated:
        _refuse_prefix_braces(config.key_prefix)
    entries = [(_entry_label(entry.name, entry.namespace), entry.key_template) for entry in templated]
    refuse_collisions(entries, config.key_prefix)


def refuse_stream(stream: Stream, settings: StreamSettings, config: RedisConfig) -> None:
    """What the stream's catalog entry shows: a template or an expiry field of the stream's own
    `streams` entries on a collection type (from an entry that names no cache type), or a
    placeholder the stream's schema says no record has. (Top-level expiry fields do not apply to
    collections: a config may set them for its per-record streams.)"""
    if settings.cache_type in COLLECTION_TYPES:
        entries = config.overrides_for(stream.namespace, stream.name)
        refuse_per_record_options(
            f"Stream '{stream.label}'", settings.cache_type, settings.key_template,
            next((e.expire_at_field for e in entries if e.expire_at_field), None),
            next((e.ttl_field for e in entries if e.ttl_field), None),
        )
    if settings.key_template is None:
        return
    template = KeyTemplate.parse(settings.key_template)
    for path in template.paths:
        if stream.lacks_property(path):
            raise config_error(
                f"Stream '{stream.label}': the key_template '{template.text}' needs '{'.'.join(path)}', "
                f"which the stream's schema does not list, so no record would have a key. Use a "
                f"property of the stream in the template."
            )


def refuse_overlaps(chosen: Mapping[Stream, StreamSettings], key_prefix: str) -> None:
    """A template that could render a key of the connector's own layout for a stream of the
    catalog: an id counter or a collection's key `K` (its own stream's too), or the record keys
    `K:<id>` / `K:<pk>` of a stream without a template. Its records would overwrite them.

    Only for templates that start with literal text: one that starts with a placeholder (`{id}`)
    writes wherever the data says, and could "render" any key at all; refusing it would refuse
    keys that are bare ids (a database of their own), a layout users choose on purpose."""
    for stream, settings in chosen.items():
        if settings.key_template is None:
            continue
        template = KeyTemplate.parse(settings.key_template)
        if not isinstance(template.parts[0], str):
            continue
        for other, other_settings in chosen.items():
            counter = keys.stream_key(other.namespace, other.name).decode()  # both get the prefix
            what = None
            if could_render(template, counter):
                is_collection = other_settings.cache_type in COLLECTION_TYPES
                what = f"'{key_prefix}{counter}', the {'key' if is_collection else 'id counter'}"
            elif (other_settings.key_template is None and other_settings.cache_type not in COLLECTION_TYPES
                  and could_collide(template, KeyTemplate.parse(_literal(counter) + ":{id}"))):
                what = f"'{key_prefix}{counter}:<id>', the record keys"
            if what is not None:
                whose = "its own stream" if other == stream else f"stream '{other.label}'"
                raise config_error(
                    f"Stream '{stream.label}': its key_template '{template.text}' can render {what} of "
                    f"{whose}, which its records would overwrite. Give the template literal text "
                    f"of its own (e.g. 'user:{{id}}')."
                )


def _literal(text: str) -> str:
    """`text` as template text that renders itself."""
    return text.replace("{", "{{").replace("}", "}}")


def refuse_per_record_options(
    where: str, cache_type: str, template: str | None, expire_at_field: str | None, ttl_field: str | None
) -> None:
    """Key templates and expiry from the data name one key per record: not for collections."""
    options = [
        name for name, value in
        (("key_template", template), ("expire_at_field", expire_at_field), ("ttl_field", ttl_field))
        if value
    ]
    if options:
        raise config_error(
            f"{where}: {' and '.join(options)} cannot be used with cache_type '{cache_type}', whose "
            f"records are members of one key. Use a per-record cache type (hash, hash_fields, json, "
            f"string) for that stream, or remove {' and '.join(options)}."
        )


def refuse_collisions(entries: list[tuple[str, str | None]], key_prefix: str) -> None:
    """Two templated streams (labels, template texts) that could write the same key: refused,
    naming both (one stream's records would silently replace the other's)."""
    parsed = [(label, KeyTemplate.parse(text)) for label, text in entries if text]
    for (label_a, a), (label_b, b) in combinations(parsed, 2):
        if could_collide(a, b):
            same = "the same key_template" if a.text == b.text else "key templates"
            raise config_error(
                f"Streams {label_a} and {label_b} have {same} that can render the same key "
                f"('{a.shape(key_prefix)}' and '{b.shape(key_prefix)}'): the records of one would "
                f"replace the other's. Give each stream a template with its own literal text (e.g. "
                f"'user:{{id}}' and 'account:{{id}}')."
            )


def _refuse_prefix_braces(key_prefix: str) -> None:
    """A '{' in key_prefix that does not open a hash tag of the prefix's own ('a{', '{}') makes
    Redis Cluster hash each key by a part that runs into the rendered key (or by the whole key):
    a key and its bookkeeping would land in different slots."""
    if "{" in key_prefix and keys.hash_tag(key_prefix.encode()) is None:
        raise config_error(
            f"key_prefix '{key_prefix}' has a '{{' that opens no hash tag within the prefix: with a "
            f"key_template, Redis Cluster would hash each key by a part that runs into the rendered "
            f"key, apart from its bookkeeping. Make it a whole hash tag (such as '{{app}}:') or "
            f"remove the brace."
        )


def _entry_label(name: str, namespace: str | None) -> str:
    if namespace is None:
        return f"'{name}' (every namespace)"
    return f"'{namespace}.{name}'" if namespace else f"'{name}'"
