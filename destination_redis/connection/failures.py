"""Why a connection was lost right after connecting, as a message naming the step and what to
change (often TLS refused late, or a plain connection to a TLS port); the server's error answers
quoted with their code; the OS reason of a failed connect."""

from __future__ import annotations

import ssl

from redis import exceptions as rex
from redis._parsers.socket import SERVER_CLOSED_CONNECTION_ERROR

from destination_redis.config import SslVerifyFull
from destination_redis.errors import ConnectStepError, step_failed
from destination_redis.tls import find_cause, handshake_failure, ssl_cause


def lost(
    exc: rex.ConnectionError, step: str, where: str, tls: SslVerifyFull | None, hostname: str
) -> ConnectStepError:
    """A connection lost right after connecting, at `step`: TLS refused late (TLS 1.3), or plain
    vs TLS port. `hostname`: the name TLS verified."""
    tls_error = ssl_cause(exc)
    if tls_error is not None and not isinstance(tls_error, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return handshake_failure(tls_error, tls, where, hostname)
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
