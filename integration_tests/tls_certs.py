"""Certificates for the TLS tests, made fresh by each test session with trustme and cryptography.

One CA signs everything the servers and the connector should trust; a second, unrelated CA stands
for "a CA the client does not know". The PEM texts go into connector configs; the files are what
redis-server needs on disk.
"""

from __future__ import annotations

import datetime
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
from cryptography.hazmat.primitives import serialization

from integration_tests.servers import RedisServer, TlsOptions

CLIENT_KEY_PASSWORD = "kiwi-Passphrase-for-the-client-key-7"  # noqa: S105  # test_secrets greps for it
OTHER_HOST = "redis.example.internal"


@dataclass(frozen=True)
class ServerCert:
    """A server certificate and its key, as files for redis-server."""

    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class ClientCert:
    """A client certificate for mutual TLS: PEM texts for the config, files for the test harness."""

    cert_pem: str
    key_pem: str
    encrypted_key_pem: str  # the same key, encrypted with CLIENT_KEY_PASSWORD
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class TlsMaterial:
    directory: Path
    ca_pem: str  # the CA that signed every certificate below
    ca_file: Path
    unknown_ca_pem: str  # a CA that signed nothing here
    server: ServerCert  # valid for "localhost" and 127.0.0.1
    expired: ServerCert  # valid names, expired yesterday
    other_host: ServerCert  # valid, but only for OTHER_HOST
    localhost_only: ServerCert  # valid for "localhost", not for 127.0.0.1 (the tunnel's local end)
    client: ClientCert
    foreign_client: ClientCert  # signed by the unknown CA: a server must refuse it

    def start_server(self, cert: ServerCert, auth_clients: bool = False, **options: Any) -> RedisServer:
        """A TLS-only redis-server with this certificate; the harness presents the client cert."""
        tls = TlsOptions(
            cert.cert_file, cert.key_file, self.ca_file, auth_clients,
            client_cert_file=self.client.cert_file, client_key_file=self.client.key_file,
        )
        return RedisServer(tls=tls, **options).start()

    def config(self, server: RedisServer, host: str = "localhost", **ssl_mode: object) -> dict[str, Any]:
        """A connector config for a TLS server: verify-full against our CA unless told otherwise."""
        mode: dict[str, object] = {"mode": "verify-full", "ca_certificate": self.ca_pem}
        mode.update(ssl_mode)
        return server.config(host=host, ssl=True, ssl_mode={k: v for k, v in mode.items() if v is not None})

    def mtls(self, encrypted: bool = False) -> dict[str, Any]:
        """The ssl_mode fields of mutual TLS with our client certificate."""
        if encrypted:
            return {
                "client_certificate": self.client.cert_pem, "client_key": self.client.encrypted_key_pem,
                "client_key_password": CLIENT_KEY_PASSWORD,
            }
        return {"client_certificate": self.client.cert_pem, "client_key": self.client.key_pem}


def make_tls_material(directory: Path | None = None) -> TlsMaterial:
    directory = directory or Path(tempfile.mkdtemp(prefix="redis-tls-"))
    ca = trustme.CA(organization_name="destination-redis tests")
    unknown_ca = trustme.CA(organization_name="a CA nobody trusts")
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    def server_cert(name: str, leaf: trustme.LeafCert) -> ServerCert:
        cert_file, key_file = directory / f"{name}.crt", directory / f"{name}.key"
        cert_file.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key_file))
        return ServerCert(cert_file, key_file)

    now = datetime.datetime.now(datetime.UTC)
    server = server_cert("server", ca.issue_cert("localhost", "127.0.0.1"))
    expired = server_cert(
        "expired",
        ca.issue_cert(
            "localhost", "127.0.0.1",
            not_before=now - datetime.timedelta(days=30), not_after=now - datetime.timedelta(days=1),
        ),
    )
    other_host = server_cert("other-host", ca.issue_cert(OTHER_HOST))
    localhost_only = server_cert("localhost-only", ca.issue_cert("localhost"))

    client = _client_cert(directory, "client", ca)
    foreign_client = _client_cert(directory, "foreign-client", unknown_ca)
    for path in directory.iterdir():
        path.chmod(0o600)
    return TlsMaterial(
        directory=directory,
        ca_pem=ca.cert_pem.bytes().decode(),
        ca_file=ca_file,
        unknown_ca_pem=unknown_ca.cert_pem.bytes().decode(),
        server=server,
        expired=expired,
        other_host=other_host,
        localhost_only=localhost_only,
        client=client,
        foreign_client=foreign_client,
    )


def _client_cert(directory: Path, name: str, ca: trustme.CA) -> ClientCert:
    leaf = ca.issue_cert(f"{name}@example.test", common_name=name)
    key_pem = leaf.private_key_pem.bytes()
    key = serialization.load_pem_private_key(key_pem, password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(CLIENT_KEY_PASSWORD.encode()),
    )
    cert_pem = b"".join(pem.bytes() for pem in leaf.cert_chain_pems)
    client = ClientCert(
        cert_pem=cert_pem.decode(),
        key_pem=key_pem.decode(),
        encrypted_key_pem=encrypted.decode(),
        cert_file=directory / f"{name}.crt",
        key_file=directory / f"{name}.key",
    )
    client.cert_file.write_bytes(cert_pem)
    client.key_file.write_bytes(key_pem)
    return client
