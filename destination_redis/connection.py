"""The one place that opens Redis connections for a config, and reads what the server can do.

Layers, in order: SSH tunnel (`tunnel.py`) -> TCP -> TLS (`tls.py`) -> AUTH -> SELECT. `open_target`
first builds the TLS context and opens the tunnel, then walks the connection steps one by one on a
probe connection (TCP connect, TLS handshake, AUTH, SELECT, INFO), so a failure names its step from
the exception type and the server's error code, never by guessing from message text. Then it hands
out a `RedisTarget`: the pooled client plus the server facts, read once per command, so writers
adapt to old servers without asking again. Leaving `open_target` closes the client and the tunnel,
whatever the exit (success, error, interrupt).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import redis
from redis import exceptions as rex
from redis._parsers.socket import SERVER_CLOSED_CONNECTION_ERROR

from destination_redis.config import RedisConfig, SshKeyTunnel, SshPasswordTunnel
from destination_redis.errors import ConnectStepError, step_failed
from destination_redis.tls import (
    TlsConnection,
    TlsHandshakeTimeout,
    TlsSetupError,
    build_context,
    find_cause,
    handshake_failure,
    ssl_cause,
)
from destination_redis.tunnel import open_tunnel

CONNECT_TIMEOUT_S = 10.0
SOCKET_TIMEOUT_S = 60.0
CLIENT_NAME = "airbyte-destination-redis"


@dataclass(frozen=True)
class ServerInfo:
    version: tuple[int, int, int]  # INFO's redis_version: the Redis whose commands the server has
    mode: str  # "standalone", "cluster" or "sentinel", as INFO server says
    # Valkey reports redis_version 7.2.4 (the Redis it forked from) and its own version apart.
    product: str = "Redis"
    product_version: str = ""

    @property
    def version_text(self) -> str:
        return ".".join(str(part) for part in self.version)

    @property
    def label(self) -> str:
        """For messages: "Redis 5.0.6", "Valkey 8.1.8 (Redis 7.2.4 compatible)"."""
        if self.product == "Redis" or not self.product_version:
            return f"Redis {self.version_text}"
        return f"{self.product} {self.product_version} (Redis {self.version_text} compatible)"

    @property
    def has_unlink(self) -> bool:
        return self.version >= (4, 0, 0)

    @property
    def hset_verb(self) -> bytes:
        """HSET with several fields came with Redis 4.0; HMSET does the same before it."""
        return b"HSET" if self.version >= (4, 0, 0) else b"HMSET"

    @property
    def has_acl(self) -> bool:
        return self.version >= (6, 0, 0)


@dataclass
class RedisTarget:
    """An open client to the configured Redis and what we know about the server."""

    client: redis.Redis
    server: ServerInfo
    where: str  # "host:port", for messages


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


@dataclass(frozen=True)
class Endpoint:
    """Where connections go: the server itself, or the local end of the SSH tunnel to it."""

    host: str  # where TCP connects
    port: int
    server_hostname: str  # the name TLS verifies: always the Redis host of the config
    ssl_context: ssl.SSLContext | None
    where: str  # for messages: "host:port", plus the bastion when tunnelled


def direct_endpoint(config: RedisConfig, ssl_context: ssl.SSLContext | None = None) -> Endpoint:
    return Endpoint(config.host, config.port, config.host, ssl_context, f"{config.host}:{config.port}")


def _connection_kwargs(
    config: RedisConfig, endpoint: Endpoint
) -> tuple[type[redis.Connection], dict[str, Any]]:
    """The connection class and what every connection needs; RESP2: servers before 6.0 lack HELLO."""
    kwargs: dict[str, Any] = {
        "host": endpoint.host,
        "port": endpoint.port,
        "protocol": 2,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_timeout": SOCKET_TIMEOUT_S,
    }
    if endpoint.ssl_context is None:
        return redis.Connection, kwargs
    kwargs.update(ssl_context=endpoint.ssl_context, server_hostname=endpoint.server_hostname)
    return TlsConnection, kwargs


def build_client(
    config: RedisConfig, endpoint: Endpoint | None = None, client_name: str | None = CLIENT_NAME
) -> redis.Redis:
    """A pooled client; closing it disconnects the pool (and so every connection it made)."""
    connection_class, kwargs = _connection_kwargs(config, endpoint or direct_endpoint(config))
    pool = redis.ConnectionPool(
        connection_class=connection_class,
        **kwargs,
        username=config.username,
        password=config.password.get_secret_value() if config.password else None,
        db=config.db,
        decode_responses=False,
        client_name=client_name,
    )
    return redis.Redis.from_pool(pool)


@dataclass(frozen=True)
class Probed:
    server: ServerInfo
    client_name: str | None  # None where the user may not run CLIENT SETNAME


def probe(config: RedisConfig, endpoint: Endpoint | None = None) -> Probed:
    """Walk TCP connect -> TLS -> AUTH -> SELECT -> INFO on one connection, naming the failing step."""
    endpoint = endpoint or direct_endpoint(config)
    where = endpoint.where
    connection_class, kwargs = _connection_kwargs(config, endpoint)
    # No CLIENT SETINFO on connect (driver_info None): `connect` is then only TCP and TLS.
    conn = connection_class(**kwargs, driver_info=None)
    try:
        try:
            conn.connect()
        except rex.TimeoutError as exc:
            if find_cause(exc, TlsHandshakeTimeout):
                raise step_failed(
                    "TLS handshake", where,
                    f"the server accepted the TCP connection but did not answer the TLS handshake "
                    f"within {CONNECT_TIMEOUT_S:.0f}s",
                    "Check that port is the server's TLS port (tls-port), or turn SSL off for a "
                    "server without TLS.",
                    retryable=True,
                ) from None
            raise step_failed(
                "TCP connect", where, f"no answer within {CONNECT_TIMEOUT_S:.0f}s",
                "Check the host and port, and that a firewall lets this machine reach the server.",
                retryable=True,
            ) from None
        except rex.ConnectionError as exc:
            tls_error = ssl_cause(exc)
            if tls_error is not None:
                raise handshake_failure(tls_error, config, where) from None
            raise step_failed(
                "TCP connect", where, _os_reason(exc),
                "Check the host and port, and that the server is running and reachable from here.",
                retryable=True,
            ) from None
        _auth(conn, config, where)
        if config.db:
            _step(conn, config, where, "SELECT", ("SELECT", config.db),
                  f"Choose a database index the server has (its `databases` setting; "
                  f"Redis Cluster has only database 0); {config.db} was asked for.")
        raw = _step(conn, config, where, "INFO", ("INFO", "server"), "The server must answer INFO.")
        return Probed(server=_parse_info(raw), client_name=_client_name(conn, config, where))
    finally:
        conn.disconnect()


def _client_name(conn: redis.Connection, config: RedisConfig, where: str) -> str | None:
    """CLIENT SETNAME labels our connections in CLIENT LIST; a user without the right does without."""
    try:
        _step(conn, config, where, "CLIENT SETNAME", ("CLIENT", "SETNAME", CLIENT_NAME), "")
    except ConnectStepError as exc:
        if exc.retryable:
            raise
        return None
    return CLIENT_NAME


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
        raise _no_acl_users(conn, config, where) from None
    except (rex.AuthenticationError, rex.ResponseError) as exc:
        reply = _reply_text(exc)
        if config.username:
            advice = (
                f"Check the username ('{config.username}') and password, and that the ACL user is enabled."
            )
        elif _answers_without_auth(conn):
            advice = "The server has no password: remove the password (and username) from the config."
        else:
            advice = "Check the password (the server's requirepass), or set the username of an ACL user."
        raise step_failed("AUTH", where, f"the server answered '{reply}'", advice) from None
    except rex.ConnectionError as exc:
        raise _lost(exc, config, where, "AUTH") from None


def _answers_without_auth(conn: redis.Connection) -> bool:
    """Whether the server serves this unauthenticated connection (PING answered, no NOAUTH):
    then the failed AUTH was a password the server does not have, not a wrong one."""
    try:
        conn.send_command("PING", check_health=False)
        conn.read_response()
    except rex.RedisError:
        return False
    return True


def _no_acl_users(conn: redis.Connection, config: RedisConfig, where: str) -> ConnectStepError:
    """A username was set, and the server (before Redis 6.0) knows only `AUTH <password>`.

    The message names the server's version: INFO, after AUTH with the password alone where the
    server requires one (the same secret, to the same server); "older than 6.0" if that fails too.
    """
    server = "The server (older than Redis 6.0)"
    try:
        try:
            conn.send_command("INFO", "server", check_health=False)
            raw = conn.read_response()
        except (rex.ResponseError, rex.AuthenticationError):  # NOAUTH
            password = config.password.get_secret_value() if config.password else ""
            conn.send_command("AUTH", password, check_health=False)
            conn.read_response()
            conn.send_command("INFO", "server", check_health=False)
            raw = conn.read_response()
        server = f"Redis {_parse_info(raw).version_text}"
    except rex.RedisError:
        pass
    return ConnectStepError(
        f"AUTH failed at {where}: {server} has no ACL users (they came with Redis 6.0), so the "
        f"username '{config.username}' cannot be used. Remove the username and authenticate with "
        f"the password alone (the server's requirepass), or use Redis 6.0 or later.",
        False,
    )


def _step(conn: redis.Connection, config: RedisConfig, where: str, step: str, command: tuple[Any, ...],
          advice: str) -> Any:
    try:
        conn.send_command(*command, check_health=False)
        return conn.read_response()
    except rex.AuthenticationError:
        # redis-py maps NOAUTH to AuthenticationError, a ConnectionError: an answer, not a loss.
        raise step_failed("AUTH", where, "the server requires a password, and none is set",
                    "Set the password (and the username of an ACL user) in the config.") from None
    except rex.ResponseError as exc:
        if error_code(exc) == "NOPERM":
            raise step_failed(step, where, f"the ACL user may not run {step} ({_reply_text(exc)})",
                        f"Grant the user this command (ACL SETUSER {config.username or 'default'} "
                        f"+{step.lower().replace(' ', '|')}), or use another user.") from None
        raise step_failed(step, where, f"the server answered '{_reply_text(exc)}'", advice) from None
    except rex.ConnectionError as exc:
        raise _lost(exc, config, where, step) from None


def _lost(exc: rex.ConnectionError, config: RedisConfig, where: str, step: str) -> ConnectStepError:
    """A connection lost right after connecting: TLS refused late (TLS 1.3), or plain vs TLS port."""
    tls_error = ssl_cause(exc)
    if tls_error is not None and not isinstance(tls_error, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return handshake_failure(tls_error, config, where)
    closed = (
        tls_error is not None
        or str(exc) == SERVER_CLOSED_CONNECTION_ERROR
        or find_cause(exc, ConnectionResetError) is not None
    )
    if config.tls is not None and closed:
        # TLS 1.3 ends the handshake on our side before the server has checked our certificate:
        # a server that requires one (tls-auth-clients yes) and rejects ours, or misses it, closes
        # the connection at our first command.
        tls = config.tls
        if tls.client_certificate:
            return step_failed("TLS handshake", where,
                         "the server closed the connection right after the TLS handshake: it refused "
                         "the client certificate",
                         "Use a client certificate signed by a CA the server trusts (its tls-ca-cert-file), "
                         "and check that it has not expired.")
        return step_failed("TLS handshake", where,
                     "the server closed the connection right after the TLS handshake: it requires a "
                     "client certificate (tls-auth-clients yes), and none is set",
                     "Set client_certificate and client_key (mutual TLS).")
    advice = "Check that the server is healthy and try again."
    if config.tls is None:
        advice = "If this port accepts only TLS connections, turn SSL on; else check the server's health."
    return step_failed(step, where, f"the connection was lost ({_os_reason(exc)})", advice, retryable=True)


def _parse_info(raw: Any) -> ServerInfo:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    valkey = fields.get("server_name", "").strip() == "valkey"  # Redis has no server_name
    return ServerInfo(
        version=parse_version(fields.get("redis_version", "0.0.0").strip()),
        # Valkey 8 says server_mode where Redis says redis_mode.
        mode=(fields.get("redis_mode") or fields.get("server_mode") or "standalone").strip(),
        product="Valkey" if valkey else "Redis",
        product_version=fields.get("valkey_version", "").strip() if valkey else "",
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


def open_endpoint(config: RedisConfig, stack: ExitStack) -> Endpoint:
    """TLS context first (a bad PEM fails before any network), then the tunnel, kept open by `stack`."""
    ssl_context = None
    if config.tls is not None:
        try:
            ssl_context = build_context(config.tls)
        except TlsSetupError as exc:
            raise ConnectStepError(f"TLS setup failed: {exc.message}", False) from None
    method = config.tunnel_method
    if not isinstance(method, SshKeyTunnel | SshPasswordTunnel):
        return direct_endpoint(config, ssl_context)
    tunnel = stack.enter_context(open_tunnel(method, config.host, config.port, CONNECT_TIMEOUT_S))
    return Endpoint(
        host=tunnel.local_host,
        port=tunnel.local_port,
        server_hostname=config.host,
        ssl_context=ssl_context,
        where=f"{config.host}:{config.port} via SSH bastion {tunnel.where}",
    )


@contextmanager
def open_target(config: RedisConfig) -> Iterator[RedisTarget]:
    """Open the tunnel, probe the server step by step, then yield the pooled client.

    The client and the tunnel are closed when the block ends, however it ends.
    """
    with ExitStack() as stack:
        try:
            endpoint = open_endpoint(config, stack)
            probed = probe(config, endpoint)
        except ConnectStepError as exc:
            raise exc.as_traced() from None
        client = build_client(config, endpoint, probed.client_name)
        stack.callback(client.close)
        yield RedisTarget(client=client, server=probed.server, where=endpoint.where)
