"""A TCP proxy between the connector and a test's redis-server that can lose one reply on purpose.

A lost connection after the server ran a command, but before its reply arrived, is the case a
retry must not repeat (INCRBY, RPUSH, XADD are not idempotent). Killing the client or the server
cannot place the loss that precisely; this proxy can: armed with `drop_reply_to(name, n)`, it
forwards the n-th command named `name` to the server, swallows the next bytes the server sends
back on that connection (its reply) and closes both ends. Every other connection, before and
after, is forwarded untouched.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

_CHUNK = 1 << 16


@dataclass
class _Pair:
    """One proxied connection: the client's socket and the one to the server."""

    client: socket.socket
    upstream: socket.socket
    drop_next_reply: bool = False
    tail: bytes = b""  # the end of the last client chunk, for a command name split across chunks
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def close(self) -> None:
        """Close both ends once (shutdown first: it wakes the other pump's blocking recv)."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):  # already disconnected
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class ReplyDroppingProxy:
    """Listens on 127.0.0.1 (a free port, `port`) and forwards to the server at `upstream_port`.

    Use as a context manager: the listener and every pump thread are stopped on exit.
    """

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self._upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)  # the accept loop polls `_stopping`
        self.port: int = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._pairs: list[_Pair] = []
        self._threads: list[threading.Thread] = []
        self._pattern: bytes | None = None  # the armed command name as a RESP bulk string, lower case
        self._remaining = 0  # occurrences of it still to pass before the one whose reply is lost
        self.dropped = threading.Event()  # set once a reply was swallowed

    def drop_reply_to(self, command: str, occurrence: int = 1) -> None:
        """Lose the reply to the `occurrence`-th command named `command` (case-insensitive).

        Matched as a RESP bulk string (`$6\\r\\nINCRBY\\r\\n`), so HINCRBY or a value that merely
        contains the word do not count. Replies to commands sent in the same write are lost too,
        as they would be with a real connection loss.
        """
        name = command.lower().encode()
        with self._lock:
            self._pattern = b"$%d\r\n%s\r\n" % (len(name), name)
            self._remaining = occurrence
            self.dropped.clear()

    def __enter__(self) -> ReplyDroppingProxy:
        self._spawn(self._accept_loop)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop accepting, close every proxied connection, and wait for the threads."""
        self._stopping.set()
        self._listener.close()
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            pair.close()
        for thread in list(self._threads):
            thread.join(timeout=5)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
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
                return  # the listener was closed by stop()
            try:
                upstream = socket.create_connection(self._upstream, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            pair = _Pair(client, upstream)
            with self._lock:
                self._pairs.append(pair)
            if self._stopping.is_set():
                pair.close()
                return
            self._spawn(self._client_to_server, pair)
            self._spawn(self._server_to_client, pair)

    def _client_to_server(self, pair: _Pair) -> None:
        try:
            while chunk := pair.client.recv(_CHUNK):
                self._watch(pair, chunk)
                pair.upstream.sendall(chunk)
        except OSError:
            pass  # either end went away
        pair.close()

    def _server_to_client(self, pair: _Pair) -> None:
        try:
            while chunk := pair.upstream.recv(_CHUNK):
                if pair.drop_next_reply:
                    self.dropped.set()
                    break  # the server ran the command; the client never hears of it
                pair.client.sendall(chunk)
        except OSError:
            pass
        pair.close()

    def _watch(self, pair: _Pair, chunk: bytes) -> None:
        """Count the armed command in what the client sends; arm the pair at the chosen one.

        Runs before the chunk is forwarded, so the pair is armed before any reply to it exists.
        """
        with self._lock:
            pattern = self._pattern
            if pattern is None:
                return
            window = (pair.tail + chunk).lower()
            pair.tail = window[-(len(pattern) - 1) :]  # too short to hold a whole match again
            found = window.count(pattern)
            if not found:
                return
            if found >= self._remaining:
                pair.drop_next_reply = True
                self._pattern = None  # only once: later connections and commands pass untouched
            else:
                self._remaining -= found
