"""Smoke tests of the topology harness: each topology really is what the connector tests assume.

No connector code here: the harness's own redis-py clients, redis-cli, raw sockets and paramiko.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import paramiko
import pytest
import redis
import redis.cluster
import redis.sentinel
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from integration_tests.cluster import SLOTS, RedisCluster
from integration_tests.netns import PREFIX, NetworkNamespace
from integration_tests.sentinel import SentinelGroup
from integration_tests.sshd import TUNNEL_USER, SshServer
from integration_tests.topology import Address, tls_client_options
from integration_tests.topology_fixtures import CLUSTER_PASSWORD, SENTINEL_DATA_PASSWORD, SENTINEL_PASSWORD

# One attempt, no backoff: a refusal is what these tests expect, redis-py's retries only add seconds.
_ONCE: dict[str, Any] = {"protocol": 2, "socket_timeout": 5, "retry": Retry(NoBackoff(), 0)}


def _write_keys(client: redis.cluster.RedisCluster, prefix: str, count: int) -> list[bytes]:
    keys = [f"{prefix}:{n}".encode() for n in range(count)]
    for key in keys:
        client.set(key, b"v")
    return sorted(keys)


def _assert_spread(cluster: RedisCluster, keys: Sequence[bytes]) -> None:
    """Every primary holds keys, each one on the primary that owns its slot, none twice."""
    per_primary = cluster.keys_per_primary()
    assert len(per_primary) == 3
    for primary, held in per_primary.items():
        assert held, f"no key on {primary}"
        assert {cluster.node_for_slot(key_slot(key)) for key in held} == {primary}
    assert cluster.keys_all() == sorted(keys)


# --- the cluster ------------------------------------------------------------------------------------


def test_cluster_serves_writes_on_every_primary(
    redis_cluster: RedisCluster, cluster_client: redis.cluster.RedisCluster
) -> None:
    primaries = redis_cluster.primaries()
    assert len(primaries) == 3
    assert len(redis_cluster.replicas()) == 3
    assert sum(redis_cluster.slot_count(p) for p in primaries) == SLOTS
    assert {redis_cluster.node_for_slot(s) for s in (0, SLOTS // 2, SLOTS - 1)} == set(primaries)
    keys = _write_keys(cluster_client, "spread", 300)
    _assert_spread(redis_cluster, keys)


def test_cluster_failover_swaps_roles(
    redis_cluster: RedisCluster, cluster_client: redis.cluster.RedisCluster
) -> None:
    keys = _write_keys(cluster_client, "failover", 100)
    primary = redis_cluster.node_for_slot(0)
    replica = redis_cluster.replica_of(primary)

    assert redis_cluster.failover(primary) == replica

    assert redis_cluster.node(replica).role() == "master"
    assert redis_cluster.node(primary).role() == "slave"
    assert redis_cluster.node_for_slot(0) == replica
    assert redis_cluster.replica_of(replica) == primary
    assert redis_cluster.keys_all() == keys  # a manual failover loses nothing
    with redis_cluster.client() as fresh:
        assert fresh.set("failover:after", b"v")


def test_cluster_reshard_moves_slots_while_writing(
    redis_cluster: RedisCluster, cluster_client: redis.cluster.RedisCluster
) -> None:
    keys = _write_keys(cluster_client, "before", 200)
    source = redis_cluster.node_for_slot(0)
    target = next(p for p in redis_cluster.primaries() if p != source)
    counts = redis_cluster.slot_count(source), redis_cluster.slot_count(target)

    job = redis_cluster.reshard(100, source, target)
    written = 0
    while not job.done():  # what a sync does meanwhile: redis-py follows MOVED and ASK
        key = f"during:{written}".encode()
        cluster_client.set(key, b"v")
        keys.append(key)
        written += 1
    job.wait()

    assert redis_cluster.slot_count(source) == counts[0] - 100
    assert redis_cluster.slot_count(target) == counts[1] + 100
    assert redis_cluster.node_for_slot(0) == target
    assert written > 0
    assert redis_cluster.keys_all() == sorted(keys)


def test_tls_cluster_answers_over_tls_only(redis_cluster_tls: RedisCluster) -> None:
    cluster = redis_cluster_tls
    cluster.flushall()
    with cluster.client() as client:
        keys = _write_keys(client, "tls", 300)
    _assert_spread(cluster, keys)
    for node in cluster.nodes:
        host, port = node.address
        with pytest.raises(redis.ConnectionError):
            redis.Redis(host=host, port=port, password=CLUSTER_PASSWORD, **_ONCE).ping()
        with node.client() as tls_client:
            assert tls_client.config_get("port") == {"port": "0"}
            settings = tls_client.config_get("tls-*")
            assert (settings["tls-cluster"], settings["tls-replication"]) == ("yes", "yes")
        assert node.tls is not None
        no_password = redis.Redis(host=host, port=port, **_ONCE, **tls_client_options(node.tls))
        with no_password, pytest.raises(redis.AuthenticationError):
            no_password.get("tls:0")


# --- Sentinel -------------------------------------------------------------------------------------


def test_sentinel_group_reports_the_master_and_fails_over(sentinel_group: SentinelGroup) -> None:
    group = sentinel_group
    master = group.master_address()
    assert set(group.reported_masters()) == {master}
    assert group.node(master).role() == "master"
    with group.master_client() as client:
        client.set("sentinel:before", b"v")
        assert client.wait(1, 5000) == 1

    new = group.failover()

    assert new != master
    assert new in [node.address for node in group.data_nodes]
    assert group.node(new).role() == "master"
    assert group.node(master).role() == "slave"
    with group.master_client() as client:
        assert client.get("sentinel:before") == b"v"
        assert client.set("sentinel:after", b"v")
    # What a Sentinel client does: ask a Sentinel (with its own password) for the master.
    sentinel = redis.sentinel.Sentinel(
        group.sentinel_addresses(), sentinel_kwargs={"password": SENTINEL_PASSWORD},
        password=SENTINEL_DATA_PASSWORD, socket_timeout=5,
    )
    assert sentinel.discover_master(group.master_name) == new
    with sentinel.master_for(group.master_name) as discovered:
        assert discovered.get("sentinel:after") == b"v"
    host, port = group.sentinel_addresses()[0]
    with redis.Redis(host=host, port=port, **_ONCE) as no_password, pytest.raises(
        redis.AuthenticationError
    ):
        no_password.execute_command("SENTINEL", "MASTERS")


# --- the private network --------------------------------------------------------------------------


def _refused_from_host(address: Address) -> None:
    with pytest.raises(OSError, match=r"refused|unreachable"):
        socket.create_connection(address, timeout=3).close()


def test_private_cluster_answers_inside_the_namespace_only(
    private_netns: NetworkNamespace, private_cluster: RedisCluster
) -> None:
    host, port = private_cluster.nodes[0].address
    inside = private_netns.run(["redis-cli", "-h", host, "-p", str(port), "cluster", "info"], timeout=10)
    assert "cluster_state:ok" in inside.stdout
    private_cluster.flushall()
    with private_cluster.client() as client:  # its sockets are made inside the namespace
        keys = _write_keys(client, "private", 300)
    _assert_spread(private_cluster, keys)
    for node in private_cluster.nodes:
        _refused_from_host(("127.0.0.1", node.port))  # the host's loopback is not the namespace's
        _refused_from_host((private_netns.address, node.port))  # bound to the namespace's 127.0.0.1 only


def test_private_cluster_through_the_bastion(
    private_bastion: SshServer, private_cluster: RedisCluster
) -> None:
    private_cluster.flushall()
    announced = [node.address for node in private_cluster.nodes]
    with ssh_forwards(private_bastion, announced) as local:
        host, port = local[announced[0]]
        with redis.cluster.RedisCluster(
            host=host, port=port, protocol=2, socket_timeout=10,
            address_remap=lambda address: local.get(address, address),
        ) as client:
            keys = _write_keys(client, "bastion", 300)
            assert client.get(keys[0]) == b"v"
    _assert_spread(private_cluster, keys)


def test_private_sentinel_group_answers_inside_the_namespace_only(
    private_netns: NetworkNamespace, private_sentinel_group: SentinelGroup
) -> None:
    group = private_sentinel_group
    master = group.master_address()  # asked from inside the namespace
    assert group.node(master).role() == "master"
    host, port = group.sentinel_addresses()[0]
    inside = private_netns.run(
        ["redis-cli", "-h", host, "-p", str(port), "sentinel", "get-master-addr-by-name", group.master_name],
        timeout=10,
    )
    assert inside.stdout.split() == [master[0], str(master[1])]
    for node in [*group.sentinels, *group.data_nodes]:
        _refused_from_host(("127.0.0.1", node.port))


def test_namespace_has_only_its_link_to_the_host(private_netns: NetworkNamespace) -> None:
    routes = private_netns.run(["ip", "-4", "route", "show", "table", "all"], timeout=10).stdout
    assert "default" not in routes
    outside = private_netns.run(["ip", "route", "get", "192.0.2.1"], timeout=10)
    assert outside.returncode != 0
    assert "unreachable" in outside.stderr
    listener = socket.create_server((private_netns.host_address, 0))  # the host's end of the veth
    with listener, private_netns.connect(listener.getsockname()):
        accepted, peer = listener.accept()
        accepted.close()
    assert peer[0] == private_netns.address


def test_namespace_is_removed_however_the_body_ends() -> None:
    leftover = _leftover_namespace()
    netns = NetworkNamespace()
    with pytest.raises(RuntimeError, match="boom"), netns:  # noqa: PT012
        assert not os.path.exists(f"/run/netns/{leftover}"), "the dead run's namespace was not cleaned up"
        sleeper = netns.popen(["sleep", "60"])
        raise RuntimeError("boom")
    assert sleeper.poll() is not None
    assert not netns.exists()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert f"{netns.host_link}:" not in links
    assert f"{netns.host_link}@" not in links


def _leftover_namespace() -> str:
    """A namespace named as a crashed run's: its pid no longer exists."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    name = f"{PREFIX}-{dead.pid}-0"
    subprocess.run(["ip", "netns", "add", name], check=True)
    return name


