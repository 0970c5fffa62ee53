"""Key names of the hash layout, and the SCAN patterns that find exactly a stream's keys.

Stream key `K = <namespace>:<stream>` (namespace "" when absent, as 0.1.4 wrote), counter `K`,
records `K:<id>`. A stream owns only those keys: SCAN patterns escape glob characters, and what
SCAN returns is filtered again, so look-alikes such as `K:12:x` or `K:abc` are never touched.
"""

from __future__ import annotations

import binascii
import functools
import itertools
import re

_GLOB_SPECIAL = re.compile(rb"([*?\[\]\\])")


def stream_key(namespace: str, name: str, prefix: str = "") -> bytes:
    """`<prefix><namespace>:<name>`: the config's key_prefix is prepended as is (no separator)."""
    return f"{prefix}{namespace}:{name}".encode()


def record_key(stream: bytes, record_id: int) -> bytes:
    return b"%s:%d" % (stream, record_id)


def glob_escape(literal: bytes) -> bytes:
    """Escape a literal so that Redis' glob matching (SCAN MATCH) matches only itself."""
    return _GLOB_SPECIAL.sub(rb"\\\1", literal)


def record_scan_pattern(stream: bytes) -> bytes:
    """SCAN MATCH pattern for `K:<digits>`; a superset, narrowed by `is_record_key`."""
    return glob_escape(stream) + b":[0-9]*"


def is_record_key(stream: bytes, key: bytes) -> bool:
    """True for `K:<digits>` exactly: the keys the hash layout writes for this stream."""
    prefix_len = len(stream) + 1
    return (
        len(key) > prefix_len
        and key.startswith(stream)
        and key[len(stream) : prefix_len] == b":"
        and key[prefix_len:].isdigit()
    )


# append_dedup: one key per primary key, `K:<pk>`. Each component is rendered as text (strings
# as they are, numbers and booleans as JSON, objects and arrays as compact JSON), `\` and `:` in
# it are escaped as `\\` and `\:`, and the components are joined with `:`. So two different
# primary keys never give the same key, and the key has exactly one unescaped `:` per extra
# component.


def escape_component(text: bytes) -> bytes:
    """`\\` and `:` escaped; on the UTF-8 bytes, where both are single bytes that never occur
    inside a multi-byte character, so it equals escaping the text and encoding it."""
    return text.replace(b"\\", b"\\\\").replace(b":", b"\\:")


def dedup_key(stream: bytes, components: list[bytes]) -> bytes:
    """`K:<pk>`: the key's components (UTF-8 text) escaped and joined with `:`."""
    if len(components) == 1:
        return stream + b":" + escape_component(components[0])
    return stream + b":" + b":".join([escape_component(c) for c in components])


def dedup_scan_pattern(stream: bytes) -> bytes:
    return glob_escape(stream) + b":*"


def is_dedup_key(stream: bytes, key: bytes, components: int) -> bool:
    """True for `K:<encoded pk>` with `components` parts (or a `K:<digits>` record key)."""
    prefix_len = len(stream) + 1
    if len(key) <= prefix_len or not key.startswith(stream) or key[len(stream) : prefix_len] != b":":
        return False
    rest = key[prefix_len:]
    if rest.isdigit():
        return True  # an append-layout record of this stream, from before a switch to dedup
    separators = 0
    escaped = False
    for byte in rest:
        if escaped:
            escaped = False
        elif byte == 0x5C:  # backslash
            escaped = True
        elif byte == 0x3A:  # colon
            separators += 1
    return separators == components - 1 and not escaped


def meta_key(stream: bytes, prefix: str = "") -> bytes:
    """Where a refresh-aware stream keeps its generation bookkeeping (a small hash):
    `<prefix>_airbyte_meta:<namespace>:<name>`, `stream` being the key without the prefix, so the
    prefix leads every key the connector writes."""
    return prefix.encode() + b"_airbyte_meta:" + stream


