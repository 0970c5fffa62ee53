"""compact_json's shortcut (data already compact is not formatted) against msgspec.json.format.

The oracle is what compact_json did before the shortcut: `msgspec.json.format(raw, indent=-1)`,
then \\uXXXX escapes as UTF-8. Documents are generated with whitespace (spaces, tabs, line breaks,
runs of them) drawn for every gap between tokens, including before and after the document, and
with strings full of what a loose space sits next to: ", " ": " "{ " " ]", "x, 1", "a, true",
escaped quotes and backslashes, \\u escapes.
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from destination_redis.compact import _LOOSE_SPACE, compact_json
from destination_redis.messages import read_messages

_ESCAPE = re.compile(
    rb"\\u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})|\\u([0-9a-fA-F]{4})|\\.",
    re.DOTALL,
)


def _unescape(match: re.Match[bytes]) -> bytes:
    if match.group(1):
        high, low = int(match.group(1), 16), int(match.group(2), 16)
        return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)).encode()
    if match.group(3):
        code = int(match.group(3), 16)
        if code >= 0x20 and code not in (0x22, 0x5C) and not 0xD800 <= code <= 0xDFFF:
            return chr(code).encode()
    return match.group(0)


def reference(text: bytes) -> bytes:
    """compact_json before the shortcut: always format, then unescape."""
    formatted = msgspec.json.format(text, indent=-1)
    return _ESCAPE.sub(_unescape, formatted) if b"\\u" in formatted else formatted


# Generated JSON with whitespace anywhere -------------------------------------------------------

GAPS = st.sampled_from([b"", b"", b"", b"", b" ", b"  ", b"\t", b"\n", b"\r\n", b" \n\t ", b"\r"])
ONE_GAP = st.sampled_from([b" "] * 6 + [b"  ", b"\t", b"\n", b"\r\n", b"\r"])  # one space: the subtle case
# Characters a loose space is judged by (structural, value starts, quote, backslash), plus text.
ALPHABET = st.sampled_from([*' ,:{}[]"\\-0123456789tfnrueal\t\nxyzé東😀', "\x00", "\x1f"])
TRICKY = st.sampled_from([
    ", ", ": ", "{ ", "[ ", " ]", " }", " ,", " :", "  ", " ", "x, 1", "a, true", "b, false", "c, null",
    "d, the", "e: no", "f, -1", 'g, "h"', "[ 1 ]", "{ \"a\": 1 }", " leading", "trailing ", "tab\there",
    "\\", '"', '", "', "\\u", "é, 東", "a , b", "nul, nullable", "t, tr", "1 2",
])
STRINGS = st.one_of(st.text(ALPHABET, max_size=12), TRICKY, st.lists(TRICKY, max_size=4).map("".join))
# Escapes json.dumps never writes (\/, upper-case hex, pairs, an escaped backslash before u).
RAW_STRINGS = st.sampled_from([
    b'"\\/"', b'"\\u0041, \\u0020"', b'"\\uD83D\\uDE00 x"', b'"a\\\\"', b'"\\\\u0041"', b'"x, \\"y\\", 1"',
    b'"\\u00e9, true"', b'"\\t, \\n"', b'"\\u0022, 1"',
])
NUMBERS = st.sampled_from([
    b"0", b"-0", b"1.50", b"1E5", b"-1e-400", b"1e400", b"123456789012345678901234567890", b"0.1", b"-12",
    b"7e+2",
])
SCALARS = st.one_of(
    st.builds(lambda s, ascii: json.dumps(s, ensure_ascii=ascii).encode(), STRINGS, st.booleans()),
    RAW_STRINGS,
    NUMBERS,
    st.sampled_from([b"true", b"false", b"null"]),
)
TREES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(lambda items: ("list", items)),
        st.lists(st.tuples(STRINGS, children), max_size=4).map(lambda pairs: ("dict", pairs)),
    ),
    max_leaves=12,
)


@st.composite
def documents(draw: st.DrawFn, tree: Any = TREES, single: bool = False) -> bytes:
    """A JSON document with a drawn gap (maybe empty) around every token; with `single`, one
    gap only is whitespace, so that no other loose space hides a missed one."""
    parts: list[bytes | None] = []  # None: a gap between tokens

    def render(node: Any) -> None:
        if isinstance(node, bytes):
            parts.append(node)
            return
        kind, items = node
        parts.append(b"[" if kind == "list" else b"{")
        for index, item in enumerate(items):
            parts.extend([b","] if index else [])
            parts.append(None)
            if kind == "dict":
                key, item = item
                parts.extend([json.dumps(key, ensure_ascii=draw(st.booleans())).encode(), None, b":", None])
            render(item)
            parts.append(None)
        parts.extend([] if items else [None])
        parts.append(b"]" if kind == "list" else b"}")

    parts.append(None)
    render(draw(tree))
    parts.append(None)
    gaps = [index for index, part in enumerate(parts) if part is None]
    if single:
        chosen = draw(st.sampled_from(gaps))
        return b"".join(draw(ONE_GAP) if i == chosen else part or b"" for i, part in enumerate(parts))
    return b"".join(draw(GAPS) if part is None else part for part in parts)


SETTINGS = settings(max_examples=1000, deadline=None, derandomize=True, database=None)


@SETTINGS
@given(documents())
def test_compact_json_is_format_then_unescape(text: bytes) -> None:
    expected = reference(text)
    assert compact_json(text) == expected
    assert compact_json(msgspec.Raw(text)) == expected


@settings(max_examples=2000, deadline=None, derandomize=True, database=None)
@given(documents(single=True))
def test_one_gap_of_whitespace_anywhere_is_found(text: bytes) -> None:
    """Compact JSON but for one gap: the shortcut must not take it (or format finds nothing)."""
    assert compact_json(text) == reference(text)


@SETTINGS
@given(documents())
def test_compact_text_is_proved_compact_or_formatted_to_itself(text: bytes) -> None:
    """Format's own output, the usual input, gives the same bytes, shortcut or not."""
    compact = msgspec.json.format(text, indent=-1)
    assert compact_json(compact) == reference(compact)


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(documents(TREES.map(lambda tree: ("dict", [("k", tree)]))))
def test_read_messages_data_is_format_then_unescape(data: bytes) -> None:
    """Through read_messages: `data` is a msgspec.Raw slice of the line, as in a sync."""
    line = b'{"type":"RECORD","record":{"stream":"s","data":%s,"emitted_at":1}}' % data
    ((_, _, compact, _),) = list(read_messages([line]))
    assert compact == reference(data)


