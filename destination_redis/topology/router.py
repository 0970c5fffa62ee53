"""The router: every batch of commands goes to the nodes that own their keys, and comes back whole.

Writers hand over units: the packed commands of one key (a record's HSET and EXPIRE, a dedup
MULTI..EXEC), which always go to one node together. The router groups the units by node, writes
every node's share before reading any reply (the nodes work in parallel), then follows what the
replies say (rounds.py): MOVED / ASK are followed, READONLY after a failover, CLUSTERDOWN,
LOADING, a lost connection or an unconfirmed round are retried after a backoff once the topology
has found its nodes again, final errors are raised naming the cause and the key.

`run_units` sends and waits; `send_units` sends on each node's wire (wires.py) and returns, so
that the next batches go out before this one's replies are read, and `land` reads and retries
later, in the order sent. Resending is safe because units are idempotent (records under ids
reserved before the write); a unit that is not (the INCRBY reserving ids) passes `applied`,
which tells after a lost connection whether the server had run it. A writer never knows which
topology it talks to.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from destination_redis.commands import CONNECTION_ERRORS, Command, pack_command
from destination_redis.connection.node import Node
from destination_redis.connection.server import ServerInfo
from destination_redis.errors import ConnectStepError, transient_error
from destination_redis.topology.base import Topology
from destination_redis.topology.durability import Durability
from destination_redis.topology.keyless import Keyless
from destination_redis.topology.rounds import Batch, Round, Verdict, judge, plan
from destination_redis.topology.units import exchange, main_command, unit_key, units_of
from destination_redis.topology.wires import Wire, Wires

logger = logging.getLogger("airbyte")

# After a lost connection: the replies of the batch if the server had run it, else None (resend).
Applied = Callable[[], list[Any] | None]


class Router:
    """Runs batches on the topology's nodes, with retries; the writers' one way to Redis."""

    def __init__(
        self, topology: Topology, attempts: int = 8, backoff_s: float = 0.5, max_backoff_s: float = 5.0,
        durability: Durability | None = None,
    ) -> None:
        self.topology = topology
        self.durability = durability or Durability()
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._keyless = Keyless(topology, attempts, backoff_s, max_backoff_s, self._refresh)
        self._wires = Wires()  # batches in flight (send_units), one connection per node
        self._resends = 0  # batches landed that had to be resent: later ones in flight follow

    @property
    def server(self) -> ServerInfo:
        return self.topology.server

    @property
    def where(self) -> str:
        return self.topology.where

    def run(
        self, commands: Sequence[Command], tolerate_errors: bool = False, *, applied: Applied | None = None
    ) -> list[Any]:
        """Replies in order; an error reply raises a traced error naming the code and the key.

        Each command is routed by its key (its first argument); MULTI .. EXEC go as one unit, by
        the key of the first command inside. With `tolerate_errors`, final error replies are
        returned as hiredis.ReplyError objects instead.

        `applied` makes a single non-idempotent command safe to retry: after a lost connection
        the router calls it (after the backoff, once the nodes are found again). It returns the
        replies if the server had run the command (nothing is resent), or None (resent).
        """
        if not commands:
            return []
        units = units_of(commands)
        parts = [b"".join([pack_command(tuple(cmd)) for cmd in unit]) for unit in units]
        keys = [unit_key(unit) for unit in units]
        return self.run_units(
            parts, [len(unit) for unit in units], keys.__getitem__, lambda i: main_command(units[i]),
            tolerate_errors=tolerate_errors, applied=applied,
        )

    def run_units(
        self,
        parts: Sequence[bytes],
        replies: int | Sequence[int],
        key_of: Callable[[int], bytes],
        describe: Callable[[int], Command],
        *,
        tolerate_errors: bool = False,
        applied: Applied | None = None,
        want_replies: bool = True,
    ) -> list[Any]:
        """Send packed units; replies flat, in unit order. `replies`: per unit, or one count for all.

        `key_of(i)` is unit i's key (asked only where the topology has slots), `describe(i)` its
        main command, for error messages. Hot paths pack their own commands, and pass
        `want_replies=False` when only errors matter (then [] is returned).
        """
        if applied is not None and len(parts) != 1:
            raise ValueError("`applied` is for a single unit")
        batch = Batch(parts, _counts(replies, len(parts)), key_of, describe, tolerate_errors, want_replies)
        self._settle(batch, applied)
        if not want_replies:
            return []
        done = batch.done
        if len(done) == 1:
            return done[0] or []
        return [reply for unit in done for reply in (unit or [])]

    def send_units(
        self,
        parts: Sequence[bytes],
        replies: int | Sequence[int],
        key_of: Callable[[int], bytes],
        describe: Callable[[int], Command],
    ) -> Sent:
        """Send packed units now, on each node's wire (wires.py), and return at once: `land`
        reads their replies later, and retries what needs it, as `run_units` with
        `want_replies=False` would. Batches sent so are landed in the order they were sent."""
        batch = Batch(parts, _counts(replies, len(parts)), key_of, describe, want_replies=False)
        rnd = plan(self.topology, self.durability, range(len(parts)), batch)
        sent: dict[Node, Wire | BaseException] = {}
        for node, (payload, count, drops) in rnd.shares.items():
            wire = self._wires[node]
            try:
                wire.send(payload)
                sent[node] = wire
            except CONNECTION_ERRORS as exc:
                sent[node] = exc
            rnd.shares[node] = (b"", count, drops)  # a resend packs its share again: not kept in flight
        return Sent(self, batch, rnd, sent, self._resends)

    def land(self, sent: Sent) -> None:
        """Read a sent batch's replies (every batch sent before it landed already) and retry what
        needs it. A batch sent before an earlier one was resent is resent whole, after it: a
        record of it may have been written before the earlier batch's older record for the same
        key, which the resend wrote again; resending this one restores the newer."""
        outcomes = {
            node: wire if isinstance(wire, BaseException) else wire.read(sent.round.shares[node][1])
            for node, wire in sent.wires.items()
        }
        verdict = judge(self.topology, self.durability, sent.round, outcomes, sent.batch)
        if sent.resends != self._resends:
            verdict.retry = list(range(len(sent.batch.parts)))
            verdict.failure = verdict.failure or transient_error(
                "A batch sent before this one had to be resent"
            )
        if verdict.retry:
            self._resends += 1
            self._settle(sent.batch, None, verdict)

    def abandon(self) -> None:
        """The sync is failing: drop every connection with batches in flight, unread."""
        self._wires.abandon()

    def _settle(self, batch: Batch, applied: Applied | None, first: Verdict | None = None) -> None:
        """Rounds until every unit of `batch` has a good reply (`first`: the first round's
        verdict, when it was sent and read already), or the attempts are spent."""
        pending: Sequence[int] = range(len(batch.parts))  # a range until a retry: the hot path copies nothing
        unsure = False  # a connection was lost since `applied` last said the server had not run it
        redirected = 0  # rounds in a row answered only with MOVED / ASK
        waits = 0  # backoffs so far: the delay doubles with each
        for attempt in range(1, self._attempts + 1):
            if unsure and applied is not None:
                # Before any resend, also when finding the nodes again failed: a blind resend of
                # the INCRBY would reserve a second range.
                ran = applied()
                if ran is not None:
                    logger.info("Redis had run the batch before the connection was lost: not resent.")
                    batch.done[0] = ran
                    return
                unsure = False
            if first is not None and attempt == 1:
                verdict = first
            else:
                rnd = plan(self.topology, self.durability, pending, batch)
                outcomes = exchange(rnd.shares)
                verdict = judge(self.topology, self.durability, rnd, outcomes, batch)
            if not verdict.retry:
                return
            unsure = unsure or verdict.lost
            failure = verdict.failure
            if attempt == self._attempts:
                if verdict.lost and not self.topology.follows_failover:
                    failure = transient_error(
                        f"{failure.message}; the connection was lost {self._attempts} times in a "
                        f"row. Check the server's health and the network, then retry the sync.",
                        internal=failure.internal_message,
                    )
                raise failure from None
            redirected = 0 if verdict.wait else redirected + 1
            # A redirect is followed at once; redirects that keep coming (slot maps that disagree
            # while a resharding or failover settles) get the backoff too, so that 8 attempts
            # are not spent in a few milliseconds.
            if verdict.wait or redirected > 2:
                delay = min(self._backoff_s * (2**waits), self._max_backoff_s)
                waits += 1
                action = "checking whether it ran, else resending" if unsure and applied else "resending"
                logger.warning(
                    f"{failure.message}; {action} {len(verdict.retry)} of {len(batch.parts)} units in "
                    f"{delay:.1f}s (attempt {attempt + 1} of {self._attempts})."
                )
                time.sleep(delay)
                self._refresh()  # if that fails too, the next round fails and waits again
            pending = verdict.retry

    def _refresh(self) -> None:
        """Find the nodes again; if that fails too, a warning: the next round retries."""
        try:
            self.topology.refresh()
        except ConnectStepError as exc:
            logger.warning(f"Could not find the Redis nodes again yet: {exc.message}")

    # --- keyless commands: every primary (keyless.py) -------------------------------------------

    def run_on(self, node: Node, command: Command, tolerate_errors: bool = False) -> Any:
        """One keyless command (PING, SCAN) on one node, retried after a lost connection."""
        return self._keyless.run_on(node, command, tolerate_errors)

    def scan(self, pattern: bytes, count: int = 1000) -> Iterator[bytes]:
        """Every key matching the glob pattern on every primary (never KEYS)."""
        return self._keyless.scan(pattern, count)

    def dbsize(self) -> int:
        """Keys in the database, summed over the primaries."""
        return self._keyless.dbsize()


class Sent:
    """A batch sent by `Router.send_units` whose replies are not read yet: `land` reads them."""

    def __init__(
        self, router: Router, batch: Batch, rnd: Round, wires: dict[Node, Wire | BaseException],
        resends: int,
    ) -> None:
        self.router = router
        self.batch = batch
        self.round = rnd
        self.wires = wires  # per node: the wire its share went on, or what lost it while sending
        self.resends = resends  # the router's count of resent batches when this one was sent

    def land(self) -> None:
        """Wait for the batch's acknowledgement (resending what needs it); raises a final error."""
        self.router.land(self)

    def abandon(self) -> None:
        """The sync is failing: nothing in flight is read any more."""
        self.router.abandon()


def _counts(replies: int | Sequence[int], units: int) -> list[int]:
    return [replies] * units if isinstance(replies, int) else list(replies)
