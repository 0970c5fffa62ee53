"""The one place that opens Redis connections for a config, and reads what the server can do.

`open_target` first walks the connection steps one by one on a probe connection (TCP connect,
AUTH, SELECT, INFO), so a failure names its step from the exception type and the server's error
code, never by guessing from message text. Then it hands out a `RedisTarget`: the pooled client
plus the server facts, read once per command, so writers adapt to old servers without asking again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis
from redis import exceptions as rex

from destination_redis.config import RedisConfig
from destination_redis.errors import config_error, transient_error

CONNECT_TIMEOUT_S = 10.0
SOCKET_TIMEOUT_S = 60.0
CLIENT_NAME = "airbyte-destination-redis"


@dataclass(frozen=True)
class ServerInfo:
    version: tuple[int, int, int]
    mode: str  # "standalone", "cluster" or "sentinel", as INFO server says

    @property
    def version_text(self) -> str:
        return ".".join(str(part) for part in self.version)

    @property
    def has_unlink(self) -> bool:
        return self.version >= (4, 0, 0)

    @property
    def has_multi_field_hset(self) -> bool:
        return self.version >= (4, 0, 0)

    @property
    def has_acl(self) -> bool:
        return self.version >= (6, 0, 0)


@dataclass
class RedisTarget:
    """An open client to the configured Redis and what we know about the server."""

    client: redis.Redis
    server: ServerInfo
    where: str  # "host:port", for messages


class ConnectStepError(Exception):
    """A connection step failed; `message` says which and what to change."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable

    def as_traced(self) -> Exception:
        return (transient_error if self.retryable else config_error)(self.message)


def parse_version(text: str) -> tuple[int, int, int]:
    parts = [int(p) if p.isdigit() else 0 for p in text.split(".")[:3]]
    while len(parts) < 3:
        parts.append(0)
    return parts[0], parts[1], parts[2]


def error_code(exc: BaseException) -> str:
    """The Redis error code (OOM, WRONGTYPE, NOPERM, ...) of an error reply: its first word."""
    code = getattr(exc, "status_code", None)
    if code:
        return str(code)
    text = str(exc)
    return text.split(" ", 1)[0] if text else ""


def _connection_kwargs(config: RedisConfig) -> dict[str, Any]:
    """What every connection needs, with RESP2: servers before 6.0 do not know RESP3's HELLO."""
    return {
        "host": config.host,
        "port": config.port,
        "protocol": 2,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_timeout": SOCKET_TIMEOUT_S,
    }


def build_client(config: RedisConfig) -> redis.Redis:
    return redis.Redis(
        **_connection_kwargs(config),
        username=config.username,
        password=config.password.get_secret_value() if config.password else None,
        db=config.db,
        decode_responses=False,
        client_name=CLIENT_NAME,
    )


def _fail(step: str, where: str, detail: str, advice: str, retryable: bool = False) -> ConnectStepError:
    return ConnectStepError(f"{step} failed at {where}: {detail}. {advice}", retryable)


def probe(config: RedisConfig) -> ServerInfo:
    """Walk TCP connect -> AUTH -> SELECT -> INFO on one connection, naming the step that fails."""
    where = f"{config.host}:{config.port}"
    conn = redis.Connection(**_connection_kwargs(config))
    try:
        try:
            conn.connect()
        except rex.TimeoutError:
            raise _fail(
                "TCP connect", where, f"no answer within {CONNECT_TIMEOUT_S:.0f}s",
                "Check the host and port, and that a firewall lets this machine reach the server.",
                retryable=True,
            ) from None
        except rex.ConnectionError as exc:
            raise _fail(
                "TCP connect", where, _os_reason(exc),
                "Check the host and port, and that the server is running and reachable from here.",
                retryable=True,
            ) from None
        _auth(conn, config, where)
        if config.db:
            _step(conn, where, "SELECT", ("SELECT", config.db),
                  f"Choose a database index the server has (its `databases` setting; "
                  f"Redis Cluster has only database 0); {config.db} was asked for.")
        raw = _step(conn, where, "INFO", ("INFO", "server"), "The server must answer INFO.")
        return _parse_info(raw)
    finally:
        conn.disconnect()


def _auth(conn: redis.Connection, config: RedisConfig, where: str) -> None:
    if not config.password:
        if config.username:
            raise ConnectStepError(
                f"AUTH not attempted at {where}: a username is set without a password. "
                f"Set the password of user '{config.username}'.",
                False,
            )
        return
    args: tuple[str, ...] = (config.password.get_secret_value(),)
    if config.username:
        args = (config.username, *args)
    try:
        conn.send_command("AUTH", *args, check_health=False)
        conn.read_response()
    except rex.AuthenticationWrongNumberOfArgsError:
        raise ConnectStepError(
            f"AUTH failed at {where}: the server does not know ACL users (they need Redis 6 or "
            f"later). Remove the username and authenticate with the password alone.",
            False,
        ) from None
    except (rex.AuthenticationError, rex.ResponseError) as exc:
        raise _fail("AUTH", where, f"the server answered '{_reply_text(exc)}'",
                    "Check the username and password in the config.") from None


def _step(conn: redis.Connection, where: str, step: str, command: tuple[Any, ...], advice: str) -> Any:
    try:
        conn.send_command(*command, check_health=False)
        return conn.read_response()
    except rex.ResponseError as exc:
        if error_code(exc) == "NOAUTH":
            raise _fail(step, where, "the server requires a password",
                        "Set the password (and username for an ACL user) in the config.") from None
        if error_code(exc) == "NOPERM":
            raise _fail(step, where, f"the ACL user may not run {command[0]} ({_reply_text(exc)})",
                        "Grant the user this command, or use another user.") from None
        raise _fail(step, where, f"the server answered '{_reply_text(exc)}'", advice) from None
    except rex.ConnectionError as exc:
        raise _fail(step, where, f"the connection was lost ({_os_reason(exc)})",
                    "Check that the server is healthy and try again.", retryable=True) from None


def _parse_info(raw: Any) -> ServerInfo:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return ServerInfo(
        version=parse_version(fields.get("redis_version", "0.0.0").strip()),
        mode=fields.get("redis_mode", "standalone").strip(),
    )


def _reply_text(exc: BaseException) -> str:
    """The server's error reply, with the code redis-py strips from mapped errors put back."""
    code = getattr(exc, "status_code", None)
    text = str(exc)
    return f"{code} {text}" if code and not text.startswith(str(code)) else text


def _os_reason(exc: BaseException) -> str:
    """The OS-level reason of a connection error: redis-py's text holds only host, port and errno."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return str(exc) or type(exc).__name__


@contextmanager
def open_target(config: RedisConfig) -> Iterator[RedisTarget]:
    """Probe the server step by step, then yield the pooled client; always closes it."""
    try:
        server = probe(config)
    except ConnectStepError as exc:
        raise exc.as_traced() from None
    client = build_client(config)
    try:
        yield RedisTarget(client=client, server=server, where=f"{config.host}:{config.port}")
    finally:
        client.close()
