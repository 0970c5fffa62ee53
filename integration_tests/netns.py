"""Where harness processes run: on the host, or inside a network namespace of their own.

A namespace has its own loopback, so a server bound to 127.0.0.1 inside it cannot be reached from
the host: the "private cluster behind a bastion" topology. Its only link is one veth pair to the
host with a private /30 (host .1, namespace .2) and no other route, so the only traffic on those
addresses is between the host and our own namespaces. Names carry the pid of the test process:
leftovers of a crashed run (pid gone) are removed before a namespace is made, and concurrent runs
never collide. Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and iproute2's `ip`.

Both runners have the same small interface (`Runner`): `popen`/`run` a command, and `redis_kwargs`
to make redis-py open its sockets where the servers are. Inside a namespace those sockets are
created by worker threads that entered it with setns(2): a thread's network namespace is its own.
"""

from __future__ import annotations

import ctypes
import fcntl
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

from redis.connection import Connection, SSLConnection

from integration_tests.servers import stop_process

T = TypeVar("T")
Output = int | IO[bytes] | None

PREFIX = "drtest"  # namespaces drtest-<pid>-<n>, host veth ends drt<pid>-<n>h (15 chars at most)
NETNS_DIR = Path("/run/netns")
LOCK_FILE = Path("/run/lock/destination-redis-netns.lock")
# Candidate /30s, tried from an offset that depends on the pid; any overlapping a route is skipped.
SUBNET_POOLS = (ipaddress.IPv4Network("10.213.0.0/16"), ipaddress.IPv4Network("192.168.213.0/24"))
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)
_SETPRIV = shutil.which("setpriv")
_counter = iter(range(1_000_000))


class NetnsUnavailable(RuntimeError):
    """The machine cannot make network namespaces (not root, no `ip`, no CAP_SYS_ADMIN)."""


class Runner(Protocol):
    """Where harness processes run and where the harness's own redis clients connect from."""

    name: str

    def popen(
        self, command: Sequence[str], *, stdout: Output = subprocess.DEVNULL,
        stderr: Output = subprocess.DEVNULL, env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]: ...

    def run(
        self, command: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]: ...

    def redis_kwargs(self, tls: Mapping[str, Any]) -> dict[str, Any]: ...


def _die_with_us(command: Sequence[str]) -> list[str]:
    """Prefix `setpriv --pdeathsig`: a server outlives no test process, even one killed with -9.

    The signal fires when the forking *thread* ends, so only commands started from the main thread
    get it (fixtures run there); one started from a worker thread must not die with that thread.
    """
    if _SETPRIV and threading.current_thread() is threading.main_thread():
        return [_SETPRIV, "--pdeathsig", "TERM", "--", *command]
    return list(command)


