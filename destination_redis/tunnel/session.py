"""The SSH session to the bastion, and a local forward for each address reached through it.

A standalone server needs one forward; a Redis Cluster or a Sentinel group announces the
addresses of its other nodes, each reached through its own forward, opened when first needed
(as the bastion resolves the address), all over the one session.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import paramiko

from destination_redis.config import SshKeyTunnel, SshPasswordTunnel
from destination_redis.tunnel.forward import SshTunnel, fail, short
from destination_redis.tunnel.keys import load_private_key
from destination_redis.tunnel.wire import WireSocket, prefer_fast_ciphers

SshTunnelConfig = SshKeyTunnel | SshPasswordTunnel


class SshSession:
    """One authenticated SSH session; `forward(host, port)` gives the local end for that address."""

    def __init__(self, transport: paramiko.Transport, where: str, timeout: float) -> None:
        self.where = where
        self._transport = transport
        self._timeout = timeout
        self._lock = threading.Lock()
        self._forwards: dict[tuple[str, int], SshTunnel] = {}
        self._closed = False

    def forward(self, host: str, port: int) -> SshTunnel:
        """The running forward to host:port (as the bastion resolves it), opened on first use.

        Each time it is asked for, one channel is opened and closed first, so an address the
        bastion cannot reach is reported now as "Tunnel forward failed" (retryable), as a direct
        connection reports "TCP connect failed". That includes a forward opened earlier whose node
        has gone since (a failover): its listener still accepts, then closes the connection, which
        the probe would take for a server that does not speak TLS (a config error).

        Safe from several threads (the router's pipelines discover nodes in parallel): one
        forward per address. None is opened once the session is closing, so none outlives it."""
        with self._lock:
            known = self._forwards.get((host, port))
        if known is not None:
            known.check_forward()
            return known
        opened = SshTunnel(self._transport, self.where, (host, port), self._timeout)
        try:
            opened.check_forward()
            opened.start()
        except BaseException:
            opened.close_listener()
            raise
        with self._lock:
            closed = self._closed
            raced = opened if closed else self._forwards.setdefault((host, port), opened)
        if closed:
            opened.close()
            raise fail(
                "Tunnel forward", self.where, f"the SSH session was closed before {host}:{port} was reached",
                "Nothing to change: the command was ending.", retryable=True,
            )
        if raced is not opened:
            opened.close()
        return raced

    def close(self) -> None:
        """Close every forward and the session; idempotent.

        Forwarded connections and the session are closed before the threads are joined: a
        thread still opening a channel then ends at once instead of waiting out its timeout."""
        with self._lock:
            self._closed = True
            forwards, self._forwards = list(self._forwards.values()), {}
        for forward in forwards:
            forward.close_listener()
        for forward in forwards:
            forward.close_links()
        self._transport.close()
        for forward in forwards:
            forward.join()


@contextmanager
def open_ssh_session(tunnel: SshTunnelConfig, timeout: float) -> Iterator[SshSession]:
    """An authenticated session to the bastion, always closed with all its forwards."""
    # paramiko logs its own view of failures, with tracebacks, from its threads; we report each
    # failure ourselves, once, as a message that names the step.
    logging.getLogger("paramiko").setLevel(logging.CRITICAL + 1)
    key = load_private_key(tunnel.ssh_key.get_secret_value()) if isinstance(tunnel, SshKeyTunnel) else None
    where = f"{tunnel.tunnel_host}:{tunnel.tunnel_port}"
    transport = _connect(tunnel, where, timeout)
    session = SshSession(transport, where, timeout)
    try:
        _authenticate(transport, tunnel, where, key)
        yield session
    finally:
        session.close()


@contextmanager
def open_tunnel(
    tunnel: SshTunnelConfig, remote_host: str, remote_port: int, timeout: float
) -> Iterator[SshTunnel]:
    """A running tunnel to remote_host:remote_port (as the bastion resolves it), always closed."""
    with open_ssh_session(tunnel, timeout) as session:
        yield session.forward(remote_host, remote_port)


def _connect(tunnel: SshTunnelConfig, where: str, timeout: float) -> paramiko.Transport:
    try:
        sock = socket.create_connection((tunnel.tunnel_host, tunnel.tunnel_port), timeout=timeout)
    except socket.gaierror as exc:
        raise fail(
            "SSH connect", where, f"the host name could not be resolved ({exc.strerror})",
            "Check tunnel_host.", retryable=True,
        ) from None
    except TimeoutError:
        raise fail(
            "SSH connect", where, f"no answer within {timeout:.0f}s",
            "Check tunnel_host and tunnel_port, and that a firewall lets this machine reach the bastion.",
            retryable=True,
        ) from None
    except OSError as exc:
        raise fail(
            "SSH connect", where, exc.strerror or type(exc).__name__,
            "Check tunnel_host and tunnel_port, and that the bastion's SSH server is running and "
            "reachable from here.",
            retryable=True,
        ) from None
    try:
        # Nagle would hold a packet shorter than a segment (a batch's last, a window adjust)
        # until the previous one is acknowledged.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = paramiko.Transport(WireSocket(sock))
        prefer_fast_ciphers(transport)
    except BaseException:
        sock.close()
        raise
    transport.banner_timeout = timeout
    transport.handshake_timeout = timeout
    transport.auth_timeout = timeout
    try:
        transport.start_client(timeout=timeout)
        transport.set_keepalive(30)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        transport.close()
        raise fail(
            "SSH connect", where, f"the SSH handshake failed ({short(exc)})",
            "Check that tunnel_port is the bastion's SSH port.", retryable=True,
        ) from None
    except BaseException:
        transport.close()
        raise
    return transport


def _authenticate(
    transport: paramiko.Transport, tunnel: SshTunnelConfig, where: str, key: paramiko.PKey | None
) -> None:
    user = tunnel.tunnel_user
    try:
        if key is not None:
            transport.auth_publickey(user, key)
        elif isinstance(tunnel, SshPasswordTunnel):
            _auth_password(transport, user, tunnel.tunnel_user_password.get_secret_value())
    except paramiko.BadAuthenticationType as exc:
        method = "key" if key is not None else "password"
        allowed = ", ".join(exc.allowed_types) or "none"
        raise fail(
            "SSH auth", where, f"the bastion does not accept {method} authentication (it accepts: {allowed})",
            "Choose the tunnel method the bastion accepts.",
        ) from None
    except paramiko.AuthenticationException:
        if key is not None:
            raise fail(
                "SSH auth", where, f"the bastion refused the SSH key for user '{user}'",
                f"Check tunnel_user, and that the key's public half is in the authorized_keys of "
                f"'{user}' on the bastion.",
            ) from None
        raise fail(
            "SSH auth", where, f"the bastion refused the password for user '{user}'",
            "Check tunnel_user and tunnel_user_password.",
        ) from None
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise fail(
            "SSH auth", where, f"the session ended during authentication ({short(exc)})",
            "Check the bastion's SSH server and try again.", retryable=True,
        ) from None
    if not transport.is_authenticated():
        raise fail(
            "SSH auth", where, "the bastion asks for more authentication steps than one key or password",
            "Use a bastion account that logs in with one key or one password.",
        )


def _auth_password(transport: paramiko.Transport, user: str, password: str) -> None:
    """Password authentication, or keyboard-interactive answering every prompt with the password."""
    try:
        transport.auth_password(user, password)
    except paramiko.BadAuthenticationType as exc:
        if "keyboard-interactive" not in exc.allowed_types:
            raise
        transport.auth_interactive(user, lambda _title, _instructions, prompts: [password] * len(prompts))

