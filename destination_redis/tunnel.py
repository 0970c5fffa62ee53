"""SSH tunnel to a Redis host behind a bastion: local 127.0.0.1:<free port> -> bastion -> Redis.

Built on paramiko directly rather than sshtunnel's forwarder: sshtunnel logs and swallows the
causes of failure (it reports only "Could not establish session to SSH gateway"), while `check`
must say which step failed. The steps, each with its own message:

  SSH connect     TCP to the bastion and the SSH handshake
  SSH auth        the key (from memory, never written to disk) or the password
  Tunnel forward  the bastion opens a connection to the Redis host:port (tried once up front)

Host keys: this config has no field for the bastion's host key, so it is not checked (Airbyte's
standard tunnel does the same). The session is encrypted, but a machine that can impersonate the
bastion could see the traffic: use TLS to Redis as well where that matters, since TLS through the
tunnel still verifies the Redis certificate against the real Redis host name.

The tunnel is a context manager: its listener, threads, channels and SSH session are closed on
every exit path (success, error, KeyboardInterrupt). Its threads are daemons, so even a stuck
channel can never keep the process alive.
"""

from __future__ import annotations

import io
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import paramiko
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from destination_redis.config import SshKeyTunnel, SshPasswordTunnel
from destination_redis.errors import ConnectStepError, step_failed

CHUNK = 1 << 16

SshTunnelConfig = SshKeyTunnel | SshPasswordTunnel


def _fail(step: str, where: str, detail: str, advice: str, retryable: bool = False) -> ConnectStepError:
    return step_failed(step, f"SSH bastion {where}", detail, advice, retryable)


