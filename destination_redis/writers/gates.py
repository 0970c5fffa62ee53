"""Server and module gates of the cache types, asked by `check` and by `write` before it writes
anything, so an unsupported type fails with the reason instead of midway through a sync."""

from __future__ import annotations

from collections.abc import Iterable

import hiredis

from destination_redis.connection.node import Node
from destination_redis.errors import GateError
from destination_redis.topology.router import Router


def require(router: Router, cache_types: Iterable[str]) -> None:
    """Raise GateError if a chosen cache type cannot run on every primary."""
    if "stream" in cache_types and router.server.version < (5, 0, 0):
        raise GateError(
            f"cache_type 'stream' needs Redis 5.0 or later (XADD); this server is "
            f"{router.server.label}. Upgrade the server, or choose another cache type (list keeps "
            f"records in order too)."
        )
    if "json" in cache_types:
        for node in router.topology.primaries():
            if has_json_module(router, node) is False:
                raise GateError(
                    f"cache_type 'json' needs the JSON module (JSON.SET: Redis 8, Redis Stack, or "
                    f"valkey-json); the server at {node.where} ({router.server.label}) does not have "
                    f"it. Load the module (--loadmodule rejson.so), or choose another cache type."
                )


def has_json_module(router: Router, node: Node) -> bool | None:
    """Whether the node knows JSON.SET; None when it cannot tell (COMMAND and MODULE denied:
    check's probe of JSON.SET then names the problem)."""
    if router.server.version < (4, 0, 0):
        return False  # modules came with Redis 4.0
    reply = router.run_on(node, (b"COMMAND", b"INFO", b"JSON.SET"), tolerate_errors=True)
    if isinstance(reply, list):
        return bool(reply) and reply[0] is not None
    modules = router.run_on(node, (b"MODULE", b"LIST"), tolerate_errors=True)
    if isinstance(modules, hiredis.ReplyError) or not isinstance(modules, list):
        return None
    names = {bytes(m[i + 1]).lower() for m in modules for i in range(0, len(m) - 1, 2) if m[i] == b"name"}
    return bool(names & {b"rejson", b"rejson-rl", b"json"})
