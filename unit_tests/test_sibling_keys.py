"""keys.hash_tag and keys.sibling_key: the staging key and the list's batch counter of a collection
must hash to the slot of the stream key `K` (Redis Cluster runs RENAME and MULTI within one slot
only), be led by the key_prefix, and belong to one stream only. Slots come from redis-py's
`key_slot`, written after the cluster spec independently of the connector's `hash_tag`."""

from __future__ import annotations

import functools
import itertools
import re

import pytest
from redis.crc import key_slot

from destination_redis import keys

SUFFIXES = (keys.STAGE, keys.BATCHES)
PREFIXES = ("", "app:", "p{", "p}", "{p}", "{}", "}{")
NAMESPACES = ("", "ns", "n{s}", "{")
# Every name of up to 3 characters over `{`, `}` and a letter (braces in every position, alone,
# doubled, reversed, empty `{}`, an unclosed `{`, an unopened `}`), and some longer ones.
NAMES = (
    *("".join(chars) for size in (1, 2, 3) for chars in itertools.product("{}a", repeat=size)),
    "users", "a{b}c", "x}y", "{}x", "x{}", "{}{a}", "{a}{b}", "}{a}", "{{a}}", "a{{b}}c", "é{ü}", "a:b",
)
# The numbered form is found by trying names until one hashes right (~10 ms each): every one of
# the other two forms is checked, and one K in this many of those that get numbered names.
NUMBERED_SAMPLE = 10


def _spec_tag(key: bytes) -> bytes | None:
    """The cluster spec's hash tag, written here apart from keys.hash_tag."""
    start = key.find(b"{")
    end = key.find(b"}", start + 1) if start >= 0 else -1
    return key[start + 1 : end] if start >= 0 and end > start + 1 else None


def _form(stream: bytes, suffix: bytes, prefix: str) -> str:
    """Which of sibling_key's forms the docstring promises for this K."""
    if _spec_tag(stream) is not None and not stream.endswith(b"}"):
        return "own tag"  # K:<suffix>
    if _spec_tag(prefix.encode() + b"{" + stream + b"}:" + suffix) == stream:
        return "wrapped"  # <prefix>{K}:<suffix>
    return "numbered"  # K:<suffix>:<n>


def _cases() -> list[tuple[str, bytes, bytes, str]]:
    cases = []
    numbered = 0
    for prefix, namespace, name in itertools.product(PREFIXES, NAMESPACES, NAMES):
        stream = keys.stream_key(namespace, name, prefix)
        forms = [_form(stream, suffix, prefix) for suffix in SUFFIXES]
        if "numbered" in forms:
            numbered += 1
            if numbered % NUMBERED_SAMPLE:
                continue
        cases += [(prefix, stream, suffix, form) for suffix, form in zip(SUFFIXES, forms, strict=True)]
    return cases


CASES = _cases()


@functools.cache
def sibling(stream: bytes, suffix: bytes, prefix: str) -> bytes:
    return keys.sibling_key(stream, suffix, prefix)


@pytest.mark.parametrize(
    ("key", "tag"),
    [
        (b"users", None),
        (b"app:ns:users", None),
        (b"{user1}:x", b"user1"),
        (b"a{b}c", b"b"),
        (b"{}", None),  # empty: the whole key is hashed
        (b"{}{a}", None),  # only the first `{` counts, and its tag is empty
        (b"{a}{b}", b"a"),
        (b"}{a}", b"a"),
        (b"{{a}}", b"{a"),
        (b"{a", None),
        (b"a}", None),
        (b"x}y{z", None),
        (b"{", None),
        (b"}", None),
        (b"", None),
    ],
)
def test_hash_tag_follows_the_cluster_spec(key: bytes, tag: bytes | None) -> None:
    assert keys.hash_tag(key) == tag
    assert key_slot(key) == key_slot(key if tag is None else tag)


