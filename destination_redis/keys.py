"""Key names of the hash layout, and the SCAN patterns that find exactly a stream's keys.

Stream key `K = <namespace>:<stream>` (namespace "" when absent, as 0.1.4 wrote), counter `K`,
records `K:<id>`. A stream owns only those keys: SCAN patterns escape glob characters, and what
SCAN returns is filtered again, so look-alikes such as `K:12:x` or `K:abc` are never touched.
"""

from __future__ import annotations

import re

_GLOB_SPECIAL = re.compile(rb"([*?\[\]\\])")


def stream_key(namespace: str, name: str) -> bytes:
    return f"{namespace}:{name}".encode()


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
