"""Redis Cluster: each key goes to the primary that owns its hash slot.

The slot map comes from CLUSTER SLOTS (every cluster version has it), asked of a known node or
a seed. A MOVED reply (resharding) updates the slot at once and has the whole map read again
before the next round; a lost connection, READONLY or CLUSTERDOWN (a primary failing over) has
it read again after the router's backoff. Nodes are reached by the address the cluster announces
(through the SSH bastion when tunnelled; TLS verifies that name or address), with the data
nodes' login, and kept open for the command.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import hiredis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from destination_redis.commands import CONNECTION_ERRORS
from destination_redis.config import ClusterTopology, RedisConfig, parse_address
from destination_redis.connection.endpoint import Login
from destination_redis.connection.node import Node, open_node
from destination_redis.connection.reach import Reach
from destination_redis.connection.server import ServerInfo, error_code
from destination_redis.errors import ConnectStepError, step_failed
from destination_redis.topology.base import Topology, call

logger = logging.getLogger("airbyte")

Address = tuple[str, int]


class Cluster(Topology):
    follows_failover = True

    def __init__(self, reach: Reach, login: Login, seeds: list[Address], where: str) -> None:
        self._reach = reach
        self._login = login
        self._seeds = seeds
        self._where = where
        self._nodes: dict[Address, Node] = {}
        self._slots: list[Node] = []
        self._primaries: list[Node] = []
        self._stale = False
        self._redirected: dict[int, Node] = {}  # slot -> owner, as MOVED said since the last map
        self.refresh()

    @property
    def where(self) -> str:
        return self._where

    @property
    def server(self) -> ServerInfo:
        return min((node.server for node in self._primaries), key=lambda server: server.version)

    def group(self, units: Sequence[int], key_of: Callable[[int], bytes]) -> dict[Node, Sequence[int]]:
        if self._stale:
            self._reload_after_moved()
        slots = self._slots
        groups: dict[Node, list[int]] = {}
        for i in units:
            node = slots[key_slot(key_of(i))]
            share = groups.get(node)
            if share is None:
                groups[node] = [i]
            else:
                share.append(i)
        return dict(groups)

    def primaries(self) -> list[Node]:
        return list(self._primaries)

    def nodes(self) -> list[Node]:
        return list(self._nodes.values())

    def describe(self) -> str:
        count = len(self._primaries)
        return (
            f"Redis Cluster of {count} primar{'y' if count == 1 else 'ies'} ({self.server.label}) "
            f"at {', '.join(node.where for node in self._primaries)}"
        )

    def moved(self, slot: int, host: str, port: int) -> None:
        owner = self._node(host, port)
        self._slots[slot] = owner
        self._redirected[slot] = owner
        self._stale = True  # a resharding moves more slots: read the whole map before the next round

    def node_at(self, host: str, port: int) -> Node:
        return self._node(host, port)

    def refresh(self) -> None:
        """Read the slot map from the first node that answers: known primaries, other known
        nodes, then the seeds. Raises ConnectStepError when none does, or slots are unserved."""
        self._stale = False
        candidates: list[Address] = [node.address for node in self._primaries]
        candidates += [address for address in self._nodes if address not in candidates]
        candidates += [address for address in self._seeds if address not in candidates]
        problems: list[ConnectStepError] = []
        for address in candidates:
            try:
                node = self._node(*address)
                reply = call(node, b"CLUSTER", b"SLOTS")
                self._apply(node, reply)
                self._keep_redirects()
                return
            except ConnectStepError as exc:
                problems.append(exc)
            except (*CONNECTION_ERRORS, hiredis.ReplyError) as exc:  # try the next node
                if isinstance(exc, hiredis.ReplyError) and error_code(exc) == "NOPERM":
                    user = self._login.username or "default"
                    problems.append(ConnectStepError(  # the user must act: not retryable
                        f"CLUSTER SLOTS failed at {address[0]}:{address[1]}: the ACL user '{user}' may "
                        f"not run it ({exc}); the connector needs it to find which node owns each key. "
                        f"Grant it (ACL SETUSER {user} +cluster|slots) on every node.", False
                    ))
                    continue
                problems.append(ConnectStepError(
                    f"CLUSTER SLOTS failed at {address[0]}:{address[1]}: {type(exc).__name__} {exc}.", True
                ))
        if len(problems) == 1 or not any(problem.retryable for problem in problems):
            raise problems[0]
        raise ConnectStepError(
            f"Redis Cluster at {self._where}: no node gave the slot map. "
            + " ".join(problem.message for problem in problems),
            retryable=True,
        )

    def _keep_redirects(self) -> None:
        """A MOVED comes from the node that gave the slot up, so it is newer than a map read from
        a node that has not heard of the move yet: without this, the two would send a unit back
        and forth between the old and the new owner until the gossip settles."""
        for slot, owner in self._redirected.items():
            self._slots[slot] = owner
            if owner not in self._primaries:
                self._primaries.append(owner)
        self._redirected.clear()

    def _reload_after_moved(self) -> None:
        try:
            self.refresh()
        except ConnectStepError as exc:  # keep the MOVED-updated map; the next MOVED tries again
            logger.warning(f"Could not read the slot map again after MOVED: {exc.message}")

    def _apply(self, asked: Node, reply: Any) -> None:
        slots: list[Node | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        primaries: dict[Address, Node] = {}
        for entry in reply:
            start, end, primary = int(entry[0]), int(entry[1]), entry[2]
            host = _text(primary[0]) or asked.address[0]  # "" or "?": the asked node's own host
            if host == "?":
                host = asked.address[0]
            node = self._node(host, int(primary[1]))
            primaries[node.address] = node
            slots[start : end + 1] = [node] * (end - start + 1)
        missing = sum(1 for node in slots if node is None)
        if missing:
            raise ConnectStepError(
                f"Redis Cluster at {self._where}: {missing} of {REDIS_CLUSTER_HASH_SLOTS} hash "
                f"slots have no primary (the cluster is down or being set up). Check CLUSTER INFO.",
                retryable=True,
            )
        self._slots = [node for node in slots if node is not None]
        self._primaries = list(primaries.values())

    def _node(self, host: str, port: int) -> Node:
        known = self._nodes.get((host, port))
        if known is None:
            known = open_node(self._reach, host, port, self._login)
            if known.server.mode != "cluster":
                known.close()
                raise step_failed(
                    "Cluster discovery", known.where, f"{known.server.label} there is not a cluster node",
                    "Set topology to standalone (or sentinel), or point host and port at a node of "
                    "the cluster.",
                )
            self._nodes[(host, port)] = known
        return known


def open_cluster(config: RedisConfig, topology: ClusterTopology, reach: Reach, login: Login) -> Cluster:
    where = f"{config.host}:{config.port}{reach.via}"
    if config.db:
        raise step_failed(
            "SELECT", where, f"Redis Cluster has only database 0; db is {config.db}", "Set db to 0."
        )
    seeds = [(config.host, config.port)] + [parse_address(text) for text in topology.seed_nodes]
    return Cluster(reach, login, seeds, where)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