# Collections: the stream's records in `K` itself; a refresh stages into a sibling key and
# RENAMEs it over `K`, and a list's batches are counted in another. Redis Cluster runs RENAME and
# MULTI only within one hash slot, so a sibling hashes like `K` (its hash tag, or `K` inside one).

STAGE = b"_airbyte_stage"
BATCHES = b"_airbyte_batch"


def hash_tag(key: bytes) -> bytes | None:
    """What Redis Cluster hashes in `key`: between the first `{` and the next `}`, if not empty."""
    start = key.find(b"{")
    if start < 0:
        return None
    end = key.find(b"}", start + 1)
    return key[start + 1 : end] if end > start + 1 else None


def sibling_key(stream: bytes, suffix: bytes, prefix: str = "") -> bytes:
    """A key in the hash slot of `stream`, led by the key_prefix: `<prefix>{K}:<suffix>`
    (`app:{app:ns:s}:_airbyte_stage`); `K:<suffix>` when K has a hash tag of its own. A name whose
    braces defeat both gets `K:<suffix>:<n>`, the first n whose slot is K's (found by trying).

    A K with its own tag that ends in `}` gets the numbered form too (n = 0: its tag is kept):
    `{:a}` (namespace `{`, stream `a}`) would otherwise share `{:a}:_airbyte_stage` with `:a`."""
    if hash_tag(stream) is not None and not stream.endswith(b"}"):
        return stream + b":" + suffix
    tagged = prefix.encode() + b"{" + stream + b"}:" + suffix
    if hash_tag(tagged) == stream:
        return tagged
    slot = key_slot(stream)
    n = 0
    while key_slot(candidate := b"%s:%s:%d" % (stream, suffix, n)) != slot:
        n += 1
    return candidate


SLOTS = 16384


def key_slot(key: bytes) -> int:
    """The hash slot of `key` (CRC16 of its hash tag, else of the whole key), as Redis Cluster
    computes it: a property of the name, the same on every topology."""
    tag = hash_tag(key)
    return binascii.crc_hqx(key if tag is None else tag, 0) % SLOTS


_TAG_ALPHABET = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


@functools.cache
def slot_tags() -> tuple[bytes, ...]:
    """For each hash slot, a short tag that hashes to it (slot_tags.py, shipped)."""
    from destination_redis.slot_tags import TAGS  # 16,384 tags: loaded when first needed

    return tuple(tag.encode() for tag in TAGS)


def search_slot_tags() -> tuple[bytes, ...]:
    """For each hash slot, a short tag (1 to 3 characters of [0-9a-zA-Z]) that hashes to it: the
    first in a fixed order, so the same on every run (~0.1 s). How slot_tags.py was made."""
    table: list[bytes | None] = [None] * SLOTS
    left = SLOTS
    crc = binascii.crc_hqx
    for length in (1, 2, 3):
        for combo in itertools.product(_TAG_ALPHABET, repeat=length):
            tag = bytes(combo)
            slot = crc(tag, 0) % SLOTS
            if table[slot] is None:
                table[slot] = tag
                left -= 1
        if not left:
            break
    if left:  # cannot happen for CRC16: 3 characters of 62 reach every slot
        raise RuntimeError("no tag found for some hash slots")
    return tuple(tag for tag in table if tag is not None)


def owned_keys_book(stream: bytes, prefix: str, slot: int) -> bytes:
    """Where a templated stream records the keys it wrote in hash slot `slot` (a sorted set in
    that slot): `<prefix>_airbyte_meta:{<tag>}:<namespace>:<name>:keys`, `stream` being the
    stream key without the prefix. Our tag comes before the stream's name, so braces in a name
    cannot move it; a key_prefix with a hash tag of its own puts every key of the stream, books
    included, in that tag's slot."""
    return b"%s_airbyte_meta:{%s}:%s:keys" % (prefix.encode(), slot_tags()[slot], stream)
