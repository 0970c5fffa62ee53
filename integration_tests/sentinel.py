"""A real Sentinel set-up for the tests: one primary, one replica, 3 Sentinels; always stopped.

Sentinel is slow to converge by design (hellos every 2 s, INFO every 10 s), so `start()` waits
until every Sentinel knows the others and the replica, and `failover()` waits until every Sentinel
reports the new master and, by default, until a Sentinel has demoted the old master: after a
`SENTINEL FAILOVER` the old master keeps accepting writes for several seconds (until a Sentinel's
next INFO to it), and a test that writes there in that window would lose them.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from integration_tests.netns import HOST, Runner
from integration_tests.servers import REDIS_SERVER
from integration_tests.topology import (
    Address,
    Node,
    Stopwatch,
    pick_port,
    start_all,
    stop_all,
    text,
    wait_until,
)

MASTER_NAME = "mymaster"


def _pairs(reply: Any) -> dict[str, str]:
    """A Sentinel reply of flat name/value pairs as a dict."""
    items = [text(item) for item in reply]
    return dict(zip(items[::2], items[1::2], strict=True))


class SentinelGroup:
    """Primary + replica (`replicaof`) + Sentinels (quorum 2) on free ports; `start()` waits until ready.

    `password` protects the data nodes (requirepass, masterauth, `sentinel auth-pass`);
    `sentinel_password` is the Sentinels' own requirepass, apart from it (they also use it with
    each other, so all share it). `runner`/`bind_host` put every process elsewhere (a namespace).
    """

    def __init__(
        self, *, master_name: str = MASTER_NAME, password: str | None = None,
        sentinel_password: str | None = None, sentinels: int = 3, quorum: int = 2, down_after_ms: int = 5000,
        failover_timeout_ms: int = 20000, runner: Runner = HOST, bind_host: str = "127.0.0.1",
        binary: str = REDIS_SERVER, timeout: float = 60,
    ) -> None:
        self.master_name = master_name
        self.password = password
        self.sentinel_password = sentinel_password
        self.timeout = timeout
        self.timings: dict[str, float] = {}  # seconds per start-up phase, for reports
        auth = ["--masterauth", password] if password else []
        fast_sync = ["--repl-diskless-sync-delay", "0"]
        primary = Node(binary=binary, port=pick_port(), password=password, runner=runner, bind_host=bind_host,
                       args=[*auth, *fast_sync])
        replica = Node(binary=binary, port=pick_port(), password=password, runner=runner, bind_host=bind_host,
                       args=[*auth, *fast_sync, "--replicaof", bind_host, str(primary.port)])
        self.data_nodes = [primary, replica]
        conf = (
            f"sentinel monitor {master_name} {bind_host} {primary.port} {quorum}\n"
            f"sentinel down-after-milliseconds {master_name} {down_after_ms}\n"
            f"sentinel failover-timeout {master_name} {failover_timeout_ms}\n"
            f"sentinel parallel-syncs {master_name} 1\n"
        )
        if password:
            conf += f"sentinel auth-pass {master_name} {password}\n"
        if sentinel_password:
            conf += f"requirepass {sentinel_password}\n"
        self.sentinels = [
            Node(binary=binary, port=pick_port(), password=sentinel_password, runner=runner,
                 bind_host=bind_host, sentinel_conf=conf)
            for _ in range(sentinels)
        ]

    def __enter__(self) -> SentinelGroup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> SentinelGroup:
        clock = Stopwatch(self.timings)
        try:
            start_all(self.data_nodes)
            # Replica in sync first: then each Sentinel's first INFO of the master already lists it.
            wait_until(lambda: self._replica_problem(self.data_nodes[1], self.data_nodes[0]), self.timeout,
                       "replica in sync")
            clock.lap("data nodes")
            start_all(self.sentinels)
            wait_until(self._sentinels_problem, self.timeout, "Sentinels know each other and the replica",
                       interval=0.2)
            clock.lap("sentinels")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop Sentinels first (no failover while the data nodes go), then the data nodes."""
        stop_all([*self.sentinels, *self.data_nodes])

    # --- state --------------------------------------------------------------------------------

    def node(self, address: Address) -> Node:
        for node in self.data_nodes:
            if node.address == tuple(address):
                return node
        raise KeyError(f"no data node at {address}")

    def sentinel_addresses(self) -> list[Address]:
        return [sentinel.address for sentinel in self.sentinels]

    def sentinel_client(self, index: int = 0) -> redis.Redis:
        """A direct client to one Sentinel (caller closes it)."""
        return self.sentinels[index].client()

    def _reported_master(self, sentinel: Node) -> Address:
        host, port = sentinel.harness_client().execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name
        )
        return (text(host), int(port))

    def reported_masters(self) -> list[Address]:
        """The master as each Sentinel reports it (all equal once the group has converged)."""
        return [self._reported_master(sentinel) for sentinel in self.sentinels]

    def master_address(self) -> Address:
        """The master as the first Sentinel reports it."""
        return self._reported_master(self.sentinels[0])

    def replica_addresses(self) -> list[Address]:
        master = self.master_address()
        return [node.address for node in self.data_nodes if node.address != master]

    def master_client(self) -> redis.Redis:
        """A direct client to the current master (caller closes it)."""
        return self.node(self.master_address()).client()

    def _replica_problem(self, replica: Node, master: Node) -> str | None:
        replica.check_alive()
        info = replica.harness_client().info("replication")
        state = (info.get("role"), info.get("master_port"), info.get("master_link_status"),
                 info.get("master_sync_in_progress"))
        if state != ("slave", master.port, "up", 0):
            return f"{replica.address} not in sync with {master.address}: {state}"
        return None

    def _sentinels_problem(self) -> str | None:
        others = len(self.sentinels) - 1
        for sentinel in self.sentinels:
            sentinel.check_alive()
            client = sentinel.harness_client()
            master = _pairs(client.execute_command("SENTINEL", "MASTER", self.master_name))
            if master.get("flags") != "master" or master.get("num-other-sentinels") != str(others):
                return f"Sentinel {sentinel.port}: master flags {master.get('flags')}, " \
                       f"{master.get('num-other-sentinels')} of {others} other Sentinels"
            replicas = [_pairs(r) for r in client.execute_command("SENTINEL", "REPLICAS", self.master_name)]
            good = [r for r in replicas if r.get("flags") == "slave" and r.get("master-link-status") == "ok"]
            if len(good) < len(self.data_nodes) - 1:
                seen = [(r.get("port"), r.get("flags"), r.get("master-link-status")) for r in replicas]
                return f"Sentinel {sentinel.port} sees replicas {seen}"
        return None

    # --- failover -----------------------------------------------------------------------------

    def failover(self, timeout: float = 60, wait_for_demotion: bool = True) -> Address:
        """SENTINEL FAILOVER; returns the new master once every Sentinel reports it and it is master.

        With `wait_for_demotion` also waits until the old master has become the new one's replica
        (a Sentinel does that ~10 s later), so the group is ready for the next failover.
        """
        old = self.master_address()
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sentinels[0].harness_client().execute_command("SENTINEL", "FAILOVER", self.master_name)
                break
            except redis.ResponseError as exc:  # NOGOODSLAVE/INPROG: the Sentinel is not ready yet
                if time.monotonic() > deadline:
                    raise TimeoutError(f"SENTINEL FAILOVER refused for {timeout} s: {exc}") from None
                time.sleep(0.5)
        new_master: list[Address] = []

        def promoted() -> str | None:
            reports = {self._reported_master(sentinel) for sentinel in self.sentinels}
            if len(reports) != 1 or old in reports:
                return f"Sentinels report {sorted(reports)} (old master {old})"
            (address,) = reports
            if self.node(address).role() != "master":
                return f"{address} reported but not yet master"
            new_master[:] = [address]
            return None

        wait_until(promoted, max(deadline - time.monotonic(), 1), f"Sentinel failover away from {old}", 0.2)
        (new,) = new_master
        if wait_for_demotion:
            wait_until(
                lambda: self._replica_problem(self.node(old), self.node(new)),
                max(deadline - time.monotonic(), 1), f"old master {old} demoted to replica of {new}", 0.2,
            )
        return new

    def config(self, **overrides: object) -> dict[str, object]:
        """A connector config for this group (the `topology` block of DESIGN.md)."""
        host, port = self.sentinels[0].address
        config: dict[str, object] = {
            "host": host, "port": port,
            "topology": {
                "mode": "sentinel", "master_name": self.master_name,
                "sentinel_nodes": [f"{h}:{p}" for h, p in self.sentinel_addresses()],
                "sentinel_username": "", "sentinel_password": self.sentinel_password or "",
            },
        }
        if self.password:
            config["password"] = self.password
        config.update(overrides)
        return config
