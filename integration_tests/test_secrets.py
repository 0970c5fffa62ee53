"""No secret ever reaches stdout or stderr: check and write on the command line with every secret
set (password, ssh_key, tunnel_user_password, ca_certificate, client_certificate, client_key,
client_key_password), in runs that succeed and runs that fail at each layer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from integration_tests.cli import Result
from integration_tests.connector_runs import (
    assert_check_failed,
    assert_check_succeeded,
    assert_written,
    check_cli,
    write_cli,
)
from integration_tests.servers import RedisServer
from integration_tests.sshd import SshServer
from integration_tests.tls_certs import TlsMaterial

REDIS_PASSWORD = "Redis-pw-SECRET-9d4e1a"  # noqa: S105


@pytest.fixture(scope="module")
def server(tls: TlsMaterial) -> Iterator[RedisServer]:
    """Mutual TLS and a password: every Redis-side secret is needed to get in."""
    started = tls.start_server(tls.server, auth_clients=True, password=REDIS_PASSWORD)
    yield started
    started.stop()


@pytest.fixture(scope="module")
def sshd() -> Iterator[SshServer]:
    started = SshServer().start()
    yield started
    started.stop()


def every_secret(tls: TlsMaterial, server: RedisServer, sshd: SshServer, method: str) -> dict[str, Any]:
    """A config with all seven secrets; the tunnel block carries both the key and the password
    (the unused one is ignored, but the platform would still hand it over)."""
    tunnel = sshd.tunnel_key() if method == "key" else sshd.tunnel_password()
    tunnel.update(ssh_key=sshd.keys.private["rsa-pem"], tunnel_user_password=sshd.password)
    config = tls.config(server, **tls.mtls(encrypted=True))
    config.update(password=REDIS_PASSWORD, tunnel_method=tunnel)
    return config


def secrets_in(config: dict[str, Any]) -> list[str]:
    """The secret values, and every line of each PEM body (a leaked fragment is found too)."""
    mode, tunnel = config["ssl_mode"], config["tunnel_method"]
    values = [
        config["password"], tunnel["tunnel_user_password"], mode["client_key_password"],
        tunnel["ssh_key"], mode["ca_certificate"], mode["client_certificate"], mode["client_key"],
    ]
    found: list[str] = []
    for value in values:
        lines = [line.strip() for line in str(value).splitlines()]
        body = [line for line in lines if line and not line.startswith("-----")]
        found += [str(value)] + [line for line in body if len(line) >= 16] if body else [str(value)]
    return found


def assert_no_secret(result: Result, config: dict[str, Any]) -> None:
    """Whole output searched, including the stack_trace field of a TRACE error message."""
    output = result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    leaked = [secret for secret in secrets_in(config) if secret in output]
    assert leaked == [], f"secrets in the output: {leaked}"


@pytest.fixture
def client(server: RedisServer) -> Iterator[redis.Redis]:
    opened = server.client()
    opened.flushall()
    yield opened
    opened.close()


@pytest.mark.parametrize("method", ["key", "password"])
def test_a_successful_check_shows_no_secret(
    tmp_path: Path, tls: TlsMaterial, server: RedisServer, sshd: SshServer, method: str
) -> None:
    config = every_secret(tls, server, sshd, method)
    result = check_cli(tmp_path, config)
    assert_check_succeeded(result)
    assert_no_secret(result, config)


def test_a_successful_write_shows_no_secret(
    tmp_path: Path, tls: TlsMaterial, server: RedisServer, sshd: SshServer, client: redis.Redis
) -> None:
    config = every_secret(tls, server, sshd, "key")
    result = write_cli(tmp_path, config)
    assert_written(result, client)
    assert_no_secret(result, config)


@pytest.mark.parametrize(
    ("method", "change", "expected"),
    [
        ("key", {"password": "Wrong-redis-pw-SECRET-1"}, "AUTH failed"),
        ("password", {"tunnel_user_password": "Wrong-ssh-pw-SECRET-2"}, "SSH auth failed"),
        ("key", {"ssh_key": "junk-ssh-key-SECRET-3"}, "SSH key could not be used"),
        ("key", {"client_key_password": "Wrong-key-pw-SECRET-4"}, "TLS setup failed"),
        ("key", {"ca_certificate": "junk-ca-SECRET-5"}, "TLS setup failed"),
    ],
    ids=["redis-password", "ssh-password", "ssh-key", "client-key-password", "ca-certificate"],
)
def test_a_failing_check_shows_no_secret(
    tmp_path: Path, tls: TlsMaterial, server: RedisServer, sshd: SshServer,
    method: str, change: dict[str, str], expected: str,
) -> None:
    config = every_secret(tls, server, sshd, method)
    for field, value in change.items():
        for block in (config, config["tunnel_method"], config["ssl_mode"]):
            if field in block:
                block[field] = value
    result = check_cli(tmp_path, config)
    assert_check_failed(result, expected)
    assert_no_secret(result, config)


def test_a_failing_write_shows_no_secret(
    tmp_path: Path, tls: TlsMaterial, server: RedisServer, sshd: SshServer
) -> None:
    config = every_secret(tls, server, sshd, "password")
    config["password"] = "Wrong-redis-pw-SECRET-6"  # noqa: S105
    result = write_cli(tmp_path, config)
    assert result.returncode != 0
    assert any("AUTH failed" in error["message"] for error in result.errors), result.stdout
    assert_no_secret(result, config)


def test_the_leak_detector_finds_a_fragment_of_a_pem(
    tls: TlsMaterial, server: RedisServer, sshd: SshServer
) -> None:
    config = every_secret(tls, server, sshd, "key")
    secrets = secrets_in(config)
    assert len(secrets) > 7  # the seven values, and the body lines of the four PEMs
    fragment = config["ssl_mode"]["client_key"].splitlines()[2]
    leaked = Result(0, f'{{"message": "key {fragment}"}}', "")
    with pytest.raises(AssertionError, match="secrets in the output"):
        assert_no_secret(leaked, config)
