"""The topology harness: shared pieces of Redis Cluster, Sentinel and private-network set-ups.

- cluster.py: `RedisCluster`, 3 primaries + 3 replicas made with `redis-cli --cluster create`.
- sentinel.py: `SentinelGroup`, a primary, a replica and 3 Sentinels.
- netns.py: `NetworkNamespace`, where a topology runs unreachable from the host but for its bastion
  (sshd.py's `SshServer(runner=..., listen_address=...)`).
- topology_fixtures.py: the session fixtures built on them.

This module holds what they share: `Node` (a redis-server, data node or Sentinel, started through a
runner on its own port and temp dir), port picking that never hands out a port twice, and
`wait_until`, the one bounded wait loop: every wait ends with a message saying what was not reached.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from integration_tests.netns import HOST, Runner
from integration_tests.servers import RedisServer, TlsOptions, free_port

Address = tuple[str, int]
CLUSTER_BUS_OFFSET = 10000  # a node's cluster bus listens on port + 10000
_handed_out: set[int] = set()


class TopologyTimeout(AssertionError):
    """A topology did not reach the state a test needs in time (the message says which and why)."""


def wait_until(check: Callable[[], str | None], timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll `check` (None: reached; else what is still missing) until reached, at most `timeout` s.

    Redis and socket errors count as "not yet" (a node restarting, a failover in progress); any
    other exception (a server process died: `Node.check_alive`) ends the wait at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            reason = check()
        except (redis.RedisError, OSError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
        if reason is None:
            return
        if time.monotonic() > deadline:
            raise TopologyTimeout(f"{what}: not reached within {timeout:.0f} s; last seen: {reason}")
        time.sleep(interval)


class Stopwatch:
    """Records how long each phase of a start-up took (the fixtures' timings, for reports)."""

    def __init__(self, laps: dict[str, float]) -> None:
        self.laps = laps
        self._last = time.monotonic()

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps[name] = round(now - self._last, 2)
        self._last = now


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_port(cluster_bus: bool = False) -> int:
    """A free loopback port this process has not handed out before (free_port may repeat one).

    With `cluster_bus`, port + 10000 is a valid free port too: that is where the node's bus listens.
    """
    while True:
        port = free_port()
        if port in _handed_out:
            continue
        if cluster_bus and (port + CLUSTER_BUS_OFFSET > 65535 or not _bindable(port + CLUSTER_BUS_OFFSET)):
            continue
        _handed_out.add(port)
        return port


def parse_info(text: str) -> dict[str, str]:
    """`INFO`/`CLUSTER INFO` text as a dict (redis-py parses INFO, not every such reply)."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and not key.startswith("#"):
            fields[key.strip()] = value.strip()
    return fields


def text(reply: Any) -> str:
    """A bulk reply as text (the harness's clients do not decode)."""
    return reply.decode() if isinstance(reply, bytes) else str(reply)


@dataclass
class Node(RedisServer):
    """One redis-server of a topology: started through `runner` (host or namespace), on `bind_host`.

    `sentinel_conf` makes it a Sentinel: that text is its config file (Sentinel rewrites it, so it
    lives in the node's temp dir). RedisServer brings the port, temp dir, TLS options and `stop()`.
    """

    args: list[str] = field(default_factory=list)  # a list: topologies add options per node
    runner: Runner = HOST
    bind_host: str = "127.0.0.1"
    sentinel_conf: str | None = None
    cluster_bus: bool = False
    _own_client: redis.Redis | None = field(default=None, init=False, repr=False)

    @property
    def address(self) -> Address:
        return (self.bind_host, self.port)

    @property
    def log_path(self) -> str:
        return str(self.workdir / ("sentinel.log" if self.sentinel_conf is not None else "redis.log"))

    def _command(self) -> list[str]:
        if self.sentinel_conf is not None:
            conf = self.workdir / "sentinel.conf"
            conf.write_text(
                f"port {self.port}\nbind {self.bind_host}\ndir {self.workdir}\nlogfile {self.log_path}\n"
                + self.sentinel_conf
            )
            return [self.binary, str(conf), "--sentinel"]
        command = [
            self.binary, *self._listen_args(), "--bind", self.bind_host, "--dir", str(self.workdir),
            "--save", "", "--appendonly", "no", "--logfile", self.log_path, *self.args,
        ]
        if self.password:
            command += ["--requirepass", self.password]
        return command

    def launch(self) -> None:
        """Start the process without waiting for it (nodes of a topology start side by side)."""
        self._close_own_client()
        if self.cluster_bus:  # a relaunch on a new port must not find the old port's cluster config
            (self.workdir / "nodes.conf").unlink(missing_ok=True)
        self.process = self.runner.popen(self._command())

    def _close_own_client(self) -> None:
        if self._own_client is not None:
            self._own_client.close()
            self._own_client = None

    def harness_client(self) -> redis.Redis:
        """The node's client for the harness's own polling: one per node, not one per poll, and
        without redis-py's retries (their backoff would stretch every poll of a node not up yet)."""
        if self._own_client is None:
            self._own_client = self.client(retry=Retry(NoBackoff(), 0))
        return self._own_client

    def stop(self) -> None:
        self._close_own_client()
        super().stop()

    def log_tail(self, size: int = 2000) -> str:
        try:
            with open(self.log_path, errors="replace") as log:
                return log.read()[-size:]
        except OSError:
            return "(no log)"

    def check_alive(self) -> None:
        """Fail at once, with the server's log, if the process has exited (no point waiting)."""
        if self.process is None or self.process.poll() is not None:
            log = self.log_tail()
            raise RuntimeError(f"redis-server on {self.bind_host}:{self.port} is not running: {log}")

    def wait_ready(self, timeout: float = 20, retries: int = 3) -> None:
        """Wait until this very process answers (INFO's process_id: not some other server that took the
        port); if the port was taken meanwhile, relaunch on a fresh one, up to `retries` times."""
        deadline = time.monotonic() + timeout
        probe: redis.Redis | None = None
        try:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    log = self.log_tail()
                    if retries > 0 and "already in use" in log:
                        retries -= 1
                        self.port = pick_port(self.cluster_bus)
                        self.launch()
                        if probe is not None:
                            probe.close()
                            probe = None
                        continue
                    raise RuntimeError(f"redis-server exited on start ({self.bind_host}:{self.port}): {log}")
                try:
                    probe = probe or self.client(retry=Retry(NoBackoff(), 0), socket_timeout=2)
                    if probe.info("server").get("process_id") == self.process.pid:
                        return
                except (redis.RedisError, OSError):
                    pass
                if time.monotonic() > deadline:
                    log = self.log_tail()
                    raise RuntimeError(f"redis-server did not start on {self.bind_host}:{self.port}: {log}")
                time.sleep(0.02)
        finally:
            if probe is not None:
                probe.close()

    def start(self) -> Node:
        self.launch()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def tls_client_options(self) -> dict[str, Any]:
        """What redis-py needs to talk TLS to this node (unverified: the harness only talks to its own)."""
        if self.tls is None:
            return {}
        return tls_client_options(self.tls)

    def client(self, db: int = 0, **overrides: Any) -> redis.Redis:
        """A direct client to this node, connecting from where the node runs (caller closes it)."""
        options: dict[str, Any] = {
            "password": self.password, "db": db, "protocol": 2, "socket_timeout": 10,
            "socket_connect_timeout": 5, **overrides,
        }
        return make_client(self.runner, self.address, self.tls_client_options(), **options)

    def role(self) -> str:
        """"master", "slave" or "sentinel", from ROLE."""
        return text(self.harness_client().execute_command("ROLE")[0])


def make_client(runner: Runner, address: Address, tls: dict[str, Any], **options: Any) -> redis.Redis:
    """redis.Redis whose sockets `runner` opens (only a pool takes a connection class)."""
    where = runner.redis_kwargs(tls)
    if "connection_class" in where:
        pool = redis.ConnectionPool(host=address[0], port=address[1], **options, **where)
        return redis.Redis(connection_pool=pool)
    return redis.Redis(host=address[0], port=address[1], **options, **where)


def tls_client_options(tls: TlsOptions) -> dict[str, Any]:
    return {
        "ssl": True, "ssl_cert_reqs": "none", "ssl_check_hostname": False,
        "ssl_certfile": str(tls.client_cert_file) if tls.client_cert_file else None,
        "ssl_keyfile": str(tls.client_key_file) if tls.client_key_file else None,
    }


def start_all(nodes: Sequence[Node], timeout: float = 30) -> None:
    """Launch every node, then wait for each: side by side, so a topology starts in one server's time."""
    for node in nodes:
        node.launch()
    for node in nodes:
        node.wait_ready(timeout)


def stop_all(nodes: Iterable[Node]) -> None:
    """SIGTERM every node first, then reap each: they shut down side by side, not one after another."""
    nodes = list(nodes)
    for node in nodes:
        if node.process is not None and node.process.poll() is None:
            node.process.terminate()
    for node in nodes:
        node.stop()


def redis_cli_command(binary: str, tls: TlsOptions | None) -> list[str]:
    """redis-cli next to `binary` (the same Redis), with TLS arguments when the nodes serve TLS."""
    beside = binary.endswith("redis-server")
    command = [binary.removesuffix("redis-server") + "redis-cli" if beside else "redis-cli"]
    if tls is not None:
        command += ["--tls", "--cacert", str(tls.ca_file)]
        if tls.client_cert_file and tls.client_key_file:
            command += ["--cert", str(tls.client_cert_file), "--key", str(tls.client_key_file)]
    return command


def cli_env(password: str | None) -> dict[str, str] | None:
    """The password goes to redis-cli through REDISCLI_AUTH: not on its command line, no -a warning."""
    if not password:
        return None
    return {**os.environ, "REDISCLI_AUTH": password}


def check_completed(result: subprocess.CompletedProcess[str], what: str) -> str:
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-3000:]
        raise RuntimeError(f"{what} failed (exit {result.returncode}): {output}")
    return result.stdout
