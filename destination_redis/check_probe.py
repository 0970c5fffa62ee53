"""check's probe writes: every command a sync of the configured cache types sends, on probe
keys shaped like a sync's keys, in one pipeline with their deletes; each refusal named.

Proves the write permissions of an ACL user, and names each missing one (and the key patterns,
where keys were refused); another refusal (READONLY, OOM) ends the check with its advice.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import hiredis

from destination_redis import keys
from destination_redis.config import COLLECTION_TYPES, CacheType, RedisConfig
from destination_redis.connection.server import error_code
from destination_redis.errors import ConnectStepError
from destination_redis.topology.router import Router
from destination_redis.writers import encoding_of, members_of

PROBE_PREFIX = "_airbyte_check:"


def types_text(config: RedisConfig) -> str:
    """For messages: "'hash' layout", "layouts 'hash', 'json'"."""
    names = sorted(config.cache_types)
    return f"'{names[0]}' layout" if len(names) == 1 else "layouts " + ", ".join(f"'{n}'" for n in names)


def probe_commands(router: Router, config: RedisConfig, prefix: str) -> list[list[tuple[Any, ...]]]:
    """Each command a sync of the configured cache types may send, on probe keys shaped like
    their keys, in the units the router sends (a MULTI .. EXEC is one unit).

    `prefix` plays the stream key: the counter (INCRBY, GET; per-record types only), the
    generation bookkeeping (a hash: HMSET, HGETALL, HDEL), then per cache type a record key
    `prefix:<n>` written the way that type writes (writers/<type>.py `probe`, e.g. HSET, or HMSET
    before Redis 4.0; JSON.SET; SET) and read back for its id, EXPIRE, the atomic replace
    (MULTI/DEL/EXEC); for a collection type its members' commands and the refresh's swap
    (`_collection_probe`); SCAN on every primary (per-record types), and UNLINK (from 4.0) or
    DEL. Kept in step with the writers through their encodings and members.
    """
    meta = probe_meta_key(config, prefix)
    per_record = bool(config.cache_types - COLLECTION_TYPES)  # collections have no counter, no SCAN
    units: list[list[tuple[Any, ...]]] = [
        [("INCRBY", prefix, 1)],
        [("GET", prefix)],
        [("EXPIRE", prefix, 60)],  # also the safety net should the deletes below be refused
    ] if per_record else []
    units += [
        [("HMSET", meta, "generation_id", "1")],
        [("EXPIRE", meta, 60)],
        [("HGETALL", meta)],
        [("HDEL", meta, "generation_id")],
    ]
    for key, cache_type in probe_keys(config, prefix):
        if cache_type in COLLECTION_TYPES:
            units += _collection_probe(router, config, key, cache_type)
            continue
        encoding = encoding_of(cache_type, router.server)
        units += [*encoding.probe(key), [("EXPIRE", key, 60)]]
        if config.expires_from_data:
            units += [[("PERSIST", key)], [("PEXPIRE", key, 60_000)], [("PEXPIREAT", key, _in_a_minute_ms())]]
        units.append([("MULTI",), ("DEL", key), ("EXEC",)])
    if any(entry.key_template for entry in config.streams):
        # A templated stream's key book (key_book.py): shaped like its keys, led by the prefix.
        book = probe_book_key(config, prefix)
        units += [
            [("ZADD", book, 1, f"{prefix}:1")],
            [("EXPIRE", book, 60)],
            [("ZRANGEBYSCORE", book, "-inf", "+inf", "WITHSCORES")],
            [("ZREM", book, f"{prefix}:1")],
        ]
    if config.indexes:
        # A search index's lifecycle (search/index.py), on a probe index over the probe keys.
        index, alias = f"{prefix}:idx", f"{prefix}:alias"
        units += [
            [("FT.CREATE", index, "ON", "HASH", "PREFIX", "1", f"{prefix}:", "SCHEMA", "f", "TAG")],
            [("FT.ALIASUPDATE", alias, index)],
            [("FT.INFO", alias)],
            [("FT.ALTER", index, "SCHEMA", "ADD", "g", "TAG")],
            [("FT.ALIASDEL", alias)],
            [("FT.DROPINDEX", index)],
        ]
    if per_record:
        units.append([("SCAN", 0, "MATCH", f"{prefix}*", "COUNT", 100)])
    if router.server.has_unlink:
        units.append([("UNLINK", f"{prefix}:1")])
    units.append([("DEL", prefix)])
    return units


def _collection_probe(
    router: Router, config: RedisConfig, key: str, cache_type: CacheType
) -> list[list[tuple[Any, ...]]]:
    """A collection type's writes on `key`, then the refresh's swap: its staging key (in K's
    hash slot, led by the key_prefix) RENAMEd over `key`, and EXISTS."""
    stage = stage_key(config, key)
    members = members_of(cache_type, router, key.encode(), config.key_prefix)
    return [
        *members.probe(stage),
        [("EXPIRE", stage, 60)],
        [("EXISTS", stage)],
        [("RENAME", stage, key)],
        [("EXPIRE", key, 60)],
    ]


def probe_meta_key(config: RedisConfig, prefix: str) -> str:
    """Shaped like a stream's generation bookkeeping, `<key_prefix>_airbyte_meta:<K>` (keys.meta_key),
    so that an ACL key pattern refusing those is found by check rather than by the first refresh."""
    return keys.meta_key(prefix[len(config.key_prefix):].encode(), config.key_prefix).decode()


def probe_book_key(config: RedisConfig, prefix: str) -> str:
    """Shaped like a templated stream's key book (keys.owned_keys_book), for ACL key patterns."""
    return keys.owned_keys_book(prefix[len(config.key_prefix):].encode(), config.key_prefix, 0).decode()


