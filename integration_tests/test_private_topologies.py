"""Private topologies, through the real CLI against real servers.

- A Redis Cluster on a network namespace's own 127.0.0.1 (topology_fixtures.py): the host cannot
  reach its nodes, only the bastion (an OpenSSH sshd inside the namespace) can. Every address the
  cluster announces gets its own forward over the one SSH session, opened as it is discovered, and
  all of them are closed when the command ends.
- TLS clusters: every node is verified against the name or address it is announced by (never the
  configured seed's name, never the tunnel's local end), with verify-full and mutual TLS.
- A Sentinel group behind the bastion.

Seeds are the configured host alone (no seed_nodes), so every other node really is discovered.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.cluster
from redis.crc import key_slot

from destination_redis.config import parse_config
from destination_redis.connection.endpoint import Login
from destination_redis.connection.node import open_node
from destination_redis.connection.reach import open_reach
from destination_redis.errors import ConnectStepError
from destination_redis.topology import open_router
from integration_tests.cli import Result, catalog, lines, record, run_connector, stream_state
from integration_tests.cluster import RedisCluster
from integration_tests.connector_runs import (
    assert_check_succeeded,
    check_cli,
    check_here,
    failed_message,
)
from integration_tests.netns import NetworkNamespace
from integration_tests.sentinel import SentinelGroup
from integration_tests.servers import TlsOptions, free_port
from integration_tests.sshd import SshServer
from integration_tests.tls_certs import TlsMaterial
from integration_tests.topology import Address, Node, pick_port
from integration_tests.topology_fixtures import CLUSTER_PASSWORD

EMITTED = 1_700_000_000_000
WRITE_ARGS = ["write", "--config", "{config}", "--catalog", "{catalog}"]
ANNOUNCED_NAME = "localhost"  # what the named clusters announce; their certificate names only this


# --- fixtures -----------------------------------------------------------------------------------


def check_then_write(tmp_path: Path, cluster: RedisCluster, config: dict[str, Any], node_name: str,
                     count: int) -> None:
    """check succeeds naming every primary as `node_name` (with `{port}`), then `count` records
    written by the CLI land on the primaries that own their slots, the state echoed with its count."""
    status, message = check_here(config)
    assert status == "SUCCEEDED", message
    for _, port in cluster.primaries():
        assert node_name.format(port=port) in message, message
    state = stream_state("users", {"cursor": count})
    result = write(tmp_path, config, catalog(("users", "append")),
                   *(record("users", {"id": i}, EMITTED) for i in range(1, count + 1)), state)
    assert result.states == [with_count(state, count)]
    assert_spread(cluster, ":users:*", record_keys(":users", range(1, count + 1)))


def _named_cluster(tls: TlsMaterial, **options: Any) -> RedisCluster:
    """A TLS cluster whose certificate names "localhost" only, and whose nodes announce themselves
    by that name (CLUSTER SLOTS and MOVED give "localhost", not 127.0.0.1)."""
    cluster = RedisCluster(tls=tls, tls_cert=tls.localhost_only, password=CLUSTER_PASSWORD, **options)
    for node in cluster.nodes:
        node.args += [
            "--cluster-announce-hostname", ANNOUNCED_NAME, "--cluster-preferred-endpoint-type", "hostname",
        ]
    return cluster


@pytest.fixture(scope="module")
def named_tls_cluster(tls: TlsMaterial) -> Iterator[RedisCluster]:
    """On the host; mutual TLS required (tls-auth-clients yes)."""
    with _named_cluster(tls, tls_auth_clients=True) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def private_named_tls_cluster(tls: TlsMaterial, private_netns: NetworkNamespace) -> Iterator[RedisCluster]:
    """Behind the bastion: the tunnel's local ends are 127.0.0.1, which its certificate does not name."""
    with _named_cluster(tls, runner=private_netns) as cluster:
        yield cluster


@pytest.fixture
def private(private_cluster: RedisCluster) -> RedisCluster:
    """The private cluster, emptied."""
    private_cluster.flushall()
    return private_cluster


# --- helpers ------------------------------------------------------------------------------------


def seed_only(cluster: RedisCluster, **overrides: object) -> dict[str, object]:
    """The cluster's config with its first node as the only seed: the rest must be discovered."""
    return cluster.config(topology={"mode": "cluster", "seed_nodes": []}, **overrides)


def bastion_at(bastion: SshServer) -> str:
    return f"via SSH bastion {bastion.listen_address}:{bastion.port}"


