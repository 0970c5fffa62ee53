"""The steps of reaching one server, walked one by one on a probe connection, each named.

TCP connect -> TLS handshake -> AUTH -> SELECT -> INFO (-> CLIENT SETNAME where allowed). A
failure names its step from the exception type and the server's error code, never by guessing
from message text, and says what to change. The same walk serves data nodes and Sentinels (with
their own login).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import redis
from redis import exceptions as rex
from redis._parsers.socket import SERVER_CLOSED_CONNECTION_ERROR

from destination_redis.config import SslVerifyFull
from destination_redis.connection.endpoint import (
    CLIENT_NAME,
    CONNECT_TIMEOUT_S,
    Endpoint,
    Login,
    connection_kwargs,
)
from destination_redis.connection.server import ServerInfo, error_code, parse_info
from destination_redis.errors import ConnectStepError, step_failed
from destination_redis.tls import TlsHandshakeTimeout, find_cause, handshake_failure, ssl_cause


@dataclass(frozen=True)
class Probed:
    server: ServerInfo
    client_name: str | None  # None where the user may not run CLIENT SETNAME


@dataclass(frozen=True)
class _Session:
    """One probe connection and what its messages need."""

    conn: redis.Connection
    login: Login
    tls: SslVerifyFull | None
    where: str
    hostname: str  # the name TLS verified


def probe(endpoint: Endpoint, login: Login, tls: SslVerifyFull | None) -> Probed:
    """Walk TCP connect -> TLS -> AUTH -> SELECT -> INFO on one connection, naming the failing step.

    `tls` is the TLS configuration in force (for advice when the handshake fails), or None.
    """
    where = endpoint.where
    connection_class, kwargs = connection_kwargs(endpoint)
    # No CLIENT SETINFO on connect (driver_info None): `connect` is then only TCP and TLS.
    conn = connection_class(**kwargs, driver_info=None)
    try:
        _connect(conn, endpoint, tls)
        session = _Session(conn, login, tls, where, endpoint.server_hostname)
        _auth(session)
        if login.db:
            _step(session, "SELECT", ("SELECT", login.db),
                  f"Choose a database index the server has (its `databases` setting; "
                  f"Redis Cluster has only database 0); {login.db} was asked for.")
        raw = _step(session, "INFO", ("INFO", "server"), "The server must answer INFO.")
        return Probed(server=parse_info(raw), client_name=_client_name(session))
    finally:
        conn.disconnect()


def _connect(conn: redis.Connection, endpoint: Endpoint, tls: SslVerifyFull | None) -> None:
    where = endpoint.where
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
            raise handshake_failure(tls_error, tls, where, endpoint.server_hostname) from None
        raise step_failed(
            "TCP connect", where, os_reason(exc),
            "Check the host and port, and that the server is running and reachable from here.",
            retryable=True,
        ) from None


def _client_name(session: _Session) -> str | None:
    """CLIENT SETNAME labels our connections in CLIENT LIST; a user without the right does without."""
    try:
        _step(session, "CLIENT SETNAME", ("CLIENT", "SETNAME", CLIENT_NAME), "")
    except ConnectStepError as exc:
        if exc.retryable:
            raise
        return None
    return CLIENT_NAME


def _auth(session: _Session) -> None:
    login, where, conn = session.login, session.where, session.conn
    if not login.password:
        if login.username:
            raise ConnectStepError(
                f"AUTH not attempted at {where}: a {login.username_field} is set without a "
                f"{login.password_field}. Set the password of user '{login.username}'.",
                False,
            )
        return
    args: tuple[str, ...] = (login.password.get_secret_value(),)
    if login.username:
        args = (login.username, *args)
    try:
        conn.send_command("AUTH", *args, check_health=False)
        conn.read_response()
    except rex.AuthenticationWrongNumberOfArgsError:
        raise _no_acl_users(session) from None
    except (rex.AuthenticationError, rex.ResponseError) as exc:
        reply = reply_text(exc)
        if login.username:
            advice = (
                f"Check the {login.username_field} ('{login.username}') and {login.password_field}, "
                f"and that the ACL user is enabled."
            )
        elif _answers_without_auth(conn):
            advice = (
                f"The server has no password: remove the {login.password_field} "
                f"(and {login.username_field}) from the config."
            )
        else:
            advice = (
                f"Check the {login.password_field} (the server's requirepass), or set the "
                f"{login.username_field} of an ACL user."
            )
        raise step_failed("AUTH", where, f"the server answered '{reply}'", advice) from None
    except rex.ConnectionError as exc:
        raise _lost(exc, session, "AUTH") from None


def _answers_without_auth(conn: redis.Connection) -> bool:
    """Whether the server serves this unauthenticated connection (PING answered, no NOAUTH):
    then the failed AUTH was a password the server does not have, not a wrong one."""
    try:
        conn.send_command("PING", check_health=False)
        conn.read_response()
    except rex.RedisError:
        return False
    return True


def _no_acl_users(session: _Session) -> ConnectStepError:
    """A username was set, and the server (before Redis 6.0) knows only `AUTH <password>`.

    The message names the server's version: INFO, after AUTH with the password alone where the
    server requires one (the same secret, to the same server); "older than 6.0" if that fails too.
    """
    conn, login = session.conn, session.login
    server = "The server (older than Redis 6.0)"
    try:
        try:
            conn.send_command("INFO", "server", check_health=False)
            raw = conn.read_response()
        except (rex.ResponseError, rex.AuthenticationError):  # NOAUTH
            password = login.password.get_secret_value() if login.password else ""
            conn.send_command("AUTH", password, check_health=False)
            conn.read_response()
            conn.send_command("INFO", "server", check_health=False)
            raw = conn.read_response()
        server = f"Redis {parse_info(raw).version_text}"
    except rex.RedisError:
        pass
    return ConnectStepError(
        f"AUTH failed at {session.where}: {server} has no ACL users (they came with Redis 6.0), so "
        f"the {login.username_field} '{login.username}' cannot be used. Remove the "
        f"{login.username_field} and authenticate with the {login.password_field} alone (the "
        f"server's requirepass), or use Redis 6.0 or later.",
        False,
    )


def _step(session: _Session, step: str, command: tuple[Any, ...], advice: str) -> Any:
    conn, where = session.conn, session.where
    try:
        conn.send_command(*command, check_health=False)
        return conn.read_response()
    except rex.AuthenticationError:
        # redis-py maps NOAUTH to AuthenticationError, a ConnectionError: an answer, not a loss.
        raise step_failed(
            "AUTH", where, "the server requires a password, and none is set",
            f"Set the {session.login.password_field} (and the {session.login.username_field} of "
            f"an ACL user) in the config.",
        ) from None
    except rex.ResponseError as exc:
        if error_code(exc) == "NOPERM":
            user = session.login.username or "default"
            raise step_failed(step, where, f"the ACL user may not run {step} ({reply_text(exc)})",
                              f"Grant the user this command (ACL SETUSER {user} "
                              f"+{step.lower().replace(' ', '|')}), or use another user.") from None
        raise step_failed(step, where, f"the server answered '{reply_text(exc)}'", advice) from None
    except rex.ConnectionError as exc:
        raise _lost(exc, session, step) from None


def _lost(exc: rex.ConnectionError, session: _Session, step: str) -> ConnectStepError:
    """A connection lost right after connecting: TLS refused late (TLS 1.3), or plain vs TLS port."""
    where, tls = session.where, session.tls
    tls_error = ssl_cause(exc)
    if tls_error is not None and not isinstance(tls_error, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return handshake_failure(tls_error, tls, where, session.hostname)
    closed = (
        tls_error is not None
        or str(exc) == SERVER_CLOSED_CONNECTION_ERROR
        or find_cause(exc, ConnectionResetError) is not None
    )
    if tls is not None and closed:
        # TLS 1.3 ends the handshake on our side before the server has checked our certificate:
        # a server that requires one (tls-auth-clients yes) and rejects ours, or misses it, closes
        # the connection at our first command.
        if tls.client_certificate:
            return step_failed("TLS handshake", where,
                               "the server closed the connection right after the TLS handshake: it "
                               "refused the client certificate",
                               "Use a client certificate signed by a CA the server trusts (its "
                               "tls-ca-cert-file), and check that it has not expired.")
        return step_failed("TLS handshake", where,
                           "the server closed the connection right after the TLS handshake: it "
                           "requires a client certificate (tls-auth-clients yes), and none is set",
                           "Set client_certificate and client_key (mutual TLS).")
    advice = "Check that the server is healthy and try again."
    if tls is None:
        advice = "If this port accepts only TLS connections, turn SSL on; else check the server's health."
    return step_failed(step, where, f"the connection was lost ({os_reason(exc)})", advice, retryable=True)


def reply_text(exc: BaseException) -> str:
    """The server's error reply, with the code redis-py strips from mapped errors put back."""
    code = getattr(exc, "status_code", None)
    text = str(exc)
    return f"{code} {text}" if code and not text.startswith(str(code)) else text


def os_reason(exc: BaseException) -> str:
    """The OS-level reason of a connection error: redis-py's text holds only host, port and errno."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return str(exc) or type(exc).__name__
