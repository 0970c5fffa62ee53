"""`check`: prove that a sync with this config would work, or say which step fails and why.

Steps: SSH tunnel, TCP connect, TLS handshake, AUTH, SELECT, INFO (in `connection.open_target`),
then PING, and every command a sync of the configured cache type sends, on probe keys that are
deleted afterwards: proves the write permissions of an ACL user, and names each missing one.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import hiredis
from airbyte_cdk.models import AirbyteConnectionStatus, Status

from destination_redis.config import RedisConfig, StandaloneTopology
from destination_redis.connection.server import error_code
from destination_redis.errors import ConnectStepError
from destination_redis.topology import open_router
from destination_redis.topology.router import Router

logger = logging.getLogger("airbyte")

PROBE_PREFIX = "_airbyte_check:"


def run_check(config: RedisConfig) -> AirbyteConnectionStatus:
    try:
        # Two attempts: check reports a lost connection now instead of retrying for long.
        with open_router(config, attempts=2) as router:
            _ping(router)
            _probe_write(router, config)
            tls = ""
            if config.tls and isinstance(config.topology, StandaloneTopology):
                tls = f" over TLS (certificate verified for '{config.host}')"
            elif config.tls:
                tls = " over TLS (each certificate verified for the name its node is announced by)"
            message = (
                f"Connected to {router.topology.describe()}{tls}, database {config.db}; the "
                f"'{config.cache_type}' layout can be written."
            )
    except ConnectStepError as exc:
        return AirbyteConnectionStatus(status=Status.FAILED, message=exc.message)
    except Exception as exc:
        message = getattr(exc, "message", None) or f"Unexpected {type(exc).__name__} during check."
        return AirbyteConnectionStatus(status=Status.FAILED, message=str(message))
    logger.info(message)
    return AirbyteConnectionStatus(status=Status.SUCCEEDED, message=message)


def _ping(router: Router) -> None:
    for node in router.topology.primaries():
        reply = router.run_on(node, (b"PING",), tolerate_errors=True)
        if isinstance(reply, hiredis.ReplyError) and error_code(reply) != "NOPERM":
            # syncs never PING, so a user without it is fine; anything else is not
            raise ConnectStepError(f"PING failed at {node.where}: {reply}.", True)


def probe_commands(router: Router, config: RedisConfig, prefix: str) -> list[list[tuple[Any, ...]]]:
    """Each command a sync of the hash cache type may send, on probe keys shaped like its keys,
    in the units the router sends (a MULTI .. EXEC is one unit).

    `prefix` plays the stream key: the counter (INCRBY, GET), `prefix:1` a record hash (HSET, or
    HMSET before Redis 4.0; HGET, HDEL, EXPIRE), replaced atomically (MULTI/DEL/EXEC), found with
    SCAN (on every primary) and deleted (UNLINK from 4.0, DEL). Keep it in step with the writers.
    """
    record = f"{prefix}:1"
    hset = router.server.hset_verb.decode()
    units: list[list[tuple[Any, ...]]] = [
        [("INCRBY", prefix, 1)],
        [("GET", prefix)],
        [(hset, record, "_airbyte_ab_id", "1", "_airbyte_data", "{}")],
        [("EXPIRE", record, 60)],  # also the safety net should the deletes below be refused
        [("EXPIRE", prefix, 60)],
        [("HMSET", record, "_airbyte_emitted_at", "0")],
        [("HGET", record, "_airbyte_ab_id")],
        [("HGETALL", record)],
        [("HDEL", record, "_airbyte_emitted_at")],
        [("MULTI",), ("DEL", record), ("EXEC",)],
        [("SCAN", 0, "MATCH", f"{prefix}*", "COUNT", 100)],
    ]
    if router.server.has_unlink:
        units.append([("UNLINK", record)])
    units.append([("DEL", prefix)])
    return units


def _probe_write(router: Router, config: RedisConfig) -> None:
    """Run `probe_commands`; report every command the ACL user may not run.

    The probe keys have a unique name and are deleted at the end (they expire after a minute
    should the deletes be refused).
    """
    prefix = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    denied: dict[str, str] = {}  # command -> the server's NOPERM reply
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
                if name != "EXPIRE" or config.ttl_seconds:  # EXPIRE: only syncs with a TTL
                    denied.setdefault(name, str(reply))
            elif code in ("EXECABORT", "ERR") and name == "EXEC":
                continue  # a denied MULTI or DEL made EXEC fail; that one is reported
            else:
                raise _write_refused(router, name, code)
    _cleanup(router, prefix)
    if denied:
        raise _denied(router, config, denied)


def _cleanup(router: Router, prefix: str) -> None:
    """One key per command (Cluster: the two keys may live in different slots)."""
    for verb in ("DEL", "UNLINK"):
        replies = router.run([(verb, prefix), (verb, f"{prefix}:1")], tolerate_errors=True)
        if not any(isinstance(reply, hiredis.ReplyError) for reply in replies):
            return


def _denied(router: Router, config: RedisConfig, denied: dict[str, str]) -> ConnectStepError:
    user = config.username or "default"
    names = sorted(denied)
    # The reply says whether the command or the key was refused; the wording differs by version.
    keys_refused = [
        name for name, reply in denied.items() if "key" in reply.lower() and "command" not in reply.lower()
    ]
    if keys_refused:
        return ConnectStepError(
            f"Write permission check failed at {router.where}: the ACL user '{user}' may not access "
            f"the probe keys '{PROBE_PREFIX}*' ({', '.join(sorted(keys_refused))} refused: "
            f"{denied[keys_refused[0]]}). The check writes and deletes keys named {PROBE_PREFIX}<random>, "
            f"and syncs write keys named <namespace>:<stream>: grant the user these key patterns "
            f"(e.g. ACL SETUSER {user} ~{PROBE_PREFIX}* ~<namespace>:*), or ~* .",
            False,
        )
    grants = " ".join(f"+{n.lower()}" for n in names)
    return ConnectStepError(
        f"Write permission check failed at {router.where}: the ACL user '{user}' may not run "
        f"{', '.join(names)}, which the '{config.cache_type}' cache type needs (NOPERM). Grant them "
        f"(ACL SETUSER {user} {grants}), or use a user with read and write rights (+@read +@write "
        f"+@keyspace +@transaction).",
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
