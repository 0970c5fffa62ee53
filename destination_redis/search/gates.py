"""Whether search indexes can be built here: asked by `check` and by `write` before it writes.

The query engine is Redis 8's built-in one, or the `search` module (RediSearch: Redis Stack,
or loaded by hand) before it. Open-source Redis Cluster has no cross-shard query engine (an index
there covers one shard's keys only), so a cluster is refused rather than half indexed.
"""

from __future__ import annotations

from collections.abc import Iterable

import hiredis

from destination_redis.errors import GateError
from destination_redis.topology.router import Router

INDEXABLE_TYPES = ("hash_fields", "json")


def require_search(router: Router, cache_types: Iterable[str]) -> str:
    """The query engine's version text (e.g. "search 2.10.5"); GateError when there is none or
    the topology or a cache type cannot have indexes."""
    refused = sorted(set(cache_types) - set(INDEXABLE_TYPES))
    if refused:
        raise GateError(
            f"search_index needs cache_type hash_fields or json (one field per property); "
            f"cache_type {', '.join(repr(t) for t in refused)} stores a record as one value, which "
            f"the query engine cannot index by property. Choose hash_fields or json for the "
            f"indexed streams."
        )
    if router.server.mode == "cluster":
        raise GateError(
            f"search_index cannot be used on Redis Cluster ({router.server.label}): open-source "
            f"Redis Cluster has no cross-shard query engine, so an index would see one shard's "
            f"records only. Use a standalone or Sentinel-managed Redis 8 (or Redis Stack), or "
            f"remove search_index."
        )
    version = query_engine(router)
    if version is None:
        raise GateError(
            f"search_index needs the Redis query engine (FT.CREATE): built into Redis 8, or the "
            f"search module (Redis Stack, RediSearch 2.x); the server at {router.where} "
            f"({router.server.label}) has neither. Upgrade to Redis 8, load the module, or remove "
            f"search_index."
        )
    return version


def query_engine(router: Router) -> str | None:
    """"search <version>" when FT.CREATE exists; None when it does not."""
    if router.server.version < (4, 0, 0):
        return None
    (command,) = router.run([(b"COMMAND", b"INFO", b"FT.CREATE")], tolerate_errors=True)
    known = isinstance(command, list) and bool(command) and command[0] is not None
    (modules,) = router.run([(b"MODULE", b"LIST")], tolerate_errors=True)
    version = _module_version(modules)
    if version is not None:
        return f"search {version}"
    return "built in" if known else None


def _module_version(modules: object) -> str | None:
    """The search module's version from MODULE LIST (21005 -> 2.10.5)."""
    if isinstance(modules, hiredis.ReplyError) or not isinstance(modules, list):
        return None
    for module in modules:
        pairs = {module[i]: module[i + 1] for i in range(0, len(module) - 1, 2)}
        if bytes(pairs.get(b"name", b"")).lower() in (b"search", b"ft"):
            ver = int(pairs.get(b"ver", 0))
            return f"{ver // 10000}.{ver // 100 % 100}.{ver % 100}"
    return None
