"""The steps of reaching one server on a probe connection, each failure naming its step.

TCP connect -> TLS handshake -> AUTH -> SELECT -> INFO (-> PING, CLIENT SETNAME where allowed).
After the handshake the commands go in one write, one round trip over a far link: no command
depends on an earlier answer, and the answers are read in order, so a failure still names its
step. It is named from the exception type and the server's error code, never by guessing from
message text, and says what to change. The same walk serves data nodes and Sentinels (with their
own login). The connection, ready, becomes the first of the node's pool (endpoint.build_pool).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from redis import exceptions as rex

from destination_redis.config import SslVerifyFull
from destination_redis.connection.endpoint import (
    CLIENT_NAME,
    CONNECT_TIMEOUT_S,
    Endpoint,
    Login,
    connection_kwargs,
)
from destination_redis.connection.failures import lost, os_reason, reply_text
from destination_redis.connection.server import ServerInfo, error_code, parse_info
from destination_redis.errors import ConnectStepError, step_failed
from destination_redis.tls import TlsHandshakeTimeout, find_cause, handshake_failure, ssl_cause


@dataclass(frozen=True)
class Probed:
    server: ServerInfo
    client_name: str | None  # None where the user may not run CLIENT SETNAME
    conn: redis.Connection  # the probe connection, logged in, named, on its database
    ping_error: str | None = None  # PING's error reply (e.g. LOADING), for check; None: PONG


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
    Returns the connection open (the caller's to close, or to give to the pool); closes it when
    a step fails.
    """
    connection_class, kwargs = connection_kwargs(endpoint)
    # No CLIENT SETINFO on connect (driver_info None): `connect` is then only TCP and TLS.
    conn = connection_class(**kwargs, driver_info=None)
    try:
        _connect(conn, endpoint, tls)
        return _handshake(_Session(conn, login, tls, endpoint.where, endpoint.server_hostname))
    except BaseException:
        conn.disconnect()
        raise


def _handshake(session: _Session) -> Probed:
    """AUTH, SELECT, INFO, PING, CLIENT SETNAME in one write; their answers read step by step.

    Sent after a failing step too, they change nothing: a SELECT or INFO after a refused AUTH is
    refused or harmless (and the connection is closed), a PING after it tells a password the
    server does not have from a wrong one.
    """
    login = session.login
    steps: list[tuple[str, tuple[Any, ...]]] = []
    if login.password:
        secret = login.password.get_secret_value()
        steps.append(("AUTH", ("AUTH", login.username, secret) if login.username else ("AUTH", secret)))
    elif login.username:
        raise ConnectStepError(
            f"AUTH not attempted at {session.where}: a {login.username_field} is set without a "
            f"{login.password_field}. Set the password of user '{login.username}'.",
            False,
        )
    if login.db:
        steps.append(("SELECT", ("SELECT", login.db)))
    steps += [("INFO", ("INFO", "server")), ("PING", ("PING",)),
              ("CLIENT SETNAME", ("CLIENT", "SETNAME", CLIENT_NAME))]
    conn = session.conn
    try:
        conn.send_packed_command(conn.pack_commands([command for _, command in steps]), check_health=False)
    except rex.ConnectionError as exc:
        raise _lost(exc, session, steps[0][0]) from None
    if login.password:
        _auth(session, [step for step, _ in steps[1:]])
    if login.db:
        _reply(session, "SELECT",
               f"Choose a database index the server has (its `databases` setting; "
               f"Redis Cluster has only database 0); {login.db} was asked for.")
    raw = _reply(session, "INFO", "The server must answer INFO.")
    ping_error = _ping(session)
    return Probed(parse_info(raw), _client_name(session), conn, ping_error)


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
        _reply(session, "CLIENT SETNAME", "")
    except ConnectStepError as exc:
        if exc.retryable:
            raise
        return None
    return CLIENT_NAME


def _ping(session: _Session) -> str | None:
    """PING's error reply, if any: syncs never PING (a user may lack it), check reports others."""
    try:
        _read(session.conn)
    except rex.ResponseError as exc:
        return reply_text(exc)
    except rex.ConnectionError as exc:
        if not _is_reply(exc):  # LOADING and NOAUTH are answers redis-py maps to ConnectionError
            raise _lost(exc, session, "PING") from None
        return reply_text(exc)
    return None


def _auth(session: _Session, behind: list[str]) -> None:
    """AUTH's answer; `behind`: the steps whose answers follow it (sent in the same write)."""
    login, where, conn = session.login, session.where, session.conn
    try:
        _read(conn)
    except rex.AuthenticationWrongNumberOfArgsError:
        _answers_without_auth(conn, behind)
        raise _no_acl_users(session) from None
    except (rex.AuthenticationError, rex.ResponseError) as exc:
        reply = reply_text(exc)
        if login.username:
            advice = (
                f"Check the {login.username_field} ('{login.username}') and {login.password_field}, "
                f"and that the ACL user is enabled."
            )
        elif _answers_without_auth(conn, behind):
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


def _answers_without_auth(conn: redis.Connection, behind: list[str]) -> bool:
    """Reads the answers behind a refused AUTH (SELECT?, INFO, PING, CLIENT SETNAME); whether the
    server served this unauthenticated connection (PING answered, no NOAUTH): then the failed
    AUTH was a password the server does not have, not a wrong one."""
    answered = False
    for step in behind:
        try:
            _read(conn)
        except rex.RedisError as exc:
            if not _is_reply(exc):
                return False  # lost: the answers behind are too
            continue
        answered = answered or step == "PING"
    return answered


def _read(conn: redis.Connection) -> Any:
    """The next answer; an error answer raises as redis-py maps it, keeping the connection (its
    later answers are still read)."""
    return conn.read_response(disconnect_on_error=False)


def _is_reply(exc: BaseException) -> bool:
    """Whether a redis-py error is the server's error answer (its code kept), not a lost connection."""
    return getattr(exc, "status_code", None) is not None or isinstance(exc, rex.ResponseError)


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


def _lost(exc: rex.ConnectionError, session: _Session, step: str) -> ConnectStepError:
    return lost(exc, step, session.where, session.tls, session.hostname)


def _reply(session: _Session, step: str, advice: str) -> Any:
    """The answer to `step`; an error answer or a lost connection fails naming the step."""
    conn, where = session.conn, session.where
    try:
        return _read(conn)
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