# --- a local port forward through the bastion (what the connector's tunnel does, in a few lines) ----


@contextmanager
def ssh_forwards(bastion: SshServer, targets: Sequence[Address]) -> Iterator[dict[Address, Address]]:
    """One local 127.0.0.1 port per target, each forwarded through the bastion (direct-tcpip)."""
    transport = paramiko.Transport((bastion.listen_address, bastion.port))
    transport.connect(username=TUNNEL_USER, password=bastion.password)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    listeners: list[socket.socket] = []
    local: dict[Address, Address] = {}
    try:
        for target in targets:
            listener = socket.create_server(("127.0.0.1", 0))
            listener.settimeout(0.2)
            listeners.append(listener)
            local[target] = ("127.0.0.1", listener.getsockname()[1])
            thread = threading.Thread(target=_accept, args=(listener, transport, target, stop, threads))
            thread.start()
            threads.append(thread)
        yield local
    finally:
        stop.set()  # every thread ends within its 0.2 s poll; the transport closes after them
        for thread in list(threads):
            thread.join(5)
        for listener in listeners:
            listener.close()
        transport.close()


def _accept(
    listener: socket.socket, transport: paramiko.Transport, target: Address, stop: threading.Event,
    threads: list[threading.Thread],
) -> None:
    while not stop.is_set():
        try:
            connection, peer = listener.accept()
        except TimeoutError:
            continue
        channel = transport.open_channel("direct-tcpip", target, peer)
        thread = threading.Thread(target=_pump, args=(connection, channel, stop))
        thread.start()
        threads.append(thread)


def _pump(connection: socket.socket, channel: paramiko.Channel, stop: threading.Event) -> None:
    """Copy bytes both ways until either side closes (a reset counts as closing)."""
    try:
        while not stop.is_set():
            readable, _, _ = select.select([connection, channel], [], [], 0.2)
            for source, sink in ((connection, channel), (channel, connection)):
                if source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    sink.sendall(data)
    except (OSError, EOFError):
        return
    finally:
        connection.close()
        channel.close()
