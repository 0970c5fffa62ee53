"""One local listener on 127.0.0.1 whose connections are carried to one remote address over SSH."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from contextlib import suppress

import paramiko

from destination_redis.errors import ConnectStepError, step_failed
from destination_redis.tunnel.wire import WireSocket, send_bulk

CHUNK = 1 << 16
# What the client sends is read in pieces this large: a batch crosses in a few reads, each sent
# on as a run of whole packets written together (wire.send_bulk).
UP_CHUNK = 1 << 20


def fail(step: str, where: str, detail: str, advice: str, retryable: bool = False) -> ConnectStepError:
    return step_failed(step, f"SSH bastion {where}", detail, advice, retryable)


def short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class SshTunnel:
    """Forwards each connection accepted on 127.0.0.1:`local_port` to one address over the SSH session."""

    local_host = "127.0.0.1"

    def __init__(
        self, transport: paramiko.Transport, where: str, remote: tuple[str, int], timeout: float
    ) -> None:
        self.where = where
        self._transport = transport
        sock = getattr(transport, "sock", None)
        self._wire = sock if isinstance(sock, WireSocket) else None
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
                raise fail(
                    "Tunnel forward", self.where,
                    "the bastion does not allow TCP forwarding for this user (AllowTcpForwarding)",
                    "Allow TCP forwarding for tunnel_user on the bastion.",
                ) from None
            raise fail(
                "Tunnel forward", self.where,
                f"the bastion could not open a connection to Redis at {host}:{port} ({exc.text})",
                "Check host and port as the bastion sees them (the bastion resolves the host name), "
                "and that Redis is running and the bastion may reach it.",
                retryable=True,
            ) from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise fail(
                "Tunnel forward", self.where, f"the SSH session failed ({short(exc)})",
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
        wire = self._wire
        self._spawn(self._pump, "ssh-tunnel-up", link, local.recv, UP_CHUNK,
                    lambda data: send_bulk(wire, channel, data))
        self._pump(link, channel.recv, CHUNK, local.sendall)

    def _pump(
        self, link: _Link, receive: Callable[[int], bytes], chunk: int, send: Callable[[bytes], object]
    ) -> None:
        """Copy one direction until either side ends; then close both, which ends the other pump."""
        try:
            while True:
                data = receive(chunk)
                if not data:
                    break
                send(data)
        except (OSError, EOFError, paramiko.SSHException):
            pass
        finally:
            link.close()
            with self._lock:
                self._links.discard(link)

    def close_listener(self) -> None:
        """Stop accepting new connections; idempotent."""
        self._closed.set()
        _close_socket(self._listener)

    def close(self) -> None:
        """Stop accepting and close every forwarded connection (the session closes itself); idempotent."""
        self.close_links()
        self.join()

    def close_links(self) -> None:
        """Stop accepting and close every forwarded connection, without waiting for the threads."""
        self.close_listener()
        with self._lock:
            links, self._links = set(self._links), set()
        for link in links:
            link.close()

    def join(self, timeout: float = 2) -> None:
        """Wait for this forward's threads (daemons: one stuck thread cannot keep the process alive)."""
        with self._lock:
            threads = list(self._threads)
        current = threading.current_thread()
        for thread in threads:
            if thread is not current:
                thread.join(timeout=timeout)


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
