"""The SSH tunnel through a real OpenSSH sshd (integration_tests/sshd.py) to real redis-servers.

Key auth with RSA, ECDSA and Ed25519 keys in OpenSSH, PEM and PKCS#8 formats; password auth; each
failing step named by check; TLS through the tunnel verified against the real Redis host name; and
the tunnel closed on every exit path.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from destination_redis.config import parse_config
from destination_redis.topology import open_router
from integration_tests.cli import catalog, lines, record, run_connector, stream_state
from integration_tests.connector_runs import (
    EMITTED,
    assert_check_succeeded,
    assert_written,
    check_cli,
    check_here,
    failed_message,
    write_cli,
)
from integration_tests.servers import RedisServer, free_port
from integration_tests.sshd import TUNNEL_USER, SshServer
from integration_tests.tls_certs import TlsMaterial

KEY_FORMATS = [
    "rsa-openssh", "rsa-pem", "rsa-pkcs8", "ecdsa-openssh", "ecdsa-pem", "ed25519-openssh", "ed25519-pkcs8",
]


@pytest.fixture(scope="module")
def sshd() -> Iterator[SshServer]:
    server = SshServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def behind() -> Iterator[RedisServer]:
    """The Redis behind the bastion (on loopback too: the bastion reaches it as 127.0.0.1)."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def behind_client(behind: RedisServer) -> Iterator[redis.Redis]:
    with behind.flushed_client() as client:
        yield client


@pytest.fixture(scope="module")
def tls_behind(tls: TlsMaterial) -> Iterator[RedisServer]:
    """A TLS Redis whose certificate names "localhost" only, not 127.0.0.1."""
    server = tls.start_server(tls.localhost_only)
    yield server
    server.stop()


def via(sshd: SshServer, server: RedisServer, tunnel: dict[str, object], **overrides: Any) -> dict[str, Any]:
    return server.config(tunnel_method=tunnel, **overrides)


def tunnel_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("ssh-tunnel")]


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.parametrize("key", KEY_FORMATS)
def test_check_writes_through_the_tunnel_with_each_key_type_and_format(
    sshd: SshServer, behind: RedisServer, key: str
) -> None:
    """check's probe writes and deletes keys: a real round trip of writes through the tunnel."""
    status, message = check_here(via(sshd, behind, sshd.tunnel_key(key)))
    assert status == "SUCCEEDED", message
    assert f"127.0.0.1:{behind.port} via SSH bastion 127.0.0.1:{sshd.port}" in message


@pytest.mark.parametrize("key", ["rsa-pem", "ecdsa-openssh", "ed25519-pkcs8"])
def test_write_through_the_tunnel_with_a_key(
    tmp_path: Path, sshd: SshServer, behind: RedisServer, behind_client: redis.Redis, key: str
) -> None:
    assert_written(write_cli(tmp_path, via(sshd, behind, sshd.tunnel_key(key))), behind_client)


def test_many_batches_in_flight_through_the_tunnel_arrive_whole_and_in_order(
    tmp_path: Path, sshd: SshServer, behind: RedisServer, behind_client: redis.Redis
) -> None:
    """45,000 records of ~1 KB (five batches, ~45 MB up, several batches in flight at once and
    their replies read later): every record arrives once under its id, byte for byte."""
    count = 45_000
    big = "é" * 500  # non-ASCII, ~1 KB of JSON per record: the upload spans many SSH packets
    messages = [record("users", {"id": i, "text": big}, emitted_at=EMITTED) for i in range(1, count + 1)]
    messages.append(stream_state("users", {"cursor": count}))
    result = run_connector(
        ["write", "--config", "{config}", "--catalog", "{catalog}"], tmp_path,
        config=via(sshd, behind, sshd.tunnel_key()), catalog=catalog(("users", "append")),
        stdin=lines(*messages),
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert [s["state"]["destinationStats"]["recordCount"] for s in result.states] == [count]
    assert behind_client.get(":users") == b"%d" % count
    pipe = behind_client.pipeline(transaction=False)
    for i in range(1, count + 1):
        pipe.hget(f":users:{i}", "_airbyte_data")
    expected = [json.dumps({"id": i, "text": big}, separators=(",", ":"), ensure_ascii=False).encode()
                for i in range(1, count + 1)]
    assert pipe.execute() == expected


def test_check_and_write_through_the_tunnel_with_a_password_then_the_session_ends(
    tmp_path: Path, sshd: SshServer, behind: RedisServer, behind_client: redis.Redis
) -> None:
    config = via(sshd, behind, sshd.tunnel_password())
    assert_check_succeeded(check_cli(tmp_path, config))
    assert_written(write_cli(tmp_path, config, count=500), behind_client, count=500)
    assert sshd.wait_for_sessions(0) == 0


def test_password_auth_by_keyboard_interactive(behind: RedisServer) -> None:
    """A bastion that offers keyboard-interactive (PAM) but not the password method."""
    bastion = SshServer(login_method="keyboard-interactive").start()
    try:
        status, message = check_here(via(bastion, behind, bastion.tunnel_password()))
        assert status == "SUCCEEDED", message
        # (a wrong password is refused as with the password method, after PAM's delay of seconds)
    finally:
        bastion.stop()


def test_wrong_key(sshd: SshServer, behind: RedisServer) -> None:
    failed_message(
        via(sshd, behind, sshd.tunnel_key(ssh_key=sshd.keys.unauthorized)),
        f"SSH auth failed at SSH bastion 127.0.0.1:{sshd.port}",
        f"refused the SSH key for user '{TUNNEL_USER}'", "authorized_keys",
    )


def test_wrong_password(sshd: SshServer, behind: RedisServer) -> None:
    wrong = "Not-the-password-5"
    message = failed_message(
        via(sshd, behind, sshd.tunnel_password(tunnel_user_password=wrong)),
        f"SSH auth failed at SSH bastion 127.0.0.1:{sshd.port}",
        f"refused the password for user '{TUNNEL_USER}'", "tunnel_user_password",
    )
    assert wrong not in message


def test_unknown_user(sshd: SshServer, behind: RedisServer) -> None:
    failed_message(
        via(sshd, behind, sshd.tunnel_key(tunnel_user="nobody-here")), "SSH auth failed", "'nobody-here'"
    )


def test_unreachable_bastion(behind: RedisServer, sshd: SshServer) -> None:
    port = free_port()
    failed_message(
        via(sshd, behind, sshd.tunnel_key(tunnel_port=port)),
        f"SSH connect failed at SSH bastion 127.0.0.1:{port}", "Connection refused",
        "tunnel_host and tunnel_port",
    )


def test_bastion_host_name_that_does_not_resolve(behind: RedisServer, sshd: SshServer) -> None:
    failed_message(
        via(sshd, behind, sshd.tunnel_key(tunnel_host="bastion.invalid")),
        "SSH connect failed at SSH bastion bastion.invalid:", "could not be resolved", "tunnel_host",
    )


def test_a_port_that_is_not_ssh(behind: RedisServer, sshd: SshServer) -> None:
    failed_message(
        via(sshd, behind, sshd.tunnel_key(tunnel_port=behind.port)),
        "SSH connect failed", "SSH handshake failed", "tunnel_port",
    )


def test_a_key_that_is_not_a_key(behind: RedisServer, sshd: SshServer) -> None:
    junk = "-----BEGIN OPENSSH PRIVATE KEY-----\nbm90IGEga2V5\n-----END OPENSSH PRIVATE KEY-----\n"
    message = failed_message(
        via(sshd, behind, sshd.tunnel_key(ssh_key=junk)), "SSH key could not be used", "OpenSSH or PEM"
    )
    assert "bm90IGEga2V5" not in message


def test_a_key_with_a_passphrase(behind: RedisServer, sshd: SshServer) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    locked = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    ).decode()
    failed_message(via(sshd, behind, sshd.tunnel_key(ssh_key=locked)), "protected by a passphrase")