# Which data takes the shortcut (the point of it; not a matter of correctness) -----------------


@pytest.mark.parametrize(
    "data",
    [
        {"street": "Bahnhofstrasse 1", "note": "lorem ipsum dolor sit amet, consectetur adipiscing elit"},
        {"name": "Ann Lee", "bio": "For, the one: not first, no, then a", "n": [1, 2], "o": {"a": None}},
        {"city": "Zürich", "t": "2026-11-25T12:34:56.789Z", "x": 1.5, "ok": True},
        {"q": 'he said "a, b"', "path": "C:\\dir"},
    ],
)
def test_compact_records_with_spaces_in_strings_take_the_shortcut(data: dict[str, Any]) -> None:
    text = orjson.dumps(data)
    assert _LOOSE_SPACE.search(text) is None
    assert compact_json(text) == text


@pytest.mark.parametrize(
    "text",
    [b'{"a": 1}', b'{"a":1 }', b'{"a" :1}', b'[1, true]', b'{ "a":1}', b'[1,  2]', b' 1', b'1 ', b'[ ]',
     b'{"a":-1, "b":null}'],
)
def test_every_kind_of_loose_space_is_found(text: bytes) -> None:
    assert _LOOSE_SPACE.search(text) is not None
    assert compact_json(text) == reference(text)


@pytest.mark.parametrize("text", [b'{"a":\t1}', b'{"a":\n1}', b'[1,\r2]', b'\n{}', b"{}\r"])
def test_tabs_and_line_breaks_without_spaces_are_removed(text: bytes) -> None:
    assert compact_json(text) == reference(text)
