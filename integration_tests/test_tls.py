"""TLS against real TLS-only redis-servers, with certificates made by the tests (tls_certs.py).

verify-full with a CA from the config or from the trust store, mutual TLS with a plain and an
encrypted key, and each way the handshake can fail, asserted on the message check gives.
"""

from __future__ import annotations

import os
import ssl
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from destination_redis.config import SslVerifyFull
from destination_redis.connection import endpoint, probe
from destination_redis.tls import PEM_DIR_PREFIX, TlsSetupError, build_context
from integration_tests.connector_runs import (
    assert_check_succeeded,
    assert_written,
    check_cli,
    check_here,
    failed_message,
    write_cli,
)
from integration_tests.servers import RedisServer
from integration_tests.tls_certs import TlsMaterial


@pytest.fixture(scope="module")
def tls_server(tls: TlsMaterial) -> Iterator[RedisServer]:
    """Certificate for localhost and 127.0.0.1; no client certificate asked."""
    server = tls.start_server(tls.server)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mtls_server(tls: TlsMaterial) -> Iterator[RedisServer]:
    """tls-auth-clients yes: a client certificate signed by our CA is required."""
    server = tls.start_server(tls.server, auth_clients=True)
    yield server
    server.stop()


@pytest.fixture
def tls_client(tls_server: RedisServer) -> Iterator[redis.Redis]:
    with tls_server.flushed_client() as client:
        yield client


@pytest.fixture
def mtls_client(mtls_server: RedisServer) -> Iterator[redis.Redis]:
    with mtls_server.flushed_client() as client:
        yield client


def test_check_and_write_with_verify_full(
    tmp_path: Path, tls: TlsMaterial, tls_server: RedisServer, tls_client: redis.Redis
) -> None:
    config = tls.config(tls_server)
    message = assert_check_succeeded(check_cli(tmp_path, config))
    assert f"localhost:{tls_server.port}" in message
    assert_written(write_cli(tmp_path, config), tls_client)
    assert tls_client.keys("_airbyte_check:*") == []


def test_verify_full_checks_an_ip_address_too(tls: TlsMaterial, tls_server: RedisServer) -> None:
    status, message = check_here(tls.config(tls_server, host="127.0.0.1"))
    assert status == "SUCCEEDED", message


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain-key", "encrypted-key"])
def test_check_and_write_with_mutual_tls_leave_no_pem_file(
    tmp_path: Path, tls: TlsMaterial, mtls_server: RedisServer, mtls_client: redis.Redis, encrypted: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(private_tmp))  # where the connector's PEM files go
    config = tls.config(mtls_server, **tls.mtls(encrypted))
    assert_check_succeeded(check_cli(tmp_path, config))
    assert_written(write_cli(tmp_path, config), mtls_client)
    assert list(private_tmp.iterdir()) == []


def test_the_system_trust_store_is_used_when_no_ca_is_given(
    tmp_path: Path, tls: TlsMaterial, tls_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # OpenSSL's default trust store honours SSL_CERT_FILE: point it at our CA for the subprocess.
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))
    assert_check_succeeded(check_cli(tmp_path, tls.config(tls_server, ca_certificate=None)))


def test_a_0_1_4_config_with_ssl_on_and_mode_disable_still_verifies(
    tls: TlsMaterial, tls_server: RedisServer
) -> None:
    config = tls_server.config(host="localhost", ssl=True, ssl_mode={"mode": "disable"})
    failed_message(config, "TLS handshake failed", "system trust store", "ca_certificate")


def test_untrusted_ca(tls: TlsMaterial, tls_server: RedisServer) -> None:
    message = failed_message(
        tls.config(tls_server, ca_certificate=tls.unknown_ca_pem),
        f"TLS handshake failed at localhost:{tls_server.port}",
        "not signed by a CA trusted by ca_certificate", "Set ca_certificate",
    )
    assert "BEGIN CERTIFICATE" not in message


