"""The SSH connection's own socket and ciphers, set for forwarding batches: why each setting is there.

The connector sends a ~3 MB batch through the session, then waits for ~10,000 small replies,
while its loader thread keeps the GIL busy parsing the next batch. Each call by which a tunnel
thread gives up the GIL (a recv, a send) can cost it up to a switch interval to take it back, so
the tunnel makes few of them per megabyte.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import paramiko

# One recv on the SSH socket serves every packet that has arrived, up to this many bytes.
READ_AHEAD = 1 << 18
# A corked thread's packets go to the socket together once this many bytes wait.
WRITE_BEHIND = 1 << 18
# paramiko keeps this much of the peer's maximum packet size for the packet's own header.
PACKET_HEADROOM = 64

# Linux only. OpenSSH leaves Nagle's algorithm on for a connection without a terminal, so the
# bastion holds each small packet (Redis' replies) until its previous one is acknowledged. Once a
# batch is uploaded this side sends nothing an acknowledgement could ride on, and the kernel
# delays it up to 40 ms: most of each batch's replies waited that long. Asking for a quick ack
# after each read sends it at once (the kernel may fall back to delaying: it is asked each time).
QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)

# AES-GCM is an AEAD: one AES-NI pass per packet with its tag, several times cheaper than AES-CTR
# plus the separate HMAC-SHA2 pass that paramiko prefers by default. The bastion must offer it
# too (OpenSSH does); if not, the negotiation takes the next cipher both offer, as before.
FAST_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def prefer_fast_ciphers(transport: paramiko.Transport) -> None:
    """Move the AES-GCM ciphers first in what the client offers; the offered set is unchanged."""
    options = transport.get_security_options()
    offered = tuple(options.ciphers)
    fast = tuple(name for name in FAST_CIPHERS if name in offered)
    options.ciphers = fast + tuple(name for name in offered if name not in fast)


class WireSocket:
    """The connected socket under paramiko's transport, with reads and bulk writes batched.

    Reads: paramiko reads each packet with two or three recv calls (the first cipher block, the
    rest, the MAC). Here one recv takes whatever has arrived and packets are cut from it: a burst
    of reply packets costs one system call. Only the transport's thread reads.

    Writes: the packets of a thread inside `corked()` are kept and written together. paramiko
    encrypts packets in sequence under its write lock, and any other thread's write first writes
    what is kept, so the order holds and no message of the transport's own (a rekey's, a
    keepalive) waits behind a corked thread."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""
        self._offset = 0
        self._lock = threading.Lock()
        self._kept: list[bytes] = []
        self._kept_bytes = 0
        self._corked: set[int] = set()

    def recv(self, size: int) -> bytes:
        """Up to `size` bytes; an empty result only at end of stream, as socket.recv."""
        if self._offset >= len(self._buffer):
            self._buffer = self._sock.recv(max(size, READ_AHEAD))  # its timeout is paramiko's tick
            self._offset = 0
            if QUICKACK is not None:
                with suppress(OSError):  # closed meanwhile: the next read says so
                    self._sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
        start = self._offset
        self._offset = start + size
        return self._buffer[start:self._offset]

    def send(self, data: bytes) -> int:
        with self._lock:
            if threading.get_ident() not in self._corked:
                self._write_kept()
                return self._sock.send(data)
            self._kept.append(bytes(data))
            self._kept_bytes += len(data)
            if self._kept_bytes >= WRITE_BEHIND:
                self._write_kept()
            return len(data)

    @contextmanager
    def corked(self, on: bool = True) -> Iterator[None]:
        """Keep this thread's packets until the block ends; `on=False` inside a corked block:
        write what is kept and let this thread's writes through, for a send that may wait on
        the server (which must have had every earlier packet)."""
        me = threading.get_ident()
        with self._lock:
            if on:
                self._corked.add(me)
            else:
                self._corked.discard(me)
                self._write_kept()
        try:
            yield
        finally:
            with self._lock:
                if on:
                    self._corked.discard(me)
                    self._write_kept()
                else:
                    self._corked.add(me)

    def _write_kept(self) -> None:
        """(Lock held.) Not socket.sendall: it can stop part-way at paramiko's 0.1 s socket
        timeout, with no way to tell how much went; send sends nothing when it times out."""
        if not self._kept:
            return
        view = memoryview(b"".join(self._kept))
        self._kept, self._kept_bytes = [], 0
        while view:
            try:
                view = view[self._sock.send(view):]
            except TimeoutError:
                continue

    def settimeout(self, timeout: float | None) -> None:
        self._sock.settimeout(timeout)

    def getpeername(self) -> tuple[str, int]:
        peer: tuple[str, int] = self._sock.getpeername()
        return peer

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    @property
    def _closed(self) -> bool:
        """paramiko's Transport.stop_thread looks at its socket's `_closed`."""
        return bool(getattr(self._sock, "_closed", False))


def send_bulk(wire: WireSocket | None, channel: paramiko.Channel, data: bytes) -> None:
    """channel.sendall(data), in whole packets written to the socket a few at a time.

    A packet the channel's window has no room for is sent uncorked, after what is kept: the
    server opens the window only for data it has received."""
    if wire is None:
        channel.sendall(data)
        return
    size = max(1, channel.out_max_packet_size - PACKET_HEADROOM)
    with wire.corked():
        for start in range(0, len(data), size):
            piece = data[start:start + size]
            if channel.out_window_size >= len(piece):  # only this thread spends the window
                channel.sendall(piece)
                continue
            with wire.corked(on=False):
                channel.sendall(piece)
