"""Where connections to one server go, with what credentials, and the pool that makes them."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import redis
from pydantic import SecretStr

from destination_redis.tls import TlsConnection

CONNECT_TIMEOUT_S = 10.0
SOCKET_TIMEOUT_S = 60.0
CLIENT_NAME = "airbyte-destination-redis"


@dataclass(frozen=True)
class Login:
    """Who we are on a server: the data nodes' user, or the Sentinels' own."""

    username: str | None
    password: SecretStr | None
    db: int = 0
    # The config fields these come from, for advice in messages.
    username_field: str = "username"
    password_field: str = "password"  # noqa: S105  # a field name


@dataclass(frozen=True)
class Endpoint:
    """Where connections go: the server itself, or the local end of the SSH tunnel to it."""

    host: str  # where TCP connects
    port: int
    server_hostname: str  # the name TLS verifies: the server's name as configured or announced
    ssl_context: ssl.SSLContext | None
    where: str  # for messages: "host:port", plus the bastion when tunnelled


def connection_kwargs(endpoint: Endpoint) -> tuple[type[redis.Connection], dict[str, Any]]:
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


def build_pool(
    endpoint: Endpoint, login: Login, client_name: str | None = CLIENT_NAME,
    first: redis.Connection | None = None,
) -> redis.ConnectionPool:
    """A pool of connections to one server; disconnecting it closes every connection it made.

    `first`: the probe's connection (probe.py), already through AUTH, SELECT and CLIENT SETNAME:
    handed out first, it saves a connect, a TLS handshake and their round trips. It is given the
    pool's login, so that a reconnect after a loss walks the same steps as the pool's own.
    """
    connection_class, kwargs = connection_kwargs(endpoint)
    kwargs.update(
        username=login.username,
        password=login.password.get_secret_value() if login.password else None,
        db=login.db,
        decode_responses=False,
        client_name=client_name,
        driver_info=None,  # no CLIENT SETINFO on connect: servers before 7.2 answer it with an error
    )
    if first is not None:
        for name in _LOGIN_ATTRIBUTES:  # the attributes redis-py's on_connect reads
            setattr(first, name, kwargs[name])
    return _Pool(first, connection_class=connection_class, **kwargs)


_LOGIN_ATTRIBUTES = ("username", "password", "db", "client_name", "driver_info")


class _Pool(redis.ConnectionPool):
    """redis-py's pool, whose first connection is one made already (see build_pool)."""

    def __init__(self, first: redis.Connection | None, **kwargs: Any) -> None:
        self._first = first
        super().__init__(**kwargs)

    def make_connection(self) -> Any:
        first, self._first = self._first, None
        if first is None:
            return super().make_connection()
        self._created_connections += 1  # as redis-py counts the connections it makes
        return first

    def disconnect(self, inuse_connections: bool = True) -> None:
        first, self._first = self._first, None
        if first is not None:  # never handed out
            first.disconnect()
        super().disconnect(inuse_connections)