def assert_unreachable_from_host(address: Address) -> None:
    with pytest.raises(OSError, match=r"refused|unreachable"):
        socket.create_connection(address, timeout=3).close()


def tunnel_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("ssh-tunnel")]


def listening(port: int) -> bool:
    """Whether something accepts connections on the host's 127.0.0.1:port (a forward's local end)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return False
    return True


def set_preferred_endpoint(cluster: RedisCluster, kind: str) -> None:
    """What every node announces in CLUSTER SLOTS and MOVED: "hostname" or "ip" (a local setting)."""
    for node in cluster.nodes:
        node.harness_client().config_set("cluster-preferred-endpoint-type", kind)


def with_count(state_line: str, count: int) -> dict[str, Any]:
    """The state as the connector must echo it: as sent, with destinationStats.recordCount."""
    message: dict[str, Any] = json.loads(state_line)
    message["state"].setdefault("destinationStats", {})["recordCount"] = count
    return message


def write(tmp_path: Path, config: dict[str, object], configured: dict[str, Any], *messages: str) -> Result:
    result = run_connector(WRITE_ARGS, tmp_path, config=config, catalog=configured, stdin=lines(*messages))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert result.errors == [], result.errors
    assert "Traceback" not in output, output
    return result


def slot_owners(cluster: RedisCluster) -> list[Address]:
    """The primary serving each slot, read once (node_for_slot asks the cluster on every call)."""
    owners: list[Address | None] = [None] * 16384
    views = cluster.view()
    for primary in cluster.primaries():
        for first, last in views[cluster.node_id(primary)].slots:
            owners[first : last + 1] = [primary] * (last - first + 1)
    assert None not in owners
    return [owner for owner in owners if owner is not None]


def assert_spread(cluster: RedisCluster, pattern: str, expected: set[bytes]) -> None:
    """Exactly `expected` match `pattern`, spread over every primary, each on the owner of its slot."""
    owners = slot_owners(cluster)
    per_primary = cluster.keys_per_primary(pattern)
    assert len(per_primary) == 3
    for primary, keys in per_primary.items():
        assert keys, f"no key on primary {primary}"
        misplaced = [key for key in keys if owners[key_slot(key)] != primary]
        assert misplaced == [], f"on {primary} but not owned by it: {misplaced[:5]}"
    found = [key for keys in per_primary.values() for key in keys]
    assert len(found) == len(set(found))
    assert set(found) == expected


def record_keys(stream_key: str, ids: range) -> set[bytes]:
    return {f"{stream_key}:{i}".encode() for i in ids}


def assert_records(
    client: redis.cluster.RedisCluster, stream_key: str, records: list[dict[str, Any]], first_id: int = 1
) -> None:
    """stream_key:first_id.. hold exactly these records in order, the counter at the last id."""
    assert client.get(stream_key) == str(first_id + len(records) - 1).encode()
    pipe = client.pipeline(transaction=False)
    for offset in range(len(records)):
        pipe.hgetall(f"{stream_key}:{first_id + offset}")
    for offset, (data, stored) in enumerate(zip(records, pipe.execute(), strict=True)):
        record_id = str(first_id + offset).encode()
        assert stored == {
            b"_airbyte_ab_id": record_id,
            b"_airbyte_emitted_at": str(EMITTED).encode(),
            b"_airbyte_data": json.dumps(data, separators=(",", ":")).encode(),
        }, f"{stream_key}:{record_id.decode()}"


# --- a private cluster behind the bastion ----------------------------------------------------------


def test_the_host_cannot_reach_the_private_nodes(
    private_netns: NetworkNamespace, private_cluster: RedisCluster
) -> None:
    """Without the tunnel nothing gets through: what succeeds below went through the bastion."""
    for node in private_cluster.nodes:
        assert_unreachable_from_host(("127.0.0.1", node.port))
        assert_unreachable_from_host((private_netns.address, node.port))
    host, port = private_cluster.nodes[0].address
    failed_message(seed_only(private_cluster), f"TCP connect failed at {host}:{port}", "Connection refused")


def test_check_through_the_bastion_discovers_and_names_every_primary(
    tmp_path: Path, private_bastion: SshServer, private_cluster: RedisCluster
) -> None:
    config = seed_only(private_cluster, tunnel_method=private_bastion.tunnel_key())
    message = assert_check_succeeded(check_cli(tmp_path, config))
    assert "Redis Cluster of 3 primaries (Redis 7." in message, message
    for host, port in private_cluster.primaries():
        assert f"{host}:{port} {bastion_at(private_bastion)}" in message, message
    assert private_bastion.wait_for_sessions(0) == 0


def test_write_through_the_bastion_lands_on_every_primary_with_exact_states(
    tmp_path: Path, private_bastion: SshServer, private: RedisCluster
) -> None:
    """5,000 appended and 2,000 overwritten records, then a second sync: ids continue for append,
    the legacy overwrite deletes (SCAN of every primary) and restarts at 1."""
    config = seed_only(private, tunnel_method=private_bastion.tunnel_password())
    configured = catalog(("users", "append"), ("orders", "overwrite"))
    users = [{"id": i, "run": 1} for i in range(1, 5001)]
    orders = [{"id": i, "run": 1} for i in range(1, 2001)]
    first_users = stream_state("users", {"cursor": 2500})
    first_orders = stream_state("orders", {"cursor": 2000})
    last_users = stream_state("users", {"cursor": 5000})
    result = write(
        tmp_path, config, configured,
        *(record("users", data, EMITTED) for data in users[:2500]),
        *(record("orders", data, EMITTED) for data in orders),
        first_users, first_orders,
        *(record("users", data, EMITTED) for data in users[2500:]),
        last_users,
    )
    assert result.states == [with_count(first_users, 2500), with_count(first_orders, 2000),
                             with_count(last_users, 2500)]
    assert_spread(private, ":users:*", record_keys(":users", range(1, 5001)))
    assert_spread(private, ":orders:*", record_keys(":orders", range(1, 2001)))
    with private.client() as client:
        assert_records(client, ":users", users)
        assert_records(client, ":orders", orders)
    assert private_bastion.wait_for_sessions(0) == 0

    more_users = [{"id": i, "run": 2} for i in range(1, 1001)]
    new_orders = [{"id": i, "run": 2} for i in range(1, 1501)]
    users_state = stream_state("users", {"cursor": 6000})
    orders_state = stream_state("orders", {"cursor": 1500})
    result = write(
        tmp_path, config, configured,
        *(record("orders", data, EMITTED) for data in new_orders),
        *(record("users", data, EMITTED) for data in more_users),
        orders_state, users_state,
    )
    assert result.states == [with_count(orders_state, 1500), with_count(users_state, 1000)]
    assert_spread(private, ":users:*", record_keys(":users", range(1, 6001)))
    assert_spread(private, ":orders:*", record_keys(":orders", range(1, 1501)))
    with private.client() as client:
        assert_records(client, ":users", users + more_users)
        assert_records(client, ":orders", new_orders)
    assert private.keys_all(":users") + private.keys_all(":orders") == [b":users", b":orders"]
    assert private_bastion.wait_for_sessions(0) == 0


def test_every_forward_and_the_session_close_after_the_command(
    private_bastion: SshServer, private: RedisCluster
) -> None:
    """One local forward per announced primary, each listening during the command, none after."""
    config = parse_config(seed_only(private, tunnel_method=private_bastion.tunnel_key("rsa-pem")))
    with open_router(config) as router:
        nodes = router.topology.primaries()
        assert sorted(node.address for node in nodes) == sorted(private.primaries())
        local_ports = {node.endpoint.port for node in nodes}
        assert len(local_ports) == 3  # a forward of its own for each address
        for node in nodes:
            assert node.endpoint.host == "127.0.0.1"
            assert node.endpoint.server_hostname == node.address[0]
            assert bastion_at(private_bastion) in node.where
            assert router.run_on(node, (b"PING",)) == b"PONG"
            assert listening(node.endpoint.port)
        assert private_bastion.sessions() == 1
    for port in local_ports:
        assert not listening(port), f"the forward on 127.0.0.1:{port} is still listening"
    assert tunnel_threads() == []
    assert private_bastion.wait_for_sessions(0) == 0


def test_a_primary_promoted_mid_command_gets_a_forward_of_its_own(
    private_bastion: SshServer, private: RedisCluster
) -> None:
    """A failover announces an address the command had not met: it is opened through the bastion
    then, over the same session, and writes go on. (The cluster stays failed over: the fixture
    allows it, tests ask which node is primary.)"""
    config = parse_config(seed_only(private, tunnel_method=private_bastion.tunnel_key()))
    keys = [f"promoted:{n}".encode() for n in range(600)]
    with open_router(config) as router:
        before = {node.address for node in router.topology.primaries()}
        router.run([(b"SET", key, b"1") for key in keys[:300]])
        promoted = private.failover(private.node_for_key(keys[0]))
        assert promoted not in before
        router.run([(b"SET", key, b"2") for key in keys])
        node = next(node for node in router.topology.primaries() if node.address == promoted)
        assert bastion_at(private_bastion) in node.where
        assert node.endpoint.host == "127.0.0.1"
        assert node.endpoint.port not in {n.endpoint.port for n in router.topology.nodes() if n is not node}
        local_ports = {n.endpoint.port for n in router.topology.nodes()}
        assert private_bastion.sessions() == 1
    with private.client() as client:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
        assert pipe.execute() == [b"2"] * len(keys)
    for port in local_ports:
        assert not listening(port)
    assert tunnel_threads() == []
    assert private_bastion.wait_for_sessions(0) == 0


@pytest.mark.parametrize("use_tls", [False, True], ids=["plain", "tls"])
def test_a_node_gone_since_its_forward_opened_is_reported_as_out_of_the_bastions_reach(
    tls: TlsMaterial, private_netns: NetworkNamespace, private_bastion: SshServer, use_tls: bool
) -> None:
    """A node met earlier and gone since (a failover) is opened again through its old forward,
    whose listener still accepts: the bastion's failure to reach it must be told as such, and be
    retryable, as "TCP connect failed" is without a tunnel; not "did not answer with TLS"."""
    options = TlsOptions(tls.server.cert_file, tls.server.key_file, tls.ca_file, False) if use_tls else None
    server = Node(port=pick_port(), runner=private_netns, tls=options)
    server.launch()
    try:
        server.wait_ready(20)
        config: dict[str, object] = {
            "host": "127.0.0.1", "port": server.port, "tunnel_method": private_bastion.tunnel_key(),
        }
        if use_tls:
            config.update(ssl=True, ssl_mode={"mode": "verify-full", "ca_certificate": tls.ca_pem})
        login = Login(None, None)
        with open_reach(parse_config(config)) as reach:
            open_node(reach, "127.0.0.1", server.port, login).close()
            server.stop()
            with pytest.raises(ConnectStepError) as failure:
                open_node(reach, "127.0.0.1", server.port, login)
    finally:
        server.stop()
    message = failure.value.message
    assert message.startswith(f"Tunnel forward failed at SSH bastion {private_bastion.listen_address}:")
    assert f"could not open a connection to Redis at 127.0.0.1:{server.port}" in message, message
    assert failure.value.retryable
    assert tunnel_threads() == []
    assert private_bastion.wait_for_sessions(0) == 0


# --- TLS: every node verified against the name or address it is announced by ----------------------


def test_tls_cluster_check_and_write(tmp_path: Path, redis_cluster_tls: RedisCluster) -> None:
    cluster = redis_cluster_tls
    cluster.flushall()
    config = seed_only(cluster)
    message = assert_check_succeeded(check_cli(tmp_path, config))
    assert "Redis Cluster of 3 primaries" in message, message
    assert "over TLS" in message, message
    for host, port in cluster.primaries():
        assert f"{host}:{port}" in message
    users = [{"id": i} for i in range(1, 1001)]
    state = stream_state("users", {"cursor": 1000})
    result = write(tmp_path, config, catalog(("users", "append")),
                   *(record("users", data, EMITTED) for data in users), state)
    assert result.states == [with_count(state, 1000)]
    assert_spread(cluster, ":users:*", record_keys(":users", range(1, 1001)))
    with cluster.client() as client:
        assert_records(client, ":users", users)


def test_tls_cluster_with_a_ca_that_did_not_sign_the_nodes(
    tls: TlsMaterial, redis_cluster_tls: RedisCluster
) -> None:
    host, port = redis_cluster_tls.nodes[0].address
    foreign = {"mode": "verify-full", "ca_certificate": tls.unknown_ca_pem}
    failed_message(
        seed_only(redis_cluster_tls, ssl_mode=foreign),
        f"TLS handshake failed at {host}:{port}", "not signed by a CA trusted by ca_certificate",
    )


def test_nodes_are_verified_against_the_name_they_are_announced_by_with_mutual_tls(
    tmp_path: Path, tls: TlsMaterial, named_tls_cluster: RedisCluster
) -> None:
    """The certificate names "localhost" only; the cluster announces every node as "localhost"."""
    cluster = named_tls_cluster
    cluster.flushall()
    config = seed_only(cluster, host=ANNOUNCED_NAME, ssl_mode={
        "mode": "verify-full", "ca_certificate": tls.ca_pem, **tls.mtls(encrypted=True),
    })
    # check in process (the CLI costs ~2.5 s); the write is the CLI's
    check_then_write(tmp_path, cluster, config, f"{ANNOUNCED_NAME}:{{port}}", 300)


def test_mutual_tls_without_a_client_certificate_fails_naming_the_node(
    tls: TlsMaterial, named_tls_cluster: RedisCluster
) -> None:
    port = named_tls_cluster.nodes[0].port
    failed_message(
        seed_only(named_tls_cluster, host=ANNOUNCED_NAME),
        f"TLS handshake failed at {ANNOUNCED_NAME}:{port}", "client certificate",
    )


def test_a_certificate_that_does_not_name_the_announced_address_fails_naming_it(
    tls: TlsMaterial, named_tls_cluster: RedisCluster
) -> None:
    """The seed, configured as "localhost", passes; the nodes announced as 127.0.0.1 do not."""
    cluster = named_tls_cluster
    config = seed_only(cluster, host=ANNOUNCED_NAME, ssl_mode={
        "mode": "verify-full", "ca_certificate": tls.ca_pem, **tls.mtls(),
    })
    set_preferred_endpoint(cluster, "ip")
    try:
        message = failed_message(config, "TLS handshake failed at 127.0.0.1:", "does not name '127.0.0.1'")
    finally:
        set_preferred_endpoint(cluster, "hostname")
    named = message.split("TLS handshake failed at 127.0.0.1:", 1)[1].split(":", 1)[0]
    assert int(named) in {port for _, port in cluster.primaries()}, message


def test_tls_through_the_bastion_verifies_each_announced_name_not_the_local_end(
    tmp_path: Path, tls: TlsMaterial, private_bastion: SshServer, private_named_tls_cluster: RedisCluster
) -> None:
    """Through the tunnel TCP goes to 127.0.0.1 (the forwards), which the certificate does not name;
    each node is verified as "localhost", the name the cluster announces it by."""
    cluster = private_named_tls_cluster
    cluster.flushall()
    config = seed_only(cluster, host=ANNOUNCED_NAME, tunnel_method=private_bastion.tunnel_key())
    node_name = f"{ANNOUNCED_NAME}:{{port}} {bastion_at(private_bastion)}"
    check_then_write(tmp_path, cluster, config, node_name, 1000)

    set_preferred_endpoint(cluster, "ip")
    try:
        failed_message(config, "TLS handshake failed at 127.0.0.1:", bastion_at(private_bastion),
                       "does not name '127.0.0.1'")
    finally:
        set_preferred_endpoint(cluster, "hostname")
    assert tunnel_threads() == []
    assert private_bastion.wait_for_sessions(0) == 0


# --- Sentinel behind the bastion --------------------------------------------------------------------


def test_sentinel_group_behind_the_bastion(
    tmp_path: Path, private_bastion: SshServer, private_sentinel_group: SentinelGroup
) -> None:
    """The Sentinels and the master they name are all reached through the bastion."""
    group = private_sentinel_group
    config = group.config(tunnel_method=private_bastion.tunnel_key())
    master_host, master_port = group.master_address()
    with group.master_client() as client:
        client.flushall()
    status, message = check_here(config)  # in process: check through the CLI and bastion is tested above
    assert status == "SUCCEEDED", message
    assert (f"Sentinel master '{group.master_name}' at {master_host}:{master_port} "
            f"{bastion_at(private_bastion)}") in message, message
    state = stream_state("users", {"cursor": 1000})
    result = write(tmp_path, config, catalog(("users", "append")),
                   *(record("users", {"id": i}, EMITTED) for i in range(1, 1001)), state)
    assert result.states == [with_count(state, 1000)]
    with group.master_client() as client:
        assert client.get(":users") == b"1000"
        assert client.hget(":users:1000", "_airbyte_data") == b'{"id":1000}'
    assert private_bastion.wait_for_sessions(0) == 0


def test_a_sentinel_the_bastion_cannot_reach_is_passed_over(
    private_bastion: SshServer, private_sentinel_group: SentinelGroup
) -> None:
    """As without a tunnel, the next Sentinel is asked. (Naming a Sentinel for a message must not
    open its forward: through the tunnel that raises "Tunnel forward failed" outside the search.)"""
    group = private_sentinel_group
    gone = free_port()  # nothing listens there inside the namespace either (its ports are its own)
    status, message = check_here(group.config(port=gone, tunnel_method=private_bastion.tunnel_key()))
    assert status == "SUCCEEDED", message
