"""How this command reaches any address: one TLS context and at most one SSH session for all.

A standalone server is one address; a cluster or a Sentinel group announces more as they are
discovered. Each gets an Endpoint: direct, or through its own forward over the one SSH session,
TLS verifying the name or address it was announced by (never the tunnel's local end).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

from destination_redis.config import RedisConfig, SshKeyTunnel, SshPasswordTunnel, SslVerifyFull
from destination_redis.connection.endpoint import CONNECT_TIMEOUT_S, Endpoint
from destination_redis.errors import ConnectStepError
from destination_redis.tls import TlsSetupError, build_context

if TYPE_CHECKING:
    from destination_redis.tunnel.session import SshSession


class Reach:
    """Endpoints for any host:port, sharing the command's TLS context and SSH session."""

    def __init__(self, tls: SslVerifyFull | None, ssl_context: ssl.SSLContext | None,
                 session: SshSession | None) -> None:
        self.tls = tls
        self._ssl_context = ssl_context
        self._session = session

    @property
    def via(self) -> str:
        """" via SSH bastion host:port" when tunnelled, else "" (for messages)."""
        return f" via SSH bastion {self._session.where}" if self._session else ""

    def where(self, host: str, port: int) -> str:
        """How messages name host:port ("host:port", plus the bastion when tunnelled).

        Touches no network: use it where a message needs the name, since `endpoint` opens (and
        through the tunnel checks) a forward, which raises when the bastion cannot reach it."""
        return f"{host}:{port}{self.via}"

    def endpoint(self, host: str, port: int) -> Endpoint:
        """Where connections to host:port (as configured or announced) go; TLS verifies `host`.

        Through the tunnel: the local end of the forward to that address, opened on first use
        (raises ConnectStepError "Tunnel forward failed" when the bastion cannot reach it)."""
        if self._session is None:
            return Endpoint(host, port, host, self._ssl_context, self.where(host, port))
        forward = self._session.forward(host, port)
        return Endpoint(forward.local_host, forward.local_port, host, self._ssl_context,
                        self.where(host, port))


@contextmanager
def open_reach(config: RedisConfig) -> Iterator[Reach]:
    """TLS context first (a bad PEM fails before any network), then the SSH session; closed after.

    Raises ConnectStepError naming the step (TLS setup, SSH connect, SSH auth).
    """
    ssl_context = None
    if config.tls is not None:
        try:
            ssl_context = build_context(config.tls)
        except TlsSetupError as exc:
            raise ConnectStepError(f"TLS setup failed: {exc.message}", False) from None
    method = config.tunnel_method
    with ExitStack() as stack:
        session = None
        if isinstance(method, SshKeyTunnel | SshPasswordTunnel):
            # paramiko takes a quarter of a second to import: only for a config with a tunnel
            from destination_redis.tunnel.session import open_ssh_session

            session = stack.enter_context(open_ssh_session(method, CONNECT_TIMEOUT_S))
        yield Reach(config.tls, ssl_context, session)