def test_untrusted_ca_without_ca_certificate(
    tls: TlsMaterial, tls_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", os.devnull)
    monkeypatch.setenv("SSL_CERT_DIR", os.devnull)
    failed_message(tls.config(tls_server, ca_certificate=None), "TLS handshake failed", "system trust store")


@pytest.fixture(scope="module")
def other_host_server(tls: TlsMaterial) -> Iterator[RedisServer]:
    """A valid certificate, but only for OTHER_HOST."""
    server = tls.start_server(tls.other_host)
    yield server
    server.stop()


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_host_name_mismatch(tls: TlsMaterial, other_host_server: RedisServer, host: str) -> None:
    failed_message(
        tls.config(other_host_server, host=host),
        f"TLS handshake failed at {host}:{other_host_server.port}", f"does not name '{host}'", "Set host",
    )


def test_expired_certificate(tls: TlsMaterial) -> None:
    server = tls.start_server(tls.expired)
    try:
        failed_message(tls.config(server), "TLS handshake failed", "certificate has expired", "Renew")
    finally:
        server.stop()


def test_client_certificate_missing_when_required(tls: TlsMaterial, mtls_server: RedisServer) -> None:
    failed_message(
        tls.config(mtls_server),
        f"TLS handshake failed at localhost:{mtls_server.port}", "requires a client certificate",
        "Set client_certificate and client_key",
    )


def test_client_certificate_refused(tls: TlsMaterial, mtls_server: RedisServer) -> None:
    foreign = {"client_certificate": tls.foreign_client.cert_pem, "client_key": tls.foreign_client.key_pem}
    failed_message(
        tls.config(mtls_server, **foreign), "TLS handshake failed", "refused the client certificate",
        "signed by a CA the server trusts",
    )


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"client_key_password": None}, "client_key is encrypted. Set client_key_password"),
        ({"client_key_password": "not-the-password"}, "client_key_password does not decrypt client_key"),
        ({"client_key": None}, "client_key is empty"),
        ({"client_certificate": None}, "client_certificate is empty"),
        ({"client_key": "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----"},
         "client_key is not a PEM private key"),
        ({"ca_certificate": "not a certificate"}, "ca_certificate is not a PEM certificate"),
    ],
    ids=["no-password", "wrong-password", "no-key", "no-certificate", "bad-key", "bad-ca"],
)
def test_unusable_tls_settings_are_named(
    tls: TlsMaterial, mtls_server: RedisServer, fields: dict[str, Any], expected: str
) -> None:
    config = tls.config(mtls_server, **{**tls.mtls(encrypted=True), **fields})
    failed_message(config, "TLS setup failed", expected)


def test_key_of_another_certificate(tls: TlsMaterial, mtls_server: RedisServer) -> None:
    mismatched = {"client_certificate": tls.client.cert_pem, "client_key": tls.foreign_client.key_pem}
    failed_message(tls.config(mtls_server, **mismatched), "TLS setup failed", "not the private key")


def test_tls_to_a_plain_port(
    tls: TlsMaterial, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(endpoint, "CONNECT_TIMEOUT_S", 1.0)  # the socket's timeout
    monkeypatch.setattr(probe, "CONNECT_TIMEOUT_S", 1.0)  # the message
    failed_message(
        tls.config(redis_server, host="127.0.0.1"),
        "TLS handshake failed", "did not answer the TLS handshake", "tls-port",
    )


def test_plain_to_a_tls_port(tls_server: RedisServer) -> None:
    failed_message(tls_server.config(host="localhost"), f"localhost:{tls_server.port}", "turn SSL on")


def _pem_dirs(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"{PEM_DIR_PREFIX}*"))


def test_pem_files_are_private_and_gone_after_loading(
    tmp_path: Path, tls: TlsMaterial, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[int, int, int]] = []
    original = ssl.SSLContext.load_cert_chain

    def spy(self: ssl.SSLContext, certfile: Any, keyfile: Any = None, password: Any = None) -> None:
        directory = Path(certfile).parent
        seen.append((
            stat.S_IMODE(directory.stat().st_mode),
            stat.S_IMODE(Path(certfile).stat().st_mode),
            stat.S_IMODE(Path(keyfile).stat().st_mode),
        ))
        assert directory.parent == tmp_path
        original(self, certfile, keyfile, password)

    monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", spy)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    build_context(SslVerifyFull.model_validate({"mode": "verify-full", "ca_certificate": tls.ca_pem,
                                                **tls.mtls(encrypted=True)}))
    assert seen == [(0o700, 0o600, 0o600)]
    assert _pem_dirs(tmp_path) == []
    # ...also when loading fails (a key that is not the certificate's)
    with pytest.raises(TlsSetupError):
        build_context(SslVerifyFull.model_validate({
            "mode": "verify-full", "client_certificate": tls.client.cert_pem,
            "client_key": tls.foreign_client.key_pem,
        }))
    assert len(seen) == 2
    assert _pem_dirs(tmp_path) == []

