"""TLS for Redis connections: one SSL context per command, built from the config's PEM texts.

Why not redis-py's own `SSLConnection`: it builds a new context for every connection from file
paths, so the client certificate and key would have to stay on disk for the whole sync (every
reconnect reads them again). Here the context is built once; Python's `ssl` can only load a client
certificate and key from files, so they are written to a private directory (0700, files 0600) just
for `load_cert_chain` and removed right after, on every exit path. The CA goes in from memory.

`TlsConnection` verifies the certificate against `server_hostname`, which is always the Redis host
of the config, even when the TCP connection goes to the local end of an SSH tunnel.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import redis

from destination_redis.config import SslVerifyFull
from destination_redis.errors import ConnectStepError, step_failed

PEM_DIR_PREFIX = "destination-redis-tls-"

E = TypeVar("E", bound=BaseException)


class TlsSetupError(Exception):
    """The TLS settings cannot be used; `message` names the field to fix (never its content)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def build_context(tls: SslVerifyFull) -> ssl.SSLContext:
    """A client context for verify-full: certificate chain and host name checked, TLS 1.2+."""
    ca = _pem(tls.ca_certificate)
    try:
        # With no CA given, create_default_context loads the system trust store.
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca or None)
    except (ssl.SSLError, ValueError):
        raise TlsSetupError(
            "ca_certificate is not a PEM certificate. Paste the CA certificate that signed the "
            "server's certificate, from -----BEGIN CERTIFICATE----- to -----END CERTIFICATE-----."
        ) from None
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    context.minimum_version = ssl.TLSVersion.TLSv1_2

    certificate, key = _pem(tls.client_certificate), _pem(tls.client_key)
    if bool(certificate) != bool(key):
        missing = "client_key" if certificate else "client_certificate"
        raise TlsSetupError(
            f"Mutual TLS needs both client_certificate and client_key; {missing} is empty. "
            f"Set both, or neither when the server does not ask for a client certificate."
        )
    if certificate and key:
        password = tls.client_key_password.get_secret_value() if tls.client_key_password else None
        _load_client_certificate(context, certificate, key, password or None)
    return context


def _pem(secret: Any) -> str:
    """The PEM text of a secret field, tidied: pasted text often has \\r\\n or stray spaces."""
    if secret is None:
        return ""
    text = str(secret.get_secret_value()).replace("\r\n", "\n").strip()
    return text + "\n" if text else ""


def _load_client_certificate(
    context: ssl.SSLContext, certificate: str, key: str, password: str | None
) -> None:
    # Check the key first with cryptography: it tells "encrypted", "wrong password" and "not a
    # key" apart, and never falls back to prompting on a terminal as OpenSSL would. Imported
    # here: only mutual TLS needs it, and it is slow to import (start-up).
    from cryptography.hazmat.primitives import serialization

    try:
        serialization.load_pem_private_key(key.encode(), password.encode() if password else None)
    except TypeError:
        if password is None:
            raise TlsSetupError("client_key is encrypted. Set client_key_password to its password.") from None
        password = None  # a password for a key that is not encrypted: not needed, ignore it
    except ValueError:
        if password is not None and "ENCRYPTED" in key:
            raise TlsSetupError(
                "client_key_password does not decrypt client_key. Check the password."
            ) from None
        raise TlsSetupError(
            "client_key is not a PEM private key (PKCS#1, PKCS#8 or SEC1). Paste the key from "
            "its -----BEGIN ...PRIVATE KEY----- line to its -----END ...PRIVATE KEY----- line."
        ) from None
    with private_pem_files(certificate, key) as (cert_file, key_file):
        try:
            context.load_cert_chain(cert_file, key_file, password=password or "")
        except ssl.SSLError as exc:
            if exc.reason == "KEY_VALUES_MISMATCH":
                raise TlsSetupError(
                    "client_key is not the private key of client_certificate. Set the matching pair."
                ) from None
            raise TlsSetupError(
                f"client_certificate could not be loaded ({exc.reason or 'not a PEM certificate'}). "
                f"Paste the certificate from -----BEGIN CERTIFICATE----- to -----END CERTIFICATE-----."
            ) from None


@contextmanager
def private_pem_files(*texts: str) -> Iterator[list[str]]:
    """Write each text to its own file in a fresh private directory; remove it all on exit.

    mkdtemp makes the directory 0700; files are created 0600 with O_EXCL, so no other user can
    read them at any moment, and nothing outlives the block (exceptions and interrupts included).
    """
    try:
        directory = tempfile.mkdtemp(prefix=PEM_DIR_PREFIX)
    except OSError as exc:  # e.g. a read-only root file system without a writable /tmp
        raise TlsSetupError(
            f"client_certificate and client_key must be written to a private temporary file for "
            f"an instant, and no temporary directory is writable ({exc.strerror or exc}; TMPDIR: "
            f"{os.environ.get('TMPDIR') or 'unset, so /tmp'}). Give the container a writable /tmp "
            f"(e.g. a tmpfs), or set TMPDIR to a writable directory."
        ) from None
    try:
        paths = []
        for index, text in enumerate(texts):
            path = os.path.join(directory, f"{index}.pem")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            paths.append(path)
        yield paths
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class TlsConnection(redis.Connection):
    """A redis-py connection that speaks TLS with a prepared context.

    It connects TCP to `host:port` (the server, or the local end of an SSH tunnel) and verifies the
    certificate for `server_hostname` (always the Redis host from the config).
    """

    def __init__(self, *, ssl_context: ssl.SSLContext, server_hostname: str, **kwargs: Any) -> None:
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]

    def _connect(self) -> socket.socket:
        sock: socket.socket = super()._connect()  # type: ignore[no-untyped-call]
        try:
            # The handshake is part of connecting: the connect timeout applies, not the (long)
            # socket timeout that redis-py has set on the connected socket.
            sock.settimeout(self.socket_connect_timeout)
            try:
                tls_sock = self.ssl_context.wrap_socket(sock, server_hostname=self.server_hostname)
            except TimeoutError as exc:
                raise TlsHandshakeTimeout("no answer to the TLS handshake") from exc
            tls_sock.settimeout(self.socket_timeout)
            return tls_sock
        except BaseException:
            sock.close()
            raise


