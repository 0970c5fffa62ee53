"""A real Redis Cluster for the tests: 3 primaries + 3 replicas of redis-server, always stopped.

Made the way operators make one (`redis-cli --cluster create ... --cluster-replicas 1`), and moved
the way they move one (`CLUSTER FAILOVER` on a replica, `redis-cli --cluster reshard`), so the
connector meets MOVED, ASK and role changes exactly as Redis produces them. Every change waits
until the cluster is stable again: cluster_state:ok on every node, every node agreeing on who owns
which slots, no slot half-migrated, every replica in sync.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis
import redis.cluster
from redis.crc import key_slot

from integration_tests.netns import HOST, Runner
from integration_tests.servers import REDIS_SERVER, TlsOptions, stop_process
from integration_tests.tls_certs import ServerCert, TlsMaterial
from integration_tests.topology import (
    Address,
    Node,
    Stopwatch,
    TopologyTimeout,
    check_completed,
    cli_env,
    parse_info,
    pick_port,
    redis_cli_command,
    start_all,
    stop_all,
    text,
    tls_client_options,
    wait_until,
)

SLOTS = 16384


@dataclass(frozen=True)
class NodeView:
    """One line of CLUSTER NODES, as one node sees another."""

    id: str
    flags: frozenset[str]
    master_id: str | None
    slots: tuple[tuple[int, int], ...]  # stable ranges; [slot->-id] migration marks kept apart
    open_slots: tuple[str, ...]

    @property
    def is_primary(self) -> bool:
        return "master" in self.flags


def parse_cluster_nodes(reply: str) -> list[NodeView]:
    views = []
    for line in reply.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        ranges, open_slots = [], []
        for item in parts[8:]:
            if item.startswith("["):
                open_slots.append(item)
                continue
            first, _, last = item.partition("-")
            ranges.append((int(first), int(last or first)))
        master_id = None if parts[3] == "-" else parts[3]
        views.append(NodeView(
            id=parts[0], flags=frozenset(parts[2].split(",")), master_id=master_id,
            slots=tuple(sorted(ranges)), open_slots=tuple(open_slots),
        ))
    return views


def _slot_count(view: NodeView) -> int:
    return sum(last - first + 1 for first, last in view.slots)


class ReshardJob:
    """`redis-cli --cluster reshard` on a background thread, so a sync can write meanwhile.

    `wait()` returns redis-cli's output once the slots moved and the cluster is stable again, and
    raises what went wrong otherwise.
    """

    def __init__(self, cluster: RedisCluster, command: list[str], timeout: float) -> None:
        self._cluster = cluster
        self._command = command
        self._timeout = timeout
        self._output = ""
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="cluster-reshard", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            result = self._cluster.runner.run(
                self._command, timeout=self._timeout, env=cli_env(self._cluster.password)
            )
            self._output = check_completed(result, "redis-cli --cluster reshard")
            self._cluster.wait_stable(self._timeout, "cluster stable after the reshard")
        except BaseException as exc:
            self._error = exc

    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> str:
        limit = self._timeout + 60 if timeout is None else timeout  # redis-cli's own limit, then stability
        self._thread.join(limit)
        if self._thread.is_alive():
            raise TimeoutError(f"the reshard did not finish within {limit:.0f} s")
        if self._error is not None:
            raise self._error
        return self._output


class RedisCluster:
    """3 primaries + 3 replicas (by default) on free ports; `start()` returns once it is stable.

    `password` sets requirepass and masterauth; `tls` (with `tls_cert`, default the material's
    server certificate for localhost/127.0.0.1) serves TLS only, the cluster bus and replication
    too; `runner`/`bind_host` put the nodes elsewhere, e.g. on a NetworkNamespace's own loopback.
    Addresses are (host, port) as the nodes announce them.
    """

    def __init__(
        self, *, primaries: int = 3, replicas_per_primary: int = 1, password: str | None = None,
        tls: TlsMaterial | None = None, tls_cert: ServerCert | None = None, tls_auth_clients: bool = False,
        runner: Runner = HOST, bind_host: str = "127.0.0.1", binary: str = REDIS_SERVER,
        node_timeout_ms: int = 6000, timeout: float = 60,
    ) -> None:
        self.password = password
        self.runner = runner
        self.binary = binary
        self.timeout = timeout
        self.replicas_per_primary = replicas_per_primary
        self.tls_material = tls
        self.tls: TlsOptions | None = None
        if tls is not None:
            cert = tls_cert or tls.server
            self.tls = TlsOptions(
                cert.cert_file, cert.key_file, tls.ca_file, tls_auth_clients,
                client_cert_file=tls.client.cert_file, client_key_file=tls.client.key_file,
            )
        args = [
            "--cluster-enabled", "yes", "--cluster-node-timeout", str(node_timeout_ms),
            "--repl-diskless-sync-delay", "0",  # replicas sync at once, not 5 s later
        ]
        if password:
            args += ["--masterauth", password]
        if self.tls is not None:
            args += ["--tls-cluster", "yes", "--tls-replication", "yes"]
            if tls_auth_clients:  # nodes are each other's clients: they present the client cert
                args += ["--tls-client-cert-file", str(self.tls.client_cert_file),
                         "--tls-client-key-file", str(self.tls.client_key_file)]
        self.nodes: list[Node] = []
        for _ in range(primaries * (1 + replicas_per_primary)):
            node = Node(
                binary=binary, port=pick_port(cluster_bus=True), password=password, tls=self.tls,
                runner=runner, bind_host=bind_host, cluster_bus=True,
            )
            node.args = [*args, "--cluster-config-file", str(node.workdir / "nodes.conf")]
            self.nodes.append(node)
        self._ids: dict[str, Node] = {}
        self._jobs: list[ReshardJob] = []
        self.timings: dict[str, float] = {}  # seconds per start-up phase, for reports

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- life cycle -------------------------------------------------------------------------------

    def start(self) -> RedisCluster:
        clock = Stopwatch(self.timings)
        try:
            start_all(self.nodes)
            clock.lap("nodes")
            self._create()
            clock.lap("create")
            self._ids = {
                text(node.harness_client().execute_command("CLUSTER", "MYID")): node for node in self.nodes
            }
            self._meet_all()  # again: the handshakes carry the replicas' new roles to everyone at once
            self.wait_stable(self.timeout, "new cluster stable")
            clock.lap("stable")
        except BaseException:
            self.stop()
            raise
        return self

    def _create(self) -> None:
        """`redis-cli --cluster create`, helped along: once it has sent its MEETs (from one node),
        every node meets every other, or redis-cli waits (1-6 s here) for gossip to spread them."""
        addresses = [f"{node.bind_host}:{node.port}" for node in self.nodes]
        command = [
            *redis_cli_command(self.binary, self.tls), "--cluster", "create", *addresses,
            "--cluster-replicas", str(self.replicas_per_primary), "--cluster-yes",
        ]
        with tempfile.TemporaryFile() as output:
            env = cli_env(self.password)
            process = self.runner.popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
            try:
                deadline, met = time.monotonic() + self.timeout, False
                while process.poll() is None:
                    if time.monotonic() > deadline:
                        raise TopologyTimeout(f"redis-cli --cluster create not done after {self.timeout} s")
                    if not met and self._meeting_started():
                        self._meet_all()
                        met = True
                    time.sleep(0.05)
            finally:
                stop_process(process)
            output.seek(0)
            printed = output.read().decode(errors="replace")
        check_completed(subprocess.CompletedProcess(command, process.returncode, printed, ""), "create")

    def _meeting_started(self) -> bool:
        reply = text(self.nodes[0].harness_client().execute_command("CLUSTER", "NODES"))
        return len(reply.strip().splitlines()) > 1

    def _meet_all(self) -> None:
        for node in self.nodes:
            for other in self.nodes:
                if other is not node:
                    node.harness_client().execute_command("CLUSTER", "MEET", other.bind_host, other.port)

    def stop(self) -> None:
        """Stop every node and remove its temp dir (also after a failed start; idempotent)."""
        stop_all(self.nodes)

    def cli(self, *args: str, timeout: float = 60) -> str:
        """Run redis-cli (with this cluster's TLS options and password) where the nodes run."""
        command = redis_cli_command(self.binary, self.tls) + list(args)
        result = self.runner.run(command, timeout=timeout, env=cli_env(self.password))
        return check_completed(result, " ".join(["redis-cli", *args[:2]]))

    # --- what the cluster looks like --------------------------------------------------------------

    def node(self, address: Address) -> Node:
        for node in self.nodes:
            if node.address == tuple(address):
                return node
        raise KeyError(f"no node of this cluster at {address}")

    def node_id(self, address: Address) -> str:
        node = self.node(address)
        return next(node_id for node_id, known in self._ids.items() if known is node)

    def view(self, address: Address | None = None) -> dict[str, NodeView]:
        """CLUSTER NODES as `address` (default: the first node) sees it, by node id; only our nodes
        (a MEET's passing "handshake" entry has a made-up id)."""
        node = self.node(address) if address else self.nodes[0]
        reply = text(node.harness_client().execute_command("CLUSTER", "NODES"))
        return {view.id: view for view in parse_cluster_nodes(reply) if view.id in self._ids}

    def _address_of(self, node_id: str) -> Address:
        return self._ids[node_id].address

    def primaries(self) -> list[Address]:
        """Each primary that owns slots, in slot order."""
        owners = [view for view in self.view().values() if view.is_primary and view.slots]
        views = sorted(owners, key=lambda view: view.slots[0])
        return [self._address_of(v.id) for v in views]

    def replicas(self) -> list[Address]:
        return [self._address_of(v.id) for v in self.view().values() if not v.is_primary]

    def replica_of(self, primary: Address) -> Address:
        primary_id = self.node_id(primary)
        for view in self.view().values():
            if view.master_id == primary_id:
                return self._address_of(view.id)
        raise KeyError(f"{primary} has no replica")

    def slot_count(self, address: Address) -> int:
        return _slot_count(self.view()[self.node_id(address)])

    def node_for_slot(self, slot: int) -> Address:
        for view in self.view().values():
            if view.is_primary and any(first <= slot <= last for first, last in view.slots):
                return self._address_of(view.id)
        raise KeyError(f"slot {slot} is not served")

    def node_for_key(self, key: str | bytes) -> Address:
        return self.node_for_slot(key_slot(key.encode() if isinstance(key, str) else key))

    def _stability_problem(self) -> str | None:
        """What keeps the cluster from being stable right now, or None."""
        seen: dict[Address, frozenset[tuple[str, str | None, tuple[tuple[int, int], ...]]]] = {}
        for node in self.nodes:
            node.check_alive()
            client = node.harness_client()
            state = parse_info(text(client.execute_command("CLUSTER", "INFO"))).get("cluster_state")
            if state != "ok":
                return f"{node.address}: cluster_state:{state}"
            views = parse_cluster_nodes(text(client.execute_command("CLUSTER", "NODES")))
            for view in views:
                if view.open_slots:
                    return f"{node.address}: slots still migrating {view.open_slots[:3]}"
                odd = view.flags & {"fail", "fail?", "handshake", "noaddr"}
                if odd:
                    return f"{node.address} sees {view.id[:8]} as {','.join(sorted(odd))}"
            if {view.id for view in views} != set(self._ids):
                return f"{node.address} knows {len(views)} nodes, not exactly the cluster's {len(self.nodes)}"
            seen[node.address] = frozenset((v.id, v.master_id, v.slots) for v in views)
        if len(set(seen.values())) > 1:
            return "nodes disagree about roles or slot owners"
        for view in views:  # every node's view is the same by now: the last one will do
            if view.is_primary:
                continue
            replica = self._ids[view.id]
            info = replica.harness_client().info("replication")
            if view.master_id not in self._ids:
                return f"replica {replica.address} follows {view.master_id}, not a node of ours"
            master = self._ids[view.master_id]
            link = [info.get(f"master_{name}") for name in ("port", "link_status", "sync_in_progress")]
            if link != [master.port, "up", 0]:
                return f"replica {replica.address} of {master.address} not in sync: {info}"
        return None

    def wait_stable(self, timeout: float | None = None, what: str = "cluster stable") -> None:
        wait_until(self._stability_problem, timeout or self.timeout, what, interval=0.2)

    # --- changes ----------------------------------------------------------------------------------

    def failover(self, primary: Address, timeout: float = 60) -> Address:
        """CLUSTER FAILOVER on `primary`'s replica; returns the new primary once roles swapped.

        A manual failover that did not complete (Redis gives it 5 s) is asked for again.
        """
        replica = self.replica_of(primary)
        replica_id, primary_id = self.node_id(replica), self.node_id(primary)
        replica_node = self.node(replica)
        asked, met = 0.0, False

        def swapped() -> str | None:
            nonlocal asked, met
            if replica_node.role() != "master" and time.monotonic() - asked > 8:
                replica_node.harness_client().execute_command("CLUSTER", "FAILOVER")
                asked = time.monotonic()
            views = self.view(primary)
            if not views[replica_id].is_primary or views[primary_id].master_id != replica_id:
                return f"{replica} not yet primary (as {primary} sees it)"
            if not met:  # spread both new roles by handshakes instead of waiting for gossip
                self._meet_all()
                met = True
            return self._stability_problem()

        wait_until(swapped, timeout, f"failover of {primary} to {replica}", interval=0.2)
        return replica

    def reshard(self, slots: int, from_node: Address, to_node: Address, timeout: float = 120) -> ReshardJob:
        """Move `slots` slots (with their keys) between primaries in the background; wait on the job."""
        self.wait_stable(timeout, "cluster stable before the reshard")  # redis-cli refuses otherwise
        command = [
            *redis_cli_command(self.binary, self.tls),
            "--cluster", "reshard", f"{from_node[0]}:{from_node[1]}",
            "--cluster-from", self.node_id(from_node), "--cluster-to", self.node_id(to_node),
            "--cluster-slots", str(slots), "--cluster-yes",
        ]
        job = ReshardJob(self, command, timeout)
        self._jobs.append(job)
        return job

    # --- data, for assertions ---------------------------------------------------------------------

    def client(self, **overrides: Any) -> redis.cluster.RedisCluster:
        """A redis-py cluster client (for the tests' own assertions, not the connector's code)."""
        host, port = self.nodes[0].address
        tls = tls_client_options(self.tls) if self.tls is not None else {}
        where = self.runner.redis_kwargs(tls)
        options: dict[str, Any] = {"password": self.password, "protocol": 2, "socket_timeout": 10, **where}
        options.update(overrides)
        if "connection_class" in options:  # only the url form hands the class on to every node's pool
            return redis.cluster.RedisCluster(url=f"redis://{host}:{port}", **options)
        return redis.cluster.RedisCluster(host=host, port=port, **options)

    def node_client(self, address: Address) -> redis.Redis:
        """A direct client to one node (caller closes it)."""
        return self.node(address).client()

    def keys_per_primary(self, match: str = "*") -> dict[Address, list[bytes]]:
        """SCAN of every primary: where each key really lives."""
        found = {}
        for address in self.primaries():
            with self.node_client(address) as client:
                found[address] = sorted(client.scan_iter(match=match, count=1000))
        return found

    def keys_all(self, match: str = "*") -> list[bytes]:
        """Every key of the cluster, sorted; a list, not a set, so a key on two primaries shows twice."""
        return sorted(key for keys in self.keys_per_primary(match).values() for key in keys)

    def flushall(self) -> None:
        for address in self.primaries():
            with self.node_client(address) as client:
                client.flushall()

    def config(self, **overrides: object) -> dict[str, object]:
        """A connector config for this cluster (the `topology` block of DESIGN.md)."""
        host, port = self.nodes[0].address
        seeds = [f"{node.bind_host}:{node.port}" for node in self.nodes]
        topology = {"mode": "cluster", "seed_nodes": seeds}
        config: dict[str, object] = {"host": host, "port": port, "topology": topology}
        if self.password:
            config["password"] = self.password
        if self.tls_material is not None:
            config["ssl"] = True
            config["ssl_mode"] = {"mode": "verify-full", "ca_certificate": self.tls_material.ca_pem}
        config.update(overrides)
        return config

