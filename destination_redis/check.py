"""`check`: prove that a sync with this config would work, or say which step fails and why.

Steps: SSH tunnel, TCP connect, TLS handshake, AUTH, SELECT, INFO (in `topology.open_router`),
then PING, and every command a sync of the configured cache type sends, on probe keys that are
deleted afterwards: proves the write permissions of an ACL user, and names each missing one.
With durability options, the primaries' replicas in sync are counted first (INFO replication),
and the probe writes are followed by the same WAIT / WAITAOF a sync sends, which proves them.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import hiredis

from destination_redis import keys
from destination_redis.config import COLLECTION_TYPES, CacheType, RedisConfig, StandaloneTopology
from destination_redis.connection.server import error_code
from destination_redis.errors import ConnectStepError, GateError
from destination_redis.key_template import KeyTemplate
from destination_redis.search.gates import require_search
from destination_redis.search.plan import indexed_types
from destination_redis.topology import open_router
from destination_redis.topology.durability import Durability
from destination_redis.topology.roles import role_from_info
from destination_redis.topology.router import Router
from destination_redis.writers import encoding_of, members_of
from destination_redis.writers.gates import require
from destination_redis.writers.key_rules import refuse_config

logger = logging.getLogger("airbyte")

PROBE_PREFIX = "_airbyte_check:"


@dataclass(frozen=True)
class CheckResult:
    """What check answers: SUCCEEDED (ok) or FAILED, and the message saying why."""

    ok: bool
    message: str


def run_check(config: RedisConfig) -> CheckResult:
    try:
        # Two attempts: check reports a lost connection now instead of retrying for long.
        refuse_config(config)  # templates and expiry fields, before connecting
        with open_router(config, attempts=2) as router:
            _ping(router)
            require(router, config.cache_types)
            engine = require_search(router, indexed_types(config)) if config.indexes else None
            durable = _durability(router, config)
            _probe_write(router, config)
            tls = ""
            if config.tls and isinstance(config.topology, StandaloneTopology):
                tls = f" over TLS (certificate verified for '{config.host}')"
            elif config.tls:
                tls = " over TLS (each certificate verified for the name its node is announced by)"
            message = (
                f"Connected to {router.topology.describe()}{tls}, database {config.db}; the "
                f"{_types(config)} can be written{durable}.{_key_shapes(config)}"
                + (f" Search indexes can be built (query engine: {engine})." if engine else "")
            )
    except ConnectStepError as exc:
        return CheckResult(False, exc.message)
    except GateError as exc:
        return CheckResult(False, str(exc))
    except Exception as exc:
        message = getattr(exc, "message", None) or f"Unexpected {type(exc).__name__} during check."
        return CheckResult(False, str(message))
    logger.info(message)
    return CheckResult(True, message)


def _key_shapes(config: RedisConfig) -> str:
    """What each templated stream's keys look like, e.g. ` Key templates: users: user:{id} ->
    app:user:<id>.`; expiry from the data, where configured."""
    shapes = [
        f"{_label(entry.namespace, entry.name)}: "
        f"{entry.key_template} -> {KeyTemplate.parse(entry.key_template).shape(config.key_prefix)}"
        for entry in config.streams if entry.key_template
    ]
    words = f" Key templates: {'; '.join(shapes)}." if shapes else ""
    fields = [f"{name} '{value}'" for name, value in (
        ("expire_at_field", config.expire_at_field), ("ttl_field", config.ttl_field)) if value]
    for entry in config.streams:
        pairs = (("expire_at_field", entry.expire_at_field), ("ttl_field", entry.ttl_field))
        label = _label(entry.namespace, entry.name)
        fields += [f"{name} '{value}' ({label})" for name, value in pairs if value]
    if fields:
        words += f" Keys expire from the data: {', '.join(fields)}."
    return words


def _label(namespace: str | None, name: str) -> str:
    return f"{namespace}.{name}" if namespace else name


def _types(config: RedisConfig) -> str:
    names = sorted(config.cache_types)
    return f"'{names[0]}' layout" if len(names) == 1 else "layouts " + ", ".join(f"'{n}'" for n in names)


def _durability(router: Router, config: RedisConfig) -> str:
    """Enough replicas in sync on every primary for wait_for_replicas (else every batch would
    fail after wait_timeout_ms: FAILED); the words for check's message. WAITAOF's version and
    appendonly were checked when the router was opened (durability.require)."""
    durability = Durability.of(config)
    if durability.replicas:
        for node in router.topology.primaries():
            reply = router.run_on(node, (b"INFO", b"replication"), tolerate_errors=True)
            if isinstance(reply, hiredis.ReplyError):
                continue  # INFO refused: the probes' WAIT finds out
            _, in_sync = role_from_info(reply)
            if len(in_sync) < durability.replicas:
                raise ConnectStepError(
                    f"wait_for_replicas is {durability.replicas}, but the primary at {node.where} has "
                    f"{len(in_sync)} replica{'s' if len(in_sync) != 1 else ''} in sync (INFO "
                    f"replication): every batch would fail after wait_timeout_ms. Attach or repair "
                    f"replicas, or lower wait_for_replicas.",
                    False,
                )
    words = [f"confirmed by {durability.replicas} replica{'s' if durability.replicas != 1 else ''} "
             f"(WAIT {durability.replicas} {durability.timeout_ms})"] if durability.replicas else []
    if durability.aof:
        words.append(f"fsynced to the append-only file (WAITAOF 1 0 {durability.timeout_ms})")
    if not words:
        return ""
    return f", each write {' and '.join(words)} before its state is released"


def _ping(router: Router) -> None:
    for node in router.topology.primaries():
        reply = router.run_on(node, (b"PING",), tolerate_errors=True)
        if isinstance(reply, hiredis.ReplyError) and error_code(reply) != "NOPERM":
            # syncs never PING, so a user without it is fine; anything else is not
            raise ConnectStepError(f"PING failed at {node.where}: {reply}.", True)


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


def _probe_write(router: Router, config: RedisConfig) -> None:
    """Run `probe_commands`; report every command the ACL user may not run.

    The probe keys have a unique name and are deleted at the end (they expire after a minute
    should the deletes be refused).
    """
    prefix = f"{config.key_prefix}{PROBE_PREFIX}{uuid.uuid4().hex}"
    denied: dict[str, str] = {}  # command -> the server's NOPERM reply
    try:
        for unit in probe_commands(router, config, prefix):
            if unit[0][0] == "SCAN":
                primaries = router.topology.primaries()
                replies = [router.run_on(node, unit[0], tolerate_errors=True) for node in primaries]
                sent = unit * len(replies)
            else:
                replies = router.run(unit, tolerate_errors=True)
                sent = unit
            for command, reply in zip(sent, replies, strict=True):
                if not isinstance(reply, hiredis.ReplyError):
                    continue
                name = str(command[0])
                code = error_code(reply)
                if code == "NOPERM":
                    if name != "EXPIRE" or config.ttl_seconds or config.expires_from_data:
                        # EXPIRE: only syncs with a TTL
                        denied.setdefault(name, str(reply))
                elif code in ("EXECABORT", "ERR") and name == "EXEC":
                    continue  # a denied MULTI or DEL made EXEC fail; that one is reported
                elif denied:
                    continue  # e.g. XINFO or RENAME of a key a denied write did not create: reported
                else:
                    raise _write_refused(router, name, code)
    finally:  # also when a refusal ends the probe early
        probes = probe_keys(config, prefix)
        extra = [stage_key(config, key) for key, _ in probes] + [
            keys.sibling_key(key.encode(), keys.BATCHES, config.key_prefix).decode() for key, _ in probes
        ]
        extra.append(probe_book_key(config, prefix))
        _cleanup(router, [prefix, probe_meta_key(config, prefix), *(key for key, _ in probes), *extra])
        if config.indexes:
            router.run([("FT.ALIASDEL", f"{prefix}:alias"), ("FT.DROPINDEX", f"{prefix}:idx")],
                       tolerate_errors=True)
    if denied:
        raise _denied(router, config, denied)


def _cleanup(router: Router, probe: list[str]) -> None:
    """One key per command (Cluster: the keys may live in different slots)."""
    for verb in ("DEL", "UNLINK"):
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
        f"{', '.join(names)}, which the {_types(config)} needs (NOPERM). Grant them "
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
