"""Session fixtures of the topology harness, imported by conftest.py.

Each topology starts once per session (they take seconds, not milliseconds) and is stopped at the
end however the session ends. Tests may fail a topology over or reshard it: they must not assume
which node is primary or owns which slots, only ask (`primaries()`, `node_for_slot()`, ...).
A test that breaks a topology (kills a node, ...) makes its own instead.

- `redis_cluster`: 3 primaries + 3 replicas, no password; `cluster_client` empties it first.
- `redis_cluster_tls`: the same serving TLS only (bus and replication too), with a password.
- `sentinel_group`: primary + replica + 3 Sentinels, data-node password and Sentinel password.
- `private_netns`: a network namespace; `private_bastion` (sshd on its veth address, port 22),
  `private_cluster` (a cluster on its own 127.0.0.1) and `private_sentinel_group` run inside it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis.cluster

from integration_tests.cluster import RedisCluster
from integration_tests.netns import NetworkNamespace
from integration_tests.sentinel import SentinelGroup
from integration_tests.sshd import SshServer
from integration_tests.tls_certs import TlsMaterial

CLUSTER_PASSWORD = "Cluster-pw-SECRET-91d2"  # noqa: S105
SENTINEL_DATA_PASSWORD = "Sentinel-data-pw-SECRET-7c1e"  # noqa: S105
SENTINEL_PASSWORD = "Sentinel-own-pw-SECRET-2b44"  # noqa: S105
BASTION_PORT = 22  # free inside the namespace: the tunnel's default port works there


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    with RedisCluster() as cluster:
        yield cluster


@pytest.fixture
def cluster_client(redis_cluster: RedisCluster) -> Iterator[redis.cluster.RedisCluster]:
    """A cluster client to an emptied `redis_cluster`, closed afterwards."""
    redis_cluster.flushall()
    client = redis_cluster.client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_cluster_tls(tls: TlsMaterial) -> Iterator[RedisCluster]:
    with RedisCluster(tls=tls, password=CLUSTER_PASSWORD) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def sentinel_group() -> Iterator[SentinelGroup]:
    with SentinelGroup(password=SENTINEL_DATA_PASSWORD, sentinel_password=SENTINEL_PASSWORD) as group:
        yield group


@pytest.fixture(scope="session")
def private_netns() -> Iterator[NetworkNamespace]:
    with NetworkNamespace() as netns:
        yield netns


@pytest.fixture(scope="session")
def private_bastion(private_netns: NetworkNamespace) -> Iterator[SshServer]:
    """sshd inside the namespace, on its veth address: the host's one way in."""
    server = SshServer(runner=private_netns, listen_address=private_netns.address, port=BASTION_PORT).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def private_cluster(private_netns: NetworkNamespace) -> Iterator[RedisCluster]:
    """A cluster on the namespace's own 127.0.0.1: only the bastion (or the namespace) reaches it."""
    with RedisCluster(runner=private_netns) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def private_sentinel_group(private_netns: NetworkNamespace) -> Iterator[SentinelGroup]:
    with SentinelGroup(runner=private_netns) as group:
        yield group
