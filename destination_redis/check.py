"""`check`: prove that a sync with this config would work, or say which step fails and why.

Steps: SSH tunnel, TCP connect, TLS handshake, AUTH, SELECT, INFO (in `connection.open_target`),
then PING, and every command a sync of the configured cache type sends, on probe keys that are
deleted afterwards: proves the write permissions of an ACL user, and names each missing one.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from airbyte_cdk.models import AirbyteConnectionStatus, Status
from redis import exceptions as rex

from destination_redis.config import RedisConfig
from destination_redis.connection import RedisTarget, error_code, open_target
from destination_redis.errors import ConnectStepError

logger = logging.getLogger("airbyte")

PROBE_PREFIX = "_airbyte_check:"


def run_check(config: RedisConfig) -> AirbyteConnectionStatus:
    try:
        with open_target(config) as target:
            _ping(target)
            _probe_write(target, config)
            tls = f" over TLS (certificate verified for '{config.host}')" if config.tls else ""
            message = (
                f"Connected to {target.server.label} ({target.server.mode}) at "
                f"{target.where}{tls}, database {config.db}; the '{config.cache_type}' layout can be written."
            )
    except ConnectStepError as exc:
        return AirbyteConnectionStatus(status=Status.FAILED, message=exc.message)
    except Exception as exc:
        message = getattr(exc, "message", None) or f"Unexpected {type(exc).__name__} during check."
        return AirbyteConnectionStatus(status=Status.FAILED, message=str(message))
    logger.info(message)
    return AirbyteConnectionStatus(status=Status.SUCCEEDED, message=message)


def _ping(target: RedisTarget) -> None:
    try:
        target.client.ping()
    except rex.NoPermissionError:
        pass  # syncs never PING; the INFO of the probe already proved the server answers
    except rex.RedisError as exc:
        raise ConnectStepError(f"PING failed at {target.where}: {type(exc).__name__}.", True) from None


def probe_commands(target: RedisTarget, config: RedisConfig, prefix: str) -> list[tuple[Any, ...]]:
    """Each command a sync of the hash cache type may send, on probe keys shaped like its keys.

    `prefix` plays the stream key: the counter (INCRBY, GET), `prefix:1` a record hash (HSET, or
    HMSET before Redis 4.0; HGET, HDEL, EXPIRE), replaced atomically (MULTI/DEL/EXEC), found with
    SCAN and deleted (UNLINK from 4.0, DEL). Keep it in step with the writers.
    """
    record = f"{prefix}:1"
    hset = target.server.hset_verb.decode()
    commands: list[tuple[Any, ...]] = [
        ("INCRBY", prefix, 1),
        ("GET", prefix),
        (hset, record, "_airbyte_ab_id", "1", "_airbyte_data", "{}"),
        ("EXPIRE", record, 60),  # also the safety net should the deletes below be refused
        ("EXPIRE", prefix, 60),
        ("HMSET", record, "_airbyte_emitted_at", "0"),
        ("HGET", record, "_airbyte_ab_id"),
        ("HGETALL", record),
        ("HDEL", record, "_airbyte_emitted_at"),
        ("MULTI",),
        ("DEL", record),
        ("EXEC",),
        ("SCAN", 0, "MATCH", f"{prefix}*", "COUNT", 100),
    ]
    if target.server.has_unlink:
        commands.append(("UNLINK", record))
    commands.append(("DEL", prefix))
    return commands


def _probe_write(target: RedisTarget, config: RedisConfig) -> None:
    """Run `probe_commands` on one connection; report every command the ACL user may not run.

    The probe keys have a unique name and are deleted at the end (they expire after a minute
    should the deletes be refused).
    """
    prefix = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    commands = probe_commands(target, config, prefix)
    denied: dict[str, str] = {}  # command -> the server's NOPERM reply
    pool = target.client.connection_pool
    conn = pool.get_connection()
    try:
        for command in commands:
            name = str(command[0])
            try:
                conn.send_command(*command, check_health=False)
                conn.read_response()
            except rex.ResponseError as exc:
                code = error_code(exc)
                if code == "NOPERM" or isinstance(exc, rex.NoPermissionError):
                    if name != "EXPIRE" or config.ttl_seconds:  # EXPIRE: only syncs with a TTL
                        denied.setdefault(name, str(exc))
                elif code in ("EXECABORT", "ERR") and name == "EXEC":
                    continue  # a denied MULTI or DEL made EXEC fail; that one is reported
                else:
                    raise _write_refused(target, name, code) from None
        _cleanup(conn, prefix)
    except rex.ConnectionError as exc:
        conn.disconnect()
        raise ConnectStepError(
            f"Write permission check failed at {target.where}: the connection was lost "
            f"({type(exc).__name__}). Check the server's health and try again.",
            True,
        ) from None
    finally:
        pool.release(conn)
    if denied:
        raise _denied(target, config, denied)


def _cleanup(conn: Any, prefix: str) -> None:
    for command in (("DEL", prefix, f"{prefix}:1"), ("UNLINK", prefix, f"{prefix}:1")):
        try:
            conn.send_command(*command, check_health=False)
            conn.read_response()
            return
        except rex.ResponseError:
            continue


def _denied(target: RedisTarget, config: RedisConfig, denied: dict[str, str]) -> ConnectStepError:
    user = config.username or "default"
    names = sorted(denied)
    # The reply says whether the command or the key was refused; the wording differs by version.
    keys_refused = [
        name for name, reply in denied.items() if "key" in reply.lower() and "command" not in reply.lower()
    ]
    if keys_refused:
        return ConnectStepError(
            f"Write permission check failed at {target.where}: the ACL user '{user}' may not access "
            f"the probe keys '{PROBE_PREFIX}*' ({', '.join(sorted(keys_refused))} refused: "
            f"{denied[keys_refused[0]]}). The check writes and deletes keys named {PROBE_PREFIX}<random>, "
            f"and syncs write keys named <namespace>:<stream>: grant the user these key patterns "
            f"(e.g. ACL SETUSER {user} ~{PROBE_PREFIX}* ~<namespace>:*), or ~* .",
            False,
        )
    grants = " ".join(f"+{n.lower()}" for n in names)
    return ConnectStepError(
        f"Write permission check failed at {target.where}: the ACL user '{user}' may not run "
        f"{', '.join(names)}, which the '{config.cache_type}' cache type needs (NOPERM). Grant them "
        f"(ACL SETUSER {user} {grants}), or use a user with read and write rights (+@read +@write "
        f"+@keyspace +@transaction).",
        False,
    )


def _write_refused(target: RedisTarget, command: str, code: str) -> ConnectStepError:
    if code == "READONLY":
        advice = "this server is a read-only replica; point the connector at the primary"
    elif code == "OOM":
        advice = "the server is at maxmemory; raise maxmemory or free memory"
    else:
        advice = "check the server's settings"
    return ConnectStepError(
        f"Write permission check failed at {target.where}: {command} on a probe key was refused "
        f"({code}); {advice}.",
        False,
    )
