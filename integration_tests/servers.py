"""Real redis-server processes for the tests: free loopback ports, private dirs, always stopped."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

REDIS_SERVER = os.environ.get("REDIS_SERVER_BIN") or shutil.which("redis-server") or "/usr/bin/redis-server"


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """Terminate a server process the tests started (kill it if it lingers), and reap it."""
    if process and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class TlsOptions:
    """Serve TLS only (`--port 0 --tls-port P`) with these files; optionally require client certs."""

    cert_file: Path
    key_file: Path
    ca_file: Path
    auth_clients: bool = False
    # What the harness's own client presents (needed when auth_clients is on).
    client_cert_file: Path | None = None
    client_key_file: Path | None = None


@dataclass
class RedisServer:
    """One redis-server on 127.0.0.1; `client()` talks to it directly, without the connector."""

    binary: str = REDIS_SERVER
    args: Sequence[str] = ()
    port: int = field(default_factory=free_port)
    password: str | None = None
    process: subprocess.Popen[bytes] | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="redis-test-")))
    tls: TlsOptions | None = None

    def _listen_args(self) -> list[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        return [
            "--port", "0",
            "--tls-port", str(self.port),
            "--tls-cert-file", str(self.tls.cert_file),
            "--tls-key-file", str(self.tls.key_file),
            "--tls-ca-cert-file", str(self.tls.ca_file),
            "--tls-auth-clients", "yes" if self.tls.auth_clients else "no",
        ]

    def start(self) -> RedisServer:
        command = [
            self.binary,
            *self._listen_args(),
            "--bind", "127.0.0.1",
            "--dir", str(self.workdir),
            "--save", "",
            "--appendonly", "no",
            "--logfile", str(self.workdir / "redis.log"),
            *self.args,
        ]
        if self.password:
            command += ["--requirepass", self.password]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client().ping():
                    return self
            except (redis.ConnectionError, redis.ResponseError):
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.workdir / "redis.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}: {log}")
            time.sleep(0.02)

    def client(self, db: int = 0) -> redis.Redis:
        tls: dict[str, Any] = {}
        if self.tls is not None:
            # The harness only needs to talk to its own server: TLS without verification.
            tls = {
                "ssl": True, "ssl_cert_reqs": "none", "ssl_check_hostname": False,
                "ssl_certfile": str(self.tls.client_cert_file) if self.tls.client_cert_file else None,
                "ssl_keyfile": str(self.tls.client_key_file) if self.tls.client_key_file else None,
            }
        return redis.Redis(
            host="127.0.0.1", port=self.port, password=self.password, db=db, protocol=2,
            socket_timeout=10, **tls,
        )

    @contextmanager
    def flushed_client(self) -> Iterator[redis.Redis]:
        """A direct client to an emptied server, closed afterwards: the body of the client fixtures."""
        client = self.client()
        client.flushall()
        try:
            yield client
        finally:
            client.close()

    def stop(self) -> None:
        stop_process(self.process)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def config(self, **overrides: object) -> dict[str, object]:
        """A connector config for this server."""
        config: dict[str, object] = {"host": "127.0.0.1", "port": self.port}
        if self.password:
            config["password"] = self.password
        config.update(overrides)
        return config
