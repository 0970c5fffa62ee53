"""Record data as compact JSON, without re-formatting data that is compact already.

Sources the platform runs emit compact JSON, so `msgspec.json.format` (a full parse, char by
char) mostly proves that nothing changes. A space that JSON ignores can only sit next to a
structural character or other whitespace, and raw tabs and line breaks cannot be inside strings,
so a few C-level scans (one regular expression stopping only at spaces, three memchr) prove most
records compact, and only the rest is formatted.
"""

from __future__ import annotations

import re

import msgspec

# A space that may be insignificant whitespace, the only case where `format` is needed. Why none is
# missed (the property tests in unit_tests/test_compact.py check it): a run of whitespace between
# JSON tokens, or around the document, holds a tab or line break (looked for apart: never inside a
# string), or two spaces (the first is followed by whitespace), or is one space that ends the text,
# or precedes a structural character, or precedes a value (a string, number, true, false or null),
# which JSON only allows after , : [ { or at the start. A space inside a string rarely looks like
# that ("a, b" and "a, the" do not; "a, 1" and "a  b" do): that data is simply formatted.
_LOOSE_SPACE = re.compile(
    rb"""\x20(?:
        [\x20\t\n\r,:{}\[\]]                # followed by whitespace or a structural character
      | ["\-0-9tfn] (?<![^,:\[{]\x20.)      # before a value, after , : [ { or at the start ...
        (?: (?<=t)rue | (?<=f)alse | (?<=n)ull | (?<=["\-0-9]) )  # ... that really is a value
      | \Z                                  # at the end
    )""",
    re.VERBOSE,
)
_loose_space = _LOOSE_SPACE.search
_format = msgspec.json.format


def compact_json(raw: msgspec.Raw | bytes) -> bytes:
    """`raw` (valid JSON) as compact JSON: no insignificant whitespace, non-ASCII as UTF-8,
    numbers as sent.

    A text-level rewrite, never a decode/encode round trip, so every number keeps the exact
    digits the source wrote (`1.50`, `1E5`, integers beyond 64 bits). Exactly what
    `msgspec.json.format(raw, indent=-1)` and then unescaping gives, but data without a loose
    space or a tab or line break (JSON strings hold neither) is taken as it is.
    """
    if _loose_space(raw) is None:
        text = bytes(raw)
        # `9 in text` (an int) is a memchr; `b"\t" in text` would first raise and clear a TypeError.
        if 9 in text or 10 in text or 13 in text:
            text = _format(text, indent=-1)
    else:
        text = _format(raw, indent=-1)
    if 92 in text and text.find(b"\\u") >= 0:  # a backslash (one memchr), then a \u escape
        text = _ESCAPE.sub(_unescape, text)
    return text


# A `\uXXXX` escape (or a surrogate pair of them), or any other escape, taken whole so that the
# second backslash of `\\` is never read as the start of an escape.
_ESCAPE = re.compile(
    rb"\\u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})|\\u([0-9a-fA-F]{4})|\\.",
    re.DOTALL,
)


def _unescape(match: re.Match[bytes]) -> bytes:
    """UTF-8 for an escaped character, except those JSON requires escaped (and lone surrogates)."""
    if match.group(1):
        high, low = int(match.group(1), 16), int(match.group(2), 16)
        return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)).encode()
    if match.group(3):
        code = int(match.group(3), 16)
        if code >= 0x20 and code not in (0x22, 0x5C) and not 0xD800 <= code <= 0xDFFF:
            return chr(code).encode()
    return match.group(0)