class HostRunner:
    """The default runner: processes and connections on the host itself."""

    name = "host"

    def popen(
        self, command: Sequence[str], *, stdout: Output = subprocess.DEVNULL,
        stderr: Output = subprocess.DEVNULL, env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(_die_with_us(command), stdout=stdout, stderr=stderr, env=env)

    def run(
        self, command: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(command), capture_output=True, text=True, timeout=timeout, env=env)

    def redis_kwargs(self, tls: Mapping[str, Any]) -> dict[str, Any]:
        return dict(tls)


HOST = HostRunner()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        output = result.stderr.strip() or result.stdout.strip()
        raise NetnsUnavailable(f"`ip {' '.join(args)}` failed: {output}")
    return result


def _enter_namespace(path: Path) -> None:
    """setns(2) the calling thread into a network namespace (threads have their own)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns({path}): {os.strerror(errno)}")
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner_pid(name: str, prefix: str) -> int | None:
    """The pid in one of our names (drtest-<pid>-<n>, drt<pid>-<n>h), None for a foreign name."""
    rest = name.removeprefix(prefix)
    if rest == name:
        return None
    head = rest.lstrip("-").split("-", 1)[0]
    return int(head) if head.isdigit() else None


@contextmanager
def _machine_lock() -> Iterator[None]:
    """Serialise namespace set-up between test processes: two must not pick the same /30."""
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with LOCK_FILE.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _kill_namespace_processes(name: str) -> None:
    """SIGKILL what still runs inside one of our namespaces: every such process is ours."""
    listed = _ip("netns", "pids", name, check=False).stdout.split()
    for pid in (int(p) for p in listed if p.isdigit()):
        if pid == os.getpid():
            continue  # never ourselves (our setns'd worker threads do not show here anyway)
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def cleanup_leftovers() -> list[str]:
    """Remove namespaces and veth ends of earlier runs whose process is gone; returns their names."""
    removed = []
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        pid = _owner_pid(name, PREFIX)
        if pid is not None and not _pid_alive(pid):
            _kill_namespace_processes(name)
            _ip("netns", "delete", name, check=False)
            removed.append(name)
    for line in _ip("-o", "link", "show", check=False).stdout.splitlines():
        parts = line.split(":")
        link = parts[1].strip().split("@")[0] if len(parts) > 1 else ""
        pid = _owner_pid(link, "drt")
        if pid is not None and not _pid_alive(pid):
            _ip("link", "delete", link, check=False)
            removed.append(link)
    return removed


def _taken_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the host routes or has an address in (the default route aside)."""
    taken: list[ipaddress.IPv4Network] = []
    text = _ip("-4", "route", "show", "table", "all", check=False).stdout
    text += _ip("-4", "-o", "addr", "show", check=False).stdout
    for word in text.split():
        try:
            network = ipaddress.ip_network(word, strict=False)
        except ValueError:
            continue
        if isinstance(network, ipaddress.IPv4Network) and network.prefixlen > 0:
            taken.append(network)
    return taken


def _free_subnet() -> ipaddress.IPv4Network:
    taken = _taken_networks()
    for pool in SUBNET_POOLS:
        subnets: list[ipaddress.IPv4Network] = list(pool.subnets(new_prefix=30))
        start = os.getpid() % len(subnets)
        for subnet in subnets[start:] + subnets[:start]:
            if not any(subnet.overlaps(other) for other in taken):
                return subnet
    raise NetnsUnavailable(f"no free /30 left in {', '.join(map(str, SUBNET_POOLS))}")


class NetworkNamespace:
    """A network namespace with `lo` up and a veth /30 to the host; everything removed on exit.

    `host_address` is the host's end, `address` the namespace's (where a bastion listens).
    Use as a context manager; `close()` is idempotent and runs however the body ends.
    """

    name: str
    host_address: str
    address: str

    def __init__(self) -> None:
        index = next(_counter)
        self.name = f"{PREFIX}-{os.getpid()}-{index}"
        self.host_link = f"drt{os.getpid()}-{index}h"
        self.inner_link = f"drt{os.getpid()}-{index}n"
        self.host_address = self.address = ""
        self._processes: list[subprocess.Popen[bytes]] = []
        self._executor: ThreadPoolExecutor | None = None
        self._created = False

    def __enter__(self) -> NetworkNamespace:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create(self) -> NetworkNamespace:
        if os.geteuid() != 0 or shutil.which("ip") is None:
            raise NetnsUnavailable(
                "network namespaces need root and iproute2's `ip` (apt-get install -y iproute2)"
            )
        try:
            with _machine_lock():
                cleanup_leftovers()
                subnet = _free_subnet()
                host, inner = (str(a) for a in list(subnet.hosts())[:2])
                try:
                    _ip("netns", "add", self.name)
                except NetnsUnavailable as exc:
                    raise NetnsUnavailable(
                        f"{exc}. The private-network tests need root with CAP_SYS_ADMIN and CAP_NET_ADMIN "
                        "(in a container: --privileged, or --cap-add SYS_ADMIN --cap-add NET_ADMIN)"
                    ) from None
                self._created = True
                _ip("-n", self.name, "link", "set", "lo", "up")
                _ip("link", "add", self.host_link, "type", "veth", "peer", "name", self.inner_link,
                    "netns", self.name)
                _ip("addr", "add", f"{host}/30", "dev", self.host_link)
                _ip("link", "set", self.host_link, "up")
                _ip("-n", self.name, "addr", "add", f"{inner}/30", "dev", self.inner_link)
                _ip("-n", self.name, "link", "set", self.inner_link, "up")
            self.host_address, self.address = host, inner
            self._wait_link_up()
        except BaseException:
            self.close()
            raise
        return self

    def _wait_link_up(self, timeout: float = 10) -> None:
        """The veth answers once both ends are up (a moment after `link set up`)."""
        deadline = time.monotonic() + timeout
        while True:
            state = _ip("-n", self.name, "-o", "link", "show", self.inner_link, check=False).stdout
            if "LOWER_UP" in state:
                return
            if time.monotonic() > deadline:
                raise NetnsUnavailable(f"veth {self.inner_link} ({self.name}) not up in {timeout} s: {state}")
            time.sleep(0.05)

    def popen(
        self, command: Sequence[str], *, stdout: Output = subprocess.DEVNULL,
        stderr: Output = subprocess.DEVNULL, env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a command inside the namespace (`ip netns exec` execs it: the pid is the command's)."""
        process = subprocess.Popen(
            _die_with_us(["ip", "netns", "exec", self.name, *command]), stdout=stdout, stderr=stderr, env=env
        )
        self._processes.append(process)
        return process

    def run(
        self, command: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        command = ["ip", "netns", "exec", self.name, *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)

    def call(self, function: Callable[[], T]) -> T:
        """Run `function` on a worker thread inside the namespace: sockets it makes belong there."""
        if self._executor is None:
            path = NETNS_DIR / self.name
            self._executor = ThreadPoolExecutor(
                max_workers=4, thread_name_prefix=self.name, initializer=_enter_namespace, initargs=(path,)
            )
        return self._executor.submit(function).result()

    def connect(self, address: tuple[str, int], timeout: float = 5) -> socket.socket:
        """A TCP connection made from inside the namespace (usable from any thread afterwards)."""
        connection: socket.socket = self.call(lambda: socket.create_connection(address, timeout=timeout))
        return connection

    def redis_kwargs(self, tls: Mapping[str, Any]) -> dict[str, Any]:
        """redis-py options whose connections are opened inside the namespace (TLS settings baked in)."""
        namespace = self
        if not tls:
            class NamespaceConnection(Connection):
                def _connect(self) -> socket.socket:
                    connection: socket.socket = namespace.call(super()._connect)
                    return connection

            return {"connection_class": NamespaceConnection}
        # Redis(ssl=True) would replace the connection class: the SSL options go into the class instead.
        ssl_options = {k: v for k, v in tls.items() if k != "ssl"}

        class NamespaceSSLConnection(SSLConnection):
            def __init__(self, **kwargs: Any) -> None:
                super().__init__(**{**ssl_options, **kwargs})

            def _connect(self) -> socket.socket:
                connection: socket.socket = namespace.call(super()._connect)
                return connection

        return {"connection_class": NamespaceSSLConnection}

    def exists(self) -> bool:
        return (NETNS_DIR / self.name).exists()

    def close(self) -> None:
        """Stop our processes, then whatever else runs inside, then remove veth and namespace."""
        for process in reversed(self._processes):
            stop_process(process)
        self._processes.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if not self._created:
            return
        _kill_namespace_processes(self.name)
        _ip("link", "delete", self.host_link, check=False)  # gone with the namespace anyway
        _ip("netns", "delete", self.name, check=False)
        self._created = False
        if self.exists():
            warnings.warn(f"network namespace {self.name} could not be removed", RuntimeWarning, stacklevel=2)
