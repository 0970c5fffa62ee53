"""Sentinel: the master the Sentinels name, found again after a failover.

`host`/`port` is one Sentinel, `sentinel_nodes` the others; they are asked in that order, with
their own login (`sentinel_username` / `sentinel_password`), until one names `master_name`
(SENTINEL get-master-addr-by-name). The master is reached with the data nodes' login, and ROLE
must say it is a master: a node named during a failover may not be promoted yet (retryable).
Every command goes to the master. After a lost connection or READONLY the router backs off and
calls `refresh`: the Sentinels are asked again, and a new master is opened (the old one closed).
A Sentinel's connection lasts one question; the master's pool lasts the command.

Why each round of writes is confirmed by a replica (WAIT): Sentinel promotes a replica without
stopping the old master, which keeps acknowledging writes until a Sentinel demotes it (10-20 s
later) and then replaces its data with the new master's. Without WAIT a sync writing through
that window would lose everything it wrote there. So while the master has a replica, every
round ends with `WAIT 1`, and a round no replica acknowledged is resent (writes are idempotent)
once the Sentinels name the master again. A master without a replica cannot be confirmed: its
writes go unconfirmed (logged), and it is asked again every second whether a replica came.

With `wait_for_replicas` n > 0 (durability.py) the user's `WAIT n wait_timeout_ms` replaces
`WAIT 1 2000`, and it is never left out: a round fewer than n replicas acknowledged is resent
the same way (a failover may be under way), and the sync fails once the router's attempts are
spent. A master that refuses WAIT then fails before anything is written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import hiredis

from destination_redis.commands import CONNECTION_ERRORS, pack_command
from destination_redis.config import RedisConfig, SentinelTopology, parse_address
from destination_redis.connection.endpoint import Login
from destination_redis.connection.node import Node, open_node
from destination_redis.connection.reach import Reach
from destination_redis.connection.server import ServerInfo, error_code
from destination_redis.errors import ConnectStepError, step_failed
from destination_redis.topology.base import Topology, call
from destination_redis.topology.durability import Durability
from destination_redis.topology.roles import ask_role, wait_allowed
from destination_redis.topology.roles import text as _text

logger = logging.getLogger("airbyte")

Address = tuple[str, int]

# Long enough for a replica on busy cores to apply a 10,000-record batch; short enough that a
# round written to a master that just lost its replica to a promotion is resent soon.
CONFIRM_TIMEOUT_MS = 2000
_WAIT = pack_command((b"WAIT", 1, CONFIRM_TIMEOUT_MS))
# How often a master without a replica is asked (ROLE) whether one has connected since: after a
# failover the old master comes back as the new one's replica some 10-20 s later.
REPLICA_RECHECK_S = 1.0


class Sentinel(Topology):
    follows_failover = True

    def __init__(
        self, reach: Reach, login: Login, sentinel_login: Login, sentinels: list[Address], master_name: str,
        durability: Durability | None = None,
    ) -> None:
        self._reach = reach
        self._login = login
        self._sentinel_login = sentinel_login
        self._addresses = sentinels
        self._name = master_name
        self._sentinels: dict[Address, Node] = {}
        self._master: Node | None = None
        self._via: Node | None = None  # the Sentinel that named the master last
        self._replicas: list[Address] = []  # the master's replicas when they were last seen
        self._waits = False  # whether each round ends with WAIT 1
        self._decided = False  # whether `_waits` has been decided (and logged) once
        self._wait_allowed = True
        self._recheck_at = 0.0
        self._durability = durability or Durability()
        self.waits_for_replicas = self._durability.replicas > 0  # the user's WAIT n, always sent
        self._wait = _WAIT
        if self.waits_for_replicas:
            self._wait = pack_command(self._durability.commands[0])
        try:
            self.refresh()
        except BaseException:
            self.close()
            raise

    # --- what the router asks ------------------------------------------------------------------

    @property
    def master(self) -> Node:
        if self._master is None:  # pragma: no cover  # refresh in __init__ sets it or raises
            raise RuntimeError("no master yet")
        return self._master

    @property
    def where(self) -> str:
        return f"{self.master.where} (Sentinel master '{self._name}')"

    @property
    def server(self) -> ServerInfo:
        return self.master.server

    def group(self, units: Sequence[int], key_of: Callable[[int], bytes]) -> dict[Node, Sequence[int]]:
        return {self.master: units}

    def primaries(self) -> list[Node]:
        return [self.master]

    def nodes(self) -> list[Node]:
        opened = list(self._sentinels.values())
        return opened + ([self._master] if self._master is not None else [])

    def describe(self) -> str:
        via = self._via.where if self._via is not None else "?"
        if self.waits_for_replicas:
            count = self._durability.replicas
            confirmed = (f"writes confirmed by {count} replica{'s' if count != 1 else ''} with WAIT "
                         f"{count} {self._durability.timeout_ms} (wait_for_replicas)")
        elif self._waits:
            confirmed = "writes confirmed by a replica with WAIT"
        else:
            confirmed = f"writes not confirmed by a replica: {self._unconfirmed_reason()}"
        return (
            f"Sentinel master '{self._name}' at {self.master.where} ({self.master.server.label}), "
            f"found via Sentinel {via} ({confirmed})"
        )

    def confirmation(self, node: Node) -> bytes:
        """WAIT 1 after every round on the master while it has a replica (see the module's doc)."""
        if node is not self._master:
            return b""
        if not self._waits and self._wait_allowed and time.monotonic() >= self._recheck_at:
            self._look_for_replicas(node)
        return self._wait if self._waits else b""

    def unconfirmed(self, node: Node, reply: Any) -> str | None:
        if self.waits_for_replicas:
            where = f"{node.where} (Sentinel master '{self._name}')"
            shortfall = self._durability.replicas_short(where, reply)
            return None if shortfall is None else shortfall.message
        if isinstance(reply, hiredis.ReplyError):
            return f"Redis at {node.where} (Sentinel master '{self._name}') answered '{reply}' to WAIT"
        if isinstance(reply, int) and reply >= 1:
            return None
        return (
            f"No replica of the Sentinel master '{self._name}' at {node.where} acknowledged the writes "
            f"within {CONFIRM_TIMEOUT_MS / 1000:g}s (WAIT 1): a failover may be under way, and a "
            f"master being replaced drops what it acknowledged"
        )

    def refresh(self) -> None:
        """Ask the Sentinels for the master (the one that named it last first); open it if it
        moved; confirm with ROLE that it is a master. A Sentinel that fails, or names a node that
        is no master, is passed over for the next. Raises ConnectStepError when none will do
        (retryable while a failover is in progress)."""
        problems: list[tuple[str, ConnectStepError]] = []
        tried: set[Address] = set()
        for address, sentinel in self._answers(problems):
            if address in tried:
                continue  # that master failed already, as another Sentinel named it
            tried.add(address)
            try:
                self._use(address, sentinel)
            except ConnectStepError as exc:
                problems.append((self._where(*address), exc))
                continue
            for failed, problem in problems:  # a config naming a wrong or dead Sentinel: say so
                logger.warning(f"Passed over {failed} ({problem.message}); using the master "
                               f"'{self._name}' at {self.master.where} as the Sentinel at "
                               f"{sentinel.where} names it.")
            self._via = sentinel
            return
        raise self._none_will_do(problems)

    def _use(self, address: Address, sentinel: Node) -> None:
        """Make the master at `address` the one written to, once ROLE confirms it is a master."""
        current = self._master
        if current is not None and current.address == address:
            role, replicas = self._role(current, sentinel)
            if role != "master":
                raise self._not_master(current, sentinel, role)
            self._replicas_now(current, replicas)
            return
        node = self._open_master(address, sentinel)
        try:
            role, replicas = self._role(node, sentinel)
            if role != "master":
                raise self._not_master(node, sentinel, role)
            self._wait_allowed = wait_allowed(node)
            if self.waits_for_replicas and not self._wait_allowed:
                raise step_failed(
                    "WAIT", node.where, f"the Sentinel master '{self._name}' refused WAIT, which "
                    f"wait_for_replicas needs", "Grant the ACL user +wait (WAIT came with Redis 3.0), or "
                    "set wait_for_replicas to 0.",
                )
        except BaseException:
            node.close()
            raise
        self._master = node
        if current is not None:
            logger.warning(f"Sentinel master '{self._name}' moved from {current.where} to {node.where} "
                           f"(as the Sentinel at {sentinel.where} names it); writing there.")
            current.close()
        self._replicas = replicas
        self._set_waits(bool(replicas) and self._wait_allowed, node)

    def _where(self, host: str, port: int) -> str:
        """An address as messages name it (what Endpoint.where says, without opening a forward)."""
        return f"{host}:{port}{self._reach.via}"

    # --- the Sentinels -------------------------------------------------------------------------

    def _answers(self, problems: list[tuple[str, ConnectStepError]]) -> Iterator[tuple[Address, Node]]:
        """The master's address as each Sentinel names it, asked in turn: the one that named it
        last, then `host`/`port`, then `sentinel_nodes`; each failure is added to `problems`."""
        order = list(self._addresses)
        if self._via is not None:
            order.remove(self._via.address)
            order.insert(0, self._via.address)
        for host, port in order:
            where = self._where(host, port)
            try:
                sentinel = self._sentinel(host, port)
                try:
                    reply = call(sentinel, b"SENTINEL", b"GET-MASTER-ADDR-BY-NAME", self._name)
                finally:
                    # Short-lived: a connection idle until the next failover may have been dropped
                    # silently (a firewall, NAT) and would hang until the socket timeout then.
                    sentinel.pool.disconnect()
            except ConnectStepError as exc:
                problems.append((where, exc))
                continue
            except hiredis.ReplyError as exc:
                problems.append((where, self._refused(where, exc)))
                continue
            except CONNECTION_ERRORS as exc:
                problems.append((where, step_failed(
                    "SENTINEL get-master-addr-by-name", where,
                    f"the connection was lost ({type(exc).__name__})", "Check that the Sentinel is healthy.",
                    retryable=True,
                )))
                continue
            if reply is None:
                problems.append((where, ConnectStepError(
                    f"The Sentinel at {where} does not know a master named '{self._name}' (SENTINEL "
                    f"get-master-addr-by-name answered nil). Check master_name: SENTINEL MASTERS on the "
                    f"Sentinel lists the names it monitors.",
                    False,
                )))
                continue
            yield (_text(reply[0]), int(reply[1])), sentinel

    def _sentinel(self, host: str, port: int) -> Node:
        known = self._sentinels.get((host, port))
        if known is None:
            known = open_node(self._reach, host, port, self._sentinel_login)
            if known.server.mode != "sentinel":
                known.close()
                raise step_failed(
                    "Sentinel discovery", known.where,
                    f"{known.server.label} there is a {known.server.mode} server, not a Sentinel",
                    "Point host, port and sentinel_nodes at Sentinels (they listen on port 26379 by "
                    "default), or set topology to standalone for a single server.",
                )
            self._sentinels[(host, port)] = known
        return known

    def _refused(self, where: str, exc: hiredis.ReplyError) -> ConnectStepError:
        if error_code(exc) == "NOPERM":
            user = self._sentinel_login.username or "default"
            advice = (f"Grant the Sentinel user the command (ACL SETUSER {user} "
                      f"+sentinel|get-master-addr-by-name), or use another sentinel_username.")
        else:
            advice = "Check that host, port and sentinel_nodes are Sentinels."
        return step_failed("SENTINEL get-master-addr-by-name", where, f"the Sentinel answered '{exc}'",
                           advice)

    def _none_will_do(self, problems: list[tuple[str, ConnectStepError]]) -> ConnectStepError:
        """One message for every Sentinel (or master) that failed; the same failure at several
        Sentinels (a wrong sentinel_password, an unknown master_name) is said once."""
        first_where, first = problems[0]
        if len(problems) == 1:
            return first
        # The user must act where any of them says so (a retry would fail the same way).
        retryable = all(exc.retryable for _, exc in problems)
        pattern = first.message.replace(first_where, "")
        if all(exc.message.replace(where, "") == pattern for where, exc in problems):
            others = ", ".join(where for where, _ in problems[1:])
            return ConnectStepError(f"{first.message} (The other Sentinels failed the same way: {others}.)",
                                    retryable)
        return ConnectStepError(
            f"Found no master '{self._name}' through the Sentinels. "
            + " ".join(exc.message for _, exc in problems),
            retryable,
        )

    # --- the master ----------------------------------------------------------------------------

    def _open_master(self, address: Address, sentinel: Node) -> Node:
        try:
            return open_node(self._reach, *address, self._login)
        except ConnectStepError as exc:
            raise ConnectStepError(
                f"{exc.message} ({self._where(*address)} is the master '{self._name}' as the Sentinel at "
                f"{sentinel.where} names it.)",
                exc.retryable,
            ) from None

    def _role(self, node: Node, sentinel: Node) -> tuple[str, list[Address]]:
        """`_ask_role`, a failure to answer being retryable (the node may be restarting)."""
        try:
            return ask_role(node)
        except (*CONNECTION_ERRORS, hiredis.ReplyError) as exc:
            raise step_failed(
                "ROLE", node.where, f"{type(exc).__name__} {exc}",
                f"Could not confirm that the node the Sentinel at {sentinel.where} names as master "
                f"'{self._name}' is one; retrying.",
                retryable=True,
            ) from None

    def _not_master(self, node: Node, sentinel: Node, role: str) -> ConnectStepError:
        return ConnectStepError(
            f"{node.where}, which the Sentinel at {sentinel.where} names as master '{self._name}', is a "
            f"{role} (ROLE): a failover is in progress. Retrying once the new master is promoted.",
            retryable=True,
        )

    def _replicas_now(self, master: Node, replicas: list[Address]) -> None:
        """The same master, asked again after a round failed: a master that has just lost every
        replica may be the old side of a failover the Sentinels do not report yet."""
        if replicas:
            self._replicas = replicas
            self._set_waits(self._wait_allowed, master)
            return
        if not self._waits:
            return
        promoted = next((address for address in self._replicas if self._claims_master(address)), None)
        if promoted is not None:
            host, port = promoted
            raise ConnectStepError(
                f"The replica {host}:{port} of the Sentinel master '{self._name}' at {master.where} now "
                f"says it is a master, and the Sentinels do not name it yet: a failover is in progress. "
                f"Waiting for the Sentinels.",
                retryable=True,
            )
        self._set_waits(False, master)

    def _claims_master(self, address: Address) -> bool:
        """Whether a former replica answers ROLE with master (promoted); False if unreachable."""
        try:
            node = open_node(self._reach, *address, self._login)
        except ConnectStepError:
            return False
        try:
            return ask_role(node)[0] == "master"
        except (*CONNECTION_ERRORS, hiredis.ReplyError):
            return False
        finally:
            node.close()

    def _look_for_replicas(self, master: Node) -> None:
        """While writes go unconfirmed: has a replica connected since (the demoted old master)?"""
        self._recheck_at = time.monotonic() + REPLICA_RECHECK_S
        try:
            role, replicas = ask_role(master)
        except (*CONNECTION_ERRORS, hiredis.ReplyError):
            return  # the round that follows finds out what is wrong
        if role == "master" and replicas:
            self._replicas = replicas
            self._set_waits(True, master)

    def _set_waits(self, waits: bool, master: Node) -> None:
        waits = waits or self.waits_for_replicas  # asked for by the user: never left out
        if waits and not self._waits and self.waits_for_replicas:
            count, timeout = self._durability.replicas, self._durability.timeout_ms
            logger.info(f"Writes to the Sentinel master '{self._name}' at {master.where} are confirmed by "
                        f"{count} replica(s) before their states are released (WAIT {count} {timeout}, "
                        f"wait_for_replicas).")
        elif waits and not self._waits:
            replicas = ", ".join(f"{host}:{port}" for host, port in self._replicas)
            logger.info(f"Writes to the Sentinel master '{self._name}' at {master.where} are confirmed by a "
                        f"replica ({replicas}) before their states are released (WAIT).")
        elif not waits and (self._waits or not self._decided):
            logger.warning(f"Writes to the Sentinel master '{self._name}' at {master.where} are not "
                           f"confirmed by a replica: {self._unconfirmed_reason()}. Should it fail over "
                           f"meanwhile, the last records it acknowledged may be lost.")
        self._waits = waits
        self._decided = True
        self._recheck_at = time.monotonic() + REPLICA_RECHECK_S

    def _unconfirmed_reason(self) -> str:
        if not self._wait_allowed:
            return "the server refused WAIT, as an ACL user without +wait or a server before Redis 3.0 does"
        return "it has no replica in sync"


def open_sentinel(
    config: RedisConfig, topology: SentinelTopology, reach: Reach, login: Login,
    durability: Durability | None = None,
) -> Sentinel:
    sentinel_login = Login(
        topology.sentinel_username, topology.sentinel_password, db=0,
        username_field="sentinel_username", password_field="sentinel_password",  # noqa: S106  # field names
    )
    addresses: list[Address] = []
    for address in [(config.host, config.port), *(parse_address(text) for text in topology.sentinel_nodes)]:
        if address not in addresses:
            addresses.append(address)
    return Sentinel(reach, login, sentinel_login, addresses, topology.master_name, durability)