def _in_a_minute_ms() -> int:
    return int((time.time() + 60) * 1000)


def stage_key(config: RedisConfig, key: str) -> str:
    return keys.sibling_key(key.encode(), keys.STAGE, config.key_prefix).decode()


def probe_keys(config: RedisConfig, prefix: str) -> list[tuple[str, CacheType]]:
    """One record key per chosen cache type (their values have different Redis types)."""
    return [(f"{prefix}:{n}", cache_type) for n, cache_type in enumerate(sorted(config.cache_types), 1)]


def probe_write(router: Router, config: RedisConfig) -> None:
    """Run `probe_commands`; report every command the ACL user may not run.

    The probe keys have a unique name and are deleted at the end (they expire after a minute
    should the deletes be refused). One pipeline, one round trip: every probe command, then the
    deletes (DEL of every probe key, the probe index dropped), each key's commands in order
    (nothing else depends on an earlier answer); the answers are judged in order, as if the
    commands had gone one by one. SCAN reaches every primary: sent apart to each where there
    are several. UNLINK instead of DEL in a second round trip, where DEL was refused.
    """
    prefix = f"{config.key_prefix}{PROBE_PREFIX}{uuid.uuid4().hex}"
    units = probe_commands(router, config, prefix)
    primaries = router.topology.primaries()
    apart = len(primaries) > 1  # the router sends a keyless command to one node
    batch = [command for unit in units if not (apart and _is_scan(unit)) for command in unit]
    probe = _probe_keys(config, prefix)
    deletes = [("DEL", key) for key in probe]
    drops = _index_drops(prefix) if config.indexes else []
    denied: dict[str, str] = {}  # command -> the server's NOPERM reply
    ran = False  # the pipeline ran: its deletes and drops too
    del_refused = True
    try:
        replies = router.run([*batch, *deletes, *drops], tolerate_errors=True)
        ran = True
        del_refused = any(isinstance(reply, hiredis.ReplyError)
                          for reply in replies[len(batch):len(batch) + len(deletes)])
        answers = iter(replies)
        for unit in units:
            if apart and _is_scan(unit):
                pairs = [(unit[0], router.run_on(node, unit[0], tolerate_errors=True)) for node in primaries]
            else:
                pairs = [(command, next(answers)) for command in unit]
            for command, reply in pairs:
                _judge(router, config, command, reply, denied)
    finally:  # also when a refusal ends the probe early
        if not ran:  # lost: delete and drop again, as far as the server lets
            _cleanup(router, probe, ("DEL", "UNLINK"))
            if drops:
                router.run(drops, tolerate_errors=True)
        elif del_refused:
            _cleanup(router, probe, ("UNLINK",))
    if denied:
        raise _denied(router, config, denied)


