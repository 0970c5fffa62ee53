"""For scripts/benchmark.py's `--paths` rows: what stands between the connector and redis-server.

`Endpoint` is a connector config's connection part (host, port, ssl, tunnel_method) for any path;
`tls_files` a throwaway CA and a server certificate for localhost (trustme); `DelayProxy` a TCP
proxy on loopback that holds every chunk it forwards, either way, `delay` seconds (a round trip
through it takes 2 x delay: this kernel has no netem). The rows themselves are in benchmark.py.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import trustme

_CHUNK = 1 << 16


class Configurable(Protocol):
    """What benchmark.write_files needs of a server or path: the connector config's connection part."""

    def config(self, **overrides: object) -> dict[str, object]: ...


@dataclass(frozen=True)
class Endpoint:
    """Where the connector connects and how: its config is `host`, `port` and `extra`."""

    host: str
    port: int
    extra: dict[str, Any] = field(default_factory=dict)

    def config(self, **overrides: object) -> dict[str, object]:
        return {"host": self.host, "port": self.port, **self.extra, **overrides}


@dataclass(frozen=True)
class TlsFiles:
    ca_pem: str  # for the connector's ssl_mode.ca_certificate
    ca_file: Path
    cert_file: Path  # redis-server's certificate (chain) and key: valid for localhost and 127.0.0.1
    key_file: Path


def tls_files(folder: Path) -> TlsFiles:
    """A fresh CA and a server certificate it signed, as integration_tests/tls_certs.py makes them."""
    ca = trustme.CA(organization_name="destination-redis benchmark")
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "server.crt", folder / "server.key"
    ca.cert_pem.write_to_path(str(ca_file))
    cert_file.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key_file))
    key_file.chmod(0o600)
    return TlsFiles(ca.cert_pem.bytes().decode(), ca_file, cert_file, key_file)


class DelayProxy:
    """127.0.0.1:<port> -> 127.0.0.1:<upstream_port>, each chunk read from either side sent on
    `delay` seconds later (chunks behind it are read meanwhile: latency, not a bandwidth cap).
    Per connection a reader and a sender thread per direction; `stop()` (or leaving the `with`)
    closes every socket and joins every thread."""

    def __init__(self, upstream_port: int, delay: float) -> None:
        self.upstream_port = upstream_port
        self.delay = delay
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.connections = 0
        self._spawn(self._accept_loop)

    def __enter__(self) -> DelayProxy:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def _spawn(self, target: Any, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [client, upstream]
                self.connections += 1
            for source, target in ((client, upstream), (upstream, client)):
                chunks: queue.Queue[tuple[float, bytes] | None] = queue.Queue()
                self._spawn(self._read, source, chunks)
                self._spawn(self._send, target, chunks)

    def _read(self, source: socket.socket, chunks: queue.Queue[tuple[float, bytes] | None]) -> None:
        try:
            while data := source.recv(_CHUNK):
                chunks.put((time.monotonic() + self.delay, data))
        except OSError:
            pass
        chunks.put(None)

    def _send(self, target: socket.socket, chunks: queue.Queue[tuple[float, bytes] | None]) -> None:
        try:
            while (item := chunks.get()) is not None:
                due, data = item
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                target.sendall(data)
            target.shutdown(socket.SHUT_WR)  # the other side closed: pass the EOF on
        except OSError:
            pass

    def stop(self) -> None:
        self._stopping.set()
        self._listener.close()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in threads:
            thread.join(timeout=5)