class TlsHandshakeTimeout(TimeoutError):
    """The TCP connection was made, but the TLS handshake got no answer (e.g. a plain-text port)."""


def find_cause(exc: BaseException | None, kind: type[E]) -> E | None:
    """The exception of `kind` behind a redis-py error, if any: redis-py wraps socket errors."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, kind):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def ssl_cause(exc: BaseException | None) -> ssl.SSLError | None:
    return find_cause(exc, ssl.SSLError)


# OpenSSL verify codes (X509_V_ERR_*) of a server certificate that fails verification.
_EXPIRED, _NOT_YET_VALID = 10, 9
_NAME_MISMATCH = {62, 64}  # host name, IP address
_UNTRUSTED = {2, 18, 19, 20, 21}  # unknown issuer, self-signed, self-signed in chain, ...

# Alerts by which the server refuses our client certificate (or its absence).
_CLIENT_CERT_REFUSED = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    "TLSV1_ALERT_UNKNOWN_CA",
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED",
    "SSLV3_ALERT_HANDSHAKE_FAILURE",
    "TLSV1_ALERT_ACCESS_DENIED",
    "TLSV1_ALERT_DECRYPT_ERROR",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
}
# What a client sees when the port does not speak TLS at all.
_NOT_TLS = {
    "WRONG_VERSION_NUMBER",
    "UNEXPECTED_EOF_WHILE_READING",
    "RECORD_LAYER_FAILURE",
    "PACKET_LENGTH_TOO_LONG",
    "HTTP_REQUEST",
    "UNKNOWN_PROTOCOL",
    "EOF",
}


def handshake_failure(
    exc: ssl.SSLError, tls: SslVerifyFull | None, where: str, hostname: str
) -> ConnectStepError:
    """What a failed TLS handshake means for the user, from OpenSSL's verify code or alert.

    `hostname` is the name the certificate was checked against: the configured host, or the
    name or address a cluster node or Sentinel is announced by."""
    step = "TLS handshake"
    ca_given = bool(tls and tls.ca_certificate and tls.ca_certificate.get_secret_value().strip())
    if isinstance(exc, ssl.SSLCertVerificationError):
        code, text = exc.verify_code, str(exc.verify_message)
        if code == _EXPIRED:
            return step_failed(
                step,
                where,
                f"the server's certificate has expired ({text})",
                "Renew the server's certificate (tls-cert-file).",
            )
        if code == _NOT_YET_VALID:
            return step_failed(
                step,
                where,
                f"the server's certificate is not valid yet ({text})",
                "Check the clocks of this machine and the server, or the certificate's dates.",
            )
        if code in _NAME_MISMATCH:
            return step_failed(
                step,
                where,
                f"the server's certificate does not name '{hostname}' ({text})",
                "Set host to a name the certificate lists (its subject alternative names), "
                "or reissue the certificate for this host.",
            )
        if code in _UNTRUSTED:
            source = "ca_certificate" if ca_given else "the system trust store (no ca_certificate is set)"
            return step_failed(
                step,
                where,
                f"the server's certificate is not signed by a CA trusted by {source} ({text})",
                "Set ca_certificate to the PEM of the CA that signed the server's certificate.",
            )
        return step_failed(
            step,
            where,
            f"the server's certificate was rejected ({text})",
            "Check the server's certificate and ca_certificate.",
        )
    reason = exc.reason or type(exc).__name__
    has_client_cert = bool(tls and tls.client_certificate)
    if reason in _CLIENT_CERT_REFUSED:
        if not has_client_cert:
            return step_failed(
                step,
                where,
                f"the server requires a client certificate, and none is set ({reason})",
                "Set client_certificate and client_key (mutual TLS).",
            )
        return step_failed(
            step,
            where,
            f"the server refused the client certificate ({reason})",
            "Use a client certificate signed by a CA the server trusts (its tls-ca-cert-file), "
            "and check that it has not expired.",
        )
    if reason in _NOT_TLS or isinstance(exc, ssl.SSLEOFError):
        return step_failed(
            step,
            where,
            f"the server did not answer with TLS ({reason})",
            "Check that port is the server's TLS port (tls-port), or turn SSL off for a server without TLS.",
        )
    return step_failed(
        step, where, f"TLS failed ({reason})", "Check the server's TLS settings and the SSL settings."
    )
