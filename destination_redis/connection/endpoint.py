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
    endpoint: Endpoint, login: Login, client_name: str | None = CLIENT_NAME
) -> redis.ConnectionPool:
    """A pool of connections to one server; disconnecting it closes every connection it made."""
    connection_class, kwargs = connection_kwargs(endpoint)
    return redis.ConnectionPool(
        connection_class=connection_class,
        **kwargs,
        username=login.username,
        password=login.password.get_secret_value() if login.password else None,
        db=login.db,
        decode_responses=False,
        client_name=client_name,
        driver_info=None,  # no CLIENT SETINFO on connect: servers before 7.2 answer it with an error
    )
