"""Durability: no STATE before the records before it are on replicas, or on the primary's disk.

Redis acknowledges a write once it is in memory. With `wait_for_replicas` n, the router ends each
node's share of a round with `WAIT n t`; with `wait_for_aof`, with `WAITAOF 1 0 t` (the primary's
own fsync of its append-only file; Redis 7.2 and Valkey 8). The loader releases a STATE only after
every batch before it was acknowledged, so every STATE then follows durable data. This module
builds those commands and judges their replies; the router only appends and hands them over.

A shortfall (fewer replicas than asked, no fsync within the timeout, an error reply) fails the
sync with a transient_error: no state follows the batch, and the platform's retry resends it
(writes are idempotent, nothing is duplicated). Resending at once would not help: the records
are on the primary already, only not yet where the user asked. Under Sentinel the master's own
confirmation (sentinel.py) carries wait_for_replicas instead, with its failover handling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import hiredis

from destination_redis.commands import CONNECTION_ERRORS, pack_command
from destination_redis.config import RedisConfig
from destination_redis.connection.node import Node
from destination_redis.connection.server import error_code
from destination_redis.errors import ConnectorError, ConnectStepError, config_error, transient_error
from destination_redis.topology.base import Topology, call

WAITAOF_SINCE = (7, 2, 0)


@dataclass(frozen=True)
class Shortfall:
    """Why a round's writes are not yet as durable as asked."""

    message: str
    user_must_act: bool = False  # NOPERM: a retry would fail the same way

    def error(self) -> ConnectorError:
        return (config_error if self.user_must_act else transient_error)(self.message)


@dataclass(frozen=True)
class Durability:
    replicas: int = 0  # wait_for_replicas: WAIT for this many replicas; 0: no WAIT
    timeout_ms: int = 10_000  # wait_timeout_ms, for WAIT and WAITAOF each
    aof: bool = False  # wait_for_aof: WAITAOF 1 0 (the primary's fsync)

    @classmethod
    def of(cls, config: RedisConfig) -> Durability:
        return cls(config.wait_for_replicas, config.wait_timeout_ms, config.wait_for_aof)

    def without_replicas(self) -> Durability:
        """What is left for the router when the topology waits for replicas itself (Sentinel)."""
        return replace(self, replicas=0)

    @property
    def commands(self) -> list[tuple[bytes, ...]]:
        """The commands that end each node's share of a round, in this order."""
        timeout = str(self.timeout_ms).encode()
        commands = [(b"WAIT", str(self.replicas).encode(), timeout)] if self.replicas else []
        return commands + ([(b"WAITAOF", b"1", b"0", timeout)] if self.aof else [])

    @property
    def packed(self) -> bytes:
        return b"".join(pack_command(command) for command in self.commands)

    def shortfall(self, where: str, replies: Sequence[Any]) -> Shortfall | None:
        """The first shortfall in the replies to `commands`, sent to the node at `where`."""
        for command, reply in zip(self.commands, replies, strict=True):
            if command[0] == b"WAIT":
                problem = self.replicas_short(where, reply)
            else:
                problem = self.aof_short(where, reply)
            if problem is not None:
                return problem
        return None

    def replicas_short(self, where: str, reply: Any) -> Shortfall | None:
        """WAIT answers the number of replicas that acknowledged the connection's writes."""
        wait = f"WAIT {self.replicas} {self.timeout_ms}"
        if isinstance(reply, hiredis.ReplyError):
            return _refused(where, wait, "wait_for_replicas", "+wait", reply)
        acknowledged = int(reply)
        if acknowledged >= self.replicas:
            return None
        return Shortfall(
            f"Only {acknowledged} of {self.replicas} replica{'s' if self.replicas != 1 else ''} of "
            f"Redis at {where} acknowledged the writes within {self.timeout_ms} ms ({wait}, as "
            f"wait_for_replicas asks): no state is released for them. Check the replicas and their "
            f"link to the primary (INFO replication), or raise wait_timeout_ms; the retried sync "
            f"resends the batch."
        )

    def aof_short(self, where: str, reply: Any) -> Shortfall | None:
        """WAITAOF answers [local fsyncs, replica fsyncs]; only the local one is asked for."""
        waitaof = f"WAITAOF 1 0 {self.timeout_ms}"
        if isinstance(reply, hiredis.ReplyError):
            return _refused(where, waitaof, "wait_for_aof", "+waitaof", reply)
        local = int(reply[0]) if isinstance(reply, list) and reply else 0
        if local >= 1:
            return None
        return Shortfall(
            f"Redis at {where} did not fsync the writes to its append-only file within "
            f"{self.timeout_ms} ms ({waitaof} answered {local} local, as wait_for_aof asks): no state "
            f"is released for them. Check the server's disk (INFO persistence), or raise "
            f"wait_timeout_ms; the retried sync resends the batch."
        )

    def require(self, topology: Topology) -> None:
        """Before anything is written (check and write): WAITAOF exists on every primary and can
        run there (appendonly on). Raises ConnectStepError for the user to act on."""
        if not self.aof:
            return
        server = topology.server  # the oldest primary's
        if server.version < WAITAOF_SINCE:
            raise ConnectStepError(
                f"wait_for_aof needs Redis 7.2 or later (WAITAOF); this server is {server.label}. "
                f"Upgrade the server (Redis 7.2 or later, Valkey 8), or turn wait_for_aof off."
            )
        for node in topology.primaries():
            if aof_enabled(node) is False:
                raise ConnectStepError(
                    f"wait_for_aof needs the append-only file on the server at {node.where}, where it "
                    f"is off (INFO persistence: aof_enabled:0). Turn it on (CONFIG SET appendonly yes, "
                    f"and appendonly yes in its config file), or turn wait_for_aof off."
                )


def aof_enabled(node: Node) -> bool | None:
    """INFO persistence's aof_enabled; None when the node does not say (INFO refused, lost)."""
    try:
        raw = call(node, b"INFO", b"persistence")
    except (*CONNECTION_ERRORS, hiredis.ReplyError):
        return None  # the first round's WAITAOF finds out
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    value = fields.get("aof_enabled", "").strip()
    return None if not value else value == "1"


def _refused(where: str, command: str, option: str, grant: str, reply: hiredis.ReplyError) -> Shortfall:
    code = error_code(reply)
    if code == "NOPERM":
        return Shortfall(
            f"Redis at {where} refused {command}, which {option} needs: the ACL user may not run it "
            f"(NOPERM). Grant it ({grant}), or turn {option} off.",
            user_must_act=True,
        )
    return Shortfall(f"Redis at {where} answered '{reply}' to {command} ({option}): no state is released "
                     f"for the writes before it.")
