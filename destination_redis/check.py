"""`check`: prove that a sync with this config would work, or say which step fails and why.

Steps: SSH tunnel, TCP connect, TLS handshake, AUTH, SELECT, INFO, PING (in `topology.open_router`,
connection/probe.py), then every command a sync of the configured cache type sends, on probe keys
that are deleted afterwards (check_probe.py): proves the write permissions of an ACL user, and
names each missing one. Over a far link the round trips are what check costs: the connection
steps take one, the probe writes and their deletes one.
With durability options, the primaries' replicas in sync are counted first (INFO replication),
and the probe writes are followed by the same WAIT / WAITAOF a sync sends, which proves them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import hiredis

from destination_redis.check_probe import probe_write, types_text
from destination_redis.config import RedisConfig, StandaloneTopology
from destination_redis.errors import ConnectStepError, GateError
from destination_redis.key_template import KeyTemplate
from destination_redis.search.gates import require_search
from destination_redis.search.plan import indexed_types
from destination_redis.topology import open_router
from destination_redis.topology.durability import Durability
from destination_redis.topology.roles import role_from_info
from destination_redis.topology.router import Router
from destination_redis.writers.gates import require
from destination_redis.writers.key_rules import refuse_config

logger = logging.getLogger("airbyte")


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
            probe_write(router, config)
            tls = ""
            if config.tls and isinstance(config.topology, StandaloneTopology):
                tls = f" over TLS (certificate verified for '{config.host}')"
            elif config.tls:
                tls = " over TLS (each certificate verified for the name its node is announced by)"
            message = (
                f"Connected to {router.topology.describe()}{tls}, database {config.db}; the "
                f"{types_text(config)} can be written{durable}.{_key_shapes(config)}"
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
    """The PING each node answered when it was opened (sent with its connection steps: no round
    trip of its own)."""
    for node in router.topology.primaries():
        reply = node.ping_error  # the answer's text, its code first
        if reply is not None and reply.split(" ", 1)[0] != "NOPERM":
            # syncs never PING, so a user without it is fine; anything else is not
            raise ConnectStepError(f"PING failed at {node.where}: {reply}.", True)