def test_tunnel_to_a_redis_port_nothing_listens_on(sshd: SshServer, behind: RedisServer) -> None:
    port = free_port()
    failed_message(
        {"host": "127.0.0.1", "port": port, "tunnel_method": sshd.tunnel_key()},
        f"Tunnel forward failed at SSH bastion 127.0.0.1:{sshd.port}",
        f"could not open a connection to Redis at 127.0.0.1:{port}", "as the bastion sees them",
    )
    assert sshd.wait_for_sessions(0) == 0


def test_tls_through_the_tunnel_verifies_the_real_host_name(
    tmp_path: Path, sshd: SshServer, tls: TlsMaterial, tls_behind: RedisServer
) -> None:
    """The certificate names only "localhost"; the tunnel's local end is 127.0.0.1."""
    direct_by_ip = tls.config(tls_behind, host="127.0.0.1")
    failed_message(direct_by_ip, "does not name '127.0.0.1'")  # so a check against 127.0.0.1 would fail

    config = {**tls.config(tls_behind, host="localhost"), "tunnel_method": sshd.tunnel_key("ed25519-openssh")}
    message = assert_check_succeeded(check_cli(tmp_path, config))
    assert f"localhost:{tls_behind.port} via SSH bastion" in message
    client = tls_behind.client()
    try:
        client.flushall()
        assert_written(write_cli(tmp_path, config), client)
    finally:
        client.close()


def test_tls_through_the_tunnel_fails_on_a_name_mismatch(sshd: SshServer, tls: TlsMaterial) -> None:
    server = tls.start_server(tls.other_host)
    try:
        config = {**tls.config(server, host="localhost"), "tunnel_method": sshd.tunnel_password()}
        failed_message(
            config, f"TLS handshake failed at localhost:{server.port} via SSH bastion",
            "does not name 'localhost'",
        )
    finally:
        server.stop()


def _assert_closed(sshd: SshServer, local_port: int) -> None:
    assert refused(local_port)
    assert tunnel_threads() == []
    assert sshd.wait_for_sessions(0) == 0


def test_the_tunnel_is_closed_after_success(sshd: SshServer, behind: RedisServer) -> None:
    with open_router(parse_config(via(sshd, behind, sshd.tunnel_key()))) as router:
        (node,) = router.topology.primaries()
        local_port = node.endpoint.port
        assert router.run_on(node, (b"PING",)) == b"PONG"
        assert sshd.sessions() >= 1
        assert not refused(local_port)
    _assert_closed(sshd, local_port)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_the_tunnel_is_closed_after_an_error_or_an_interrupt(
    sshd: SshServer, behind: RedisServer, error: type[BaseException]
) -> None:
    ports: list[int] = []

    def use_then_fail() -> None:
        with open_router(parse_config(via(sshd, behind, sshd.tunnel_password()))) as router:
            (node,) = router.topology.primaries()
            ports.append(node.endpoint.port)
            router.run([(b"SET", b"some-key", b"1")])
            raise error("stop")

    with pytest.raises(error):
        use_then_fail()
    _assert_closed(sshd, ports[0])


def test_the_tunnel_is_closed_when_a_later_step_fails(sshd: SshServer) -> None:
    secured = RedisServer(password="Behind-pw-0c5e").start()  # noqa: S106
    try:
        failed_message(
            {**secured.config(password="wrong"), "tunnel_method": sshd.tunnel_key()},  # noqa: S106
            "AUTH failed", "via SSH bastion",
        )
    finally:
        secured.stop()
    assert tunnel_threads() == []
    assert sshd.wait_for_sessions(0) == 0