def _judge(router: Router, config: RedisConfig, command: tuple[Any, ...], reply: Any,
           denied: dict[str, str]) -> None:
    """One probe command's answer: a NOPERM is noted in `denied`, another refusal raised."""
    if not isinstance(reply, hiredis.ReplyError):
        return
    name = str(command[0])
    code = error_code(reply)
    if code == "NOPERM":
        if name != "EXPIRE" or config.ttl_seconds or config.expires_from_data:
            # EXPIRE: only syncs with a TTL
            denied.setdefault(name, str(reply))
    elif code in ("EXECABORT", "ERR") and name == "EXEC":
        return  # a denied MULTI or DEL made EXEC fail; that one is reported
    elif denied:
        return  # e.g. XINFO or RENAME of a key a denied write did not create: reported
    else:
        raise _write_refused(router, name, code)


def _is_scan(unit: list[tuple[Any, ...]]) -> bool:
    return str(unit[0][0]) == "SCAN"


def _probe_keys(config: RedisConfig, prefix: str) -> list[str]:
    """Every key the probe may have made: counter, bookkeeping, records, their siblings, book."""
    records = [key for key, _ in probe_keys(config, prefix)]
    return [
        prefix, probe_meta_key(config, prefix), *records,
        *(stage_key(config, key) for key in records),
        *(keys.sibling_key(key.encode(), keys.BATCHES, config.key_prefix).decode() for key in records),
        probe_book_key(config, prefix),
    ]


def _index_drops(prefix: str) -> list[tuple[Any, ...]]:
    """The probe index and alias dropped, should the probe have stopped before dropping them."""
    return [("FT.ALIASDEL", f"{prefix}:alias"), ("FT.DROPINDEX", f"{prefix}:idx")]


def _cleanup(router: Router, probe: list[str], verbs: tuple[str, ...]) -> None:
    """One key per command (Cluster: the keys may live in different slots)."""
    for verb in verbs:
        replies = router.run([(verb, key) for key in probe], tolerate_errors=True)
        if not any(isinstance(reply, hiredis.ReplyError) for reply in replies):
            return


def _denied(router: Router, config: RedisConfig, denied: dict[str, str]) -> ConnectStepError:
    user = config.username or "default"
    names = sorted(denied)
    probe, streams = f"{config.key_prefix}{PROBE_PREFIX}", f"{config.key_prefix}<namespace>:"
    meta = keys.meta_key(b"", config.key_prefix).decode()  # refresh bookkeeping: <prefix>_airbyte_meta:
    # Collections keep a staging key and a batch counter in K's slot: <prefix>{K}:_airbyte_...
    siblings = f" ~{config.key_prefix}{{*" if config.cache_types & COLLECTION_TYPES else ""
    # The reply says whether the command or the key was refused; the wording differs by version.
    keys_refused = [
        name for name, reply in denied.items() if "key" in reply.lower() and "command" not in reply.lower()
    ]
    if keys_refused:
        return ConnectStepError(
            f"Write permission check failed at {router.where}: the ACL user '{user}' may not access "
            f"the probe keys '{probe}*' ({', '.join(sorted(keys_refused))} refused: "
            f"{denied[keys_refused[0]]}). The check writes and deletes keys named {probe}<random>, "
            f"and syncs write keys named {streams}<stream> (and {meta}<namespace>:<stream> for "
            f"refreshes): grant the user these key patterns "
            f"(e.g. ACL SETUSER {user} ~{probe}* ~{streams}* ~{meta}*{siblings}), or ~* .",
            False,
        )
    grants = " ".join(f"+{n.lower()}" for n in names)
    # Redis 8 has a @search category; the search module loaded into an older server does not.
    fts = any(n.startswith("FT.") for n in names)
    search = " (Redis 8 also takes +@search for the FT commands)" if fts else ""
    return ConnectStepError(
        f"Write permission check failed at {router.where}: the ACL user '{user}' may not run "
        f"{', '.join(names)}, which the {types_text(config)} needs (NOPERM). Grant them "
        f"(ACL SETUSER {user} {grants}){search}, or use a user with read and write rights (+@read "
        f"+@write +@keyspace +@transaction).",
        False,
    )


def _write_refused(router: Router, command: str, code: str) -> ConnectStepError:
    if code == "READONLY":
        advice = "this server is a read-only replica; point the connector at the primary"
    elif code == "OOM":
        advice = "the server is at maxmemory; raise maxmemory or free memory"
    else:
        advice = "check the server's settings"
    return ConnectStepError(
        f"Write permission check failed at {router.where}: {command} on a probe key was refused "
        f"({code}); {advice}.",
        False,
    )