def test_hash_tag_agrees_with_key_slot_on_every_generated_key() -> None:
    for prefix, namespace, name in itertools.product(PREFIXES, NAMESPACES, NAMES):
        key = keys.stream_key(namespace, name, prefix)
        tag = keys.hash_tag(key)
        assert tag == _spec_tag(key), key
        assert key_slot(key) == key_slot(key if tag is None else tag), key


def test_the_plain_case_wraps_k_in_braces_after_the_prefix() -> None:
    assert keys.sibling_key(b"app:ns:users", keys.STAGE, "app:") == b"app:{app:ns:users}:_airbyte_stage"
    assert keys.sibling_key(b":users", keys.BATCHES) == b"{:users}:_airbyte_batch"
    # A `{` without a closing `}` in K: still wrapped, the tag running to the wrapper's `}`.
    assert keys.sibling_key(b":a{b", keys.STAGE) == b"{:a{b}:_airbyte_stage"


def test_a_k_with_its_own_tag_keeps_it() -> None:
    assert keys.sibling_key(b"app:ns:a{b}c", keys.STAGE, "app:") == b"app:ns:a{b}c:_airbyte_stage"
    assert keys.sibling_key(b"{t}:ns:s", keys.BATCHES, "{t}:") == b"{t}:ns:s:_airbyte_batch"


@pytest.mark.parametrize(
    ("stream", "prefix"),
    [(b":x}y", ""), (b"app:ns:x}y", "app:"), (b":{}x", ""), (b"p{ns:s", "p{"), (b"p}ns:s", "p}")],
)
def test_a_k_whose_braces_defeat_both_gets_the_first_numbered_name_in_its_slot(
    stream: bytes, prefix: str
) -> None:
    found = keys.sibling_key(stream, keys.STAGE, prefix)
    match = re.fullmatch(re.escape(stream + b":" + keys.STAGE + b":") + rb"(\d+)", found)
    assert match, found
    assert key_slot(found) == key_slot(stream)
    n = int(match.group(1))
    assert all(
        key_slot(b"%s:%s:%d" % (stream, keys.STAGE, earlier)) != key_slot(stream) for earlier in range(n)
    ), "not the first n in K's slot"


def test_every_sibling_is_in_ks_slot_led_by_the_prefix_in_the_promised_form() -> None:
    forms = {"own tag": 0, "wrapped": 0, "numbered": 0}
    for prefix, stream, suffix, form in CASES:
        found = sibling(stream, suffix, prefix)
        where = (prefix, stream, suffix, form, found)
        forms[form] += 1
        assert key_slot(found) == key_slot(stream), where
        assert found.startswith(prefix.encode()), where
        assert found != stream, where
        if form == "own tag":
            assert found == stream + b":" + suffix, where
        elif form == "wrapped":
            assert found == prefix.encode() + b"{" + stream + b"}:" + suffix, where
        else:
            assert re.fullmatch(re.escape(stream + b":" + suffix + b":") + rb"\d+", found), where
    assert min(forms.values()) > 90, forms  # each of the three forms exercised many times


def test_the_stage_and_the_counter_of_a_stream_differ() -> None:
    for prefix, stream, _, _ in CASES:
        assert sibling(stream, keys.STAGE, prefix) != sibling(stream, keys.BATCHES, prefix), stream


def test_two_streams_never_share_a_sibling() -> None:
    """Two streams with one stage would mix their refreshes; with one batch counter a list's
    guard would misjudge a lost EXEC (and skip or repeat a batch)."""
    owners: dict[tuple[str, bytes], set[bytes]] = {}
    for prefix, stream, suffix, _ in CASES:
        owners.setdefault((prefix, sibling(stream, suffix, prefix)), set()).add(stream)
    shared = {key: streams for key, streams in owners.items() if len(streams) > 1}
    # e.g. namespace "{" / stream "a}" (K `{:a}`, its own tag: `{:a}:_airbyte_stage`) and no
    # namespace / stream "a" (K `:a`, wrapped: `{:a}:_airbyte_stage`).
    assert not shared, f"{len(shared)} siblings shared by two streams, e.g. {sorted(shared.items())[:3]}"