def load_private_key(text: str) -> paramiko.PKey:
    """An SSH private key from its text: RSA, ECDSA or Ed25519; OpenSSH, PEM or PKCS#8 format.

    cryptography reads every format; the key is re-serialised in memory to the OpenSSH format,
    which paramiko's key class of that type reads. Nothing touches the disk.
    """
    data = text.replace("\r\n", "\n").strip().encode() + b"\n"
    key: PrivateKeyTypes
    try:
        if b"BEGIN OPENSSH PRIVATE KEY" in data:
            key = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise _key_error(
            "ssh_key is protected by a passphrase, and the config has no field for one",
            "Remove the passphrase from a copy of the key (ssh-keygen -p -N '' -f <copy>) and "
            "paste that copy.",
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise _key_error(
            "ssh_key is not a private key in OpenSSH or PEM format",
            "Paste the whole private key, from its -----BEGIN line to its -----END line "
            "(RSA, ECDSA or Ed25519).",
        ) from None
    key_class: type[paramiko.PKey]
    if isinstance(key, rsa.RSAPrivateKey):
        key_class = paramiko.RSAKey
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        key_class = paramiko.ECDSAKey
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        key_class = paramiko.Ed25519Key
    else:
        raise _key_error(
            f"ssh_key is a {type(key).__name__.removeprefix('_')} key, which is not supported",
            "Use an RSA, ECDSA or Ed25519 key.",
        )
    openssh = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    loaded: paramiko.PKey = key_class.from_private_key(io.StringIO(openssh))
    return loaded


def _key_error(detail: str, advice: str) -> ConnectStepError:
    return ConnectStepError(f"The SSH key could not be used: {detail}. {advice}")


@contextmanager
def open_tunnel(
    tunnel: SshTunnelConfig, remote_host: str, remote_port: int, timeout: float
) -> Iterator[SshTunnel]:
    """A running tunnel to remote_host:remote_port (as the bastion resolves it), always closed."""
    # paramiko logs its own view of failures, with tracebacks, from its threads; we report each
    # failure ourselves, once, as a message that names the step.
    logging.getLogger("paramiko").setLevel(logging.CRITICAL + 1)
    key = load_private_key(tunnel.ssh_key.get_secret_value()) if isinstance(tunnel, SshKeyTunnel) else None
    where = f"{tunnel.tunnel_host}:{tunnel.tunnel_port}"
    transport = _connect(tunnel, where, timeout)
    try:
        _authenticate(transport, tunnel, where, key)
        opened = SshTunnel(transport, where, (remote_host, remote_port), timeout)
    except BaseException:
        transport.close()
        raise
    try:
        opened.check_forward()
        opened.start()
        yield opened
    finally:
        opened.close()


def _connect(tunnel: SshTunnelConfig, where: str, timeout: float) -> paramiko.Transport:
    try:
        sock = socket.create_connection((tunnel.tunnel_host, tunnel.tunnel_port), timeout=timeout)
    except socket.gaierror as exc:
        raise _fail(
            "SSH connect", where, f"the host name could not be resolved ({exc.strerror})",
            "Check tunnel_host.", retryable=True,
        ) from None
    except TimeoutError:
        raise _fail(
            "SSH connect", where, f"no answer within {timeout:.0f}s",
            "Check tunnel_host and tunnel_port, and that a firewall lets this machine reach the bastion.",
            retryable=True,
        ) from None
    except OSError as exc:
        raise _fail(
            "SSH connect", where, exc.strerror or type(exc).__name__,
            "Check tunnel_host and tunnel_port, and that the bastion's SSH server is running and "
            "reachable from here.",
            retryable=True,
        ) from None
    try:
        transport = paramiko.Transport(sock)
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
        raise _fail(
            "SSH connect", where, f"the SSH handshake failed ({_short(exc)})",
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
        raise _fail(
            "SSH auth", where, f"the bastion does not accept {method} authentication (it accepts: {allowed})",
            "Choose the tunnel method the bastion accepts.",
        ) from None
    except paramiko.AuthenticationException:
        if key is not None:
            raise _fail(
                "SSH auth", where, f"the bastion refused the SSH key for user '{user}'",
                f"Check tunnel_user, and that the key's public half is in the authorized_keys of "
                f"'{user}' on the bastion.",
            ) from None
        raise _fail(
            "SSH auth", where, f"the bastion refused the password for user '{user}'",
            "Check tunnel_user and tunnel_user_password.",
        ) from None
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise _fail(
            "SSH auth", where, f"the session ended during authentication ({_short(exc)})",
            "Check the bastion's SSH server and try again.", retryable=True,
        ) from None
    if not transport.is_authenticated():
        raise _fail(
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


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class SshTunnel:
    """Forwards each connection accepted on 127.0.0.1:`local_port` over one SSH session."""

    local_host = "127.0.0.1"

    def __init__(
        self, transport: paramiko.Transport, where: str, remote: tuple[str, int], timeout: float
    ) -> None:
        self.where = where
        self._transport = transport
        self._remote = remote
        self._timeout = timeout
        self._listener = socket.create_server((self.local_host, 0))
        self.local_port: int = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._threads: list[threading.Thread] = []

    def check_forward(self) -> None:
        """Open and close one channel, so that an unreachable Redis is reported as such, now."""
        channel = self._open_channel(("127.0.0.1", 0))
        channel.close()

    def _open_channel(self, origin: tuple[str, int]) -> paramiko.Channel:
        host, port = self._remote
        try:
            channel: paramiko.Channel = self._transport.open_channel(
                "direct-tcpip", self._remote, origin, timeout=self._timeout
            )
        except paramiko.ChannelException as exc:
            if exc.code == paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED:
                raise _fail(
                    "Tunnel forward", self.where,
                    "the bastion does not allow TCP forwarding for this user (AllowTcpForwarding)",
                    "Allow TCP forwarding for tunnel_user on the bastion.",
                ) from None
            raise _fail(
                "Tunnel forward", self.where,
                f"the bastion could not open a connection to Redis at {host}:{port} ({exc.text})",
                "Check host and port as the bastion sees them (the bastion resolves the host name), "
                "and that Redis is running and the bastion may reach it.",
                retryable=True,
            ) from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise _fail(
                "Tunnel forward", self.where, f"the SSH session failed ({_short(exc)})",
                "Check the bastion and try again.", retryable=True,
            ) from None
        return channel

    def start(self) -> None:
        self._listener.settimeout(0.2)
        self._spawn(self._accept_loop, "ssh-tunnel-accept")

    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> None:
        def guarded() -> None:
            # A forwarding thread never prints a traceback: when a forwarded connection breaks,
            # the Redis client on the other end sees it closed and reports it with its context.
            with suppress(Exception):
                target(*args)

        thread = threading.Thread(target=guarded, name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                local, origin = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listener was closed
            local.settimeout(None)
            local.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._spawn(self._serve, "ssh-tunnel-open", local, origin)

    def _serve(self, local: socket.socket, origin: tuple[str, int]) -> None:
        try:
            channel = self._open_channel(origin)
        except ConnectStepError:
            _close_socket(local)  # the Redis client sees the connection closed and reports it
            return
        link = _Link(local, channel)
        with self._lock:
            if self._closed.is_set():
                link.close()
                return
            self._links.add(link)
        self._spawn(self._pump, "ssh-tunnel-up", link, local.recv, channel.sendall)
        self._pump(link, channel.recv, local.sendall)

    def _pump(self, link: _Link, receive: Callable[[int], bytes], send: Callable[[bytes], object]) -> None:
        """Copy one direction until either side ends; then close both, which ends the other pump."""
        try:
            while True:
                data = receive(CHUNK)
                if not data:
                    break
                send(data)
        except (OSError, EOFError, paramiko.SSHException):
            pass
        finally:
            link.close()
            with self._lock:
                self._links.discard(link)

    def close(self) -> None:
        """Stop accepting, close every forwarded connection and the SSH session; idempotent."""
        self._closed.set()
        _close_socket(self._listener)
        with self._lock:
            links, self._links = set(self._links), set()
            threads = list(self._threads)
        for link in links:
            link.close()
        self._transport.close()
        current = threading.current_thread()
        for thread in threads:
            if thread is not current:
                thread.join(timeout=2)


class _Link:
    """One forwarded connection: the accepted local socket and its SSH channel."""

    def __init__(self, local: socket.socket, channel: paramiko.Channel) -> None:
        self.local = local
        self.channel = channel
        self._closed = False
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _close_socket(self.local)
        with suppress(Exception):  # the SSH session may be gone already: nothing left to tell it
            self.channel.close()


def _close_socket(sock: socket.socket) -> None:
    """shutdown wakes a thread blocked in recv/accept on the socket; close alone may not."""
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
