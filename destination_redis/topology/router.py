"""The router: every batch of commands goes to the nodes that own their keys, and comes back whole.

Writers hand over units: the packed commands of one key (a record's HSET and EXPIRE, a dedup
MULTI..EXEC), which always go to one node together. The router groups the units by node, writes
every node's share before reading any reply (the nodes work in parallel), then follows what
the replies say:

- MOVED (a resharding or failover moved the slot): the slot map learns the new owner; resent at
  once, but after three such rounds in a row with the backoff (maps still disagreeing).
- ASK (the slot is being migrated): resent to the importing node behind ASKING, once.
- MOVED or ASK where the topology does not redirect (a standalone config at a cluster node):
  the config_error that says to set topology to cluster.
- READONLY or a lost connection where the topology follows failovers (a primary failed over),
  CLUSTERDOWN, TRYAGAIN, LOADING, BUSY, MASTERDOWN: after a backoff the topology finds its nodes
  again and the units without a good reply are resent.
- A round the topology does not confirm (Sentinel: no replica acknowledged it with WAIT, so a
  master being replaced may drop it): the same, the round's units are resent.
- Durability (wait_for_replicas, wait_for_aof): each node's share ends with WAIT / WAITAOF too
  (durability.py); a shortfall on a node whose units were written fails the batch with its error.
Resending is safe because units are idempotent (records under ids reserved before the write);
a unit that is not (the INCRBY reserving ids) passes `applied`, which tells after a lost
connection whether the server had run it. A writer never knows which topology it talks to.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from destination_redis.commands import (
    RETRYABLE_CODES,
    Command,
    first_error,
    pack_command,
    reply_error,
    without_last,
)
from destination_redis.connection.node import Node
from destination_redis.connection.server import ServerInfo, error_code
from destination_redis.errors import ConnectStepError, transient_error
from destination_redis.topology.base import Topology
from destination_redis.topology.durability import Durability
from destination_redis.topology.keyless import Keyless
from destination_redis.topology.units import (
    command_text,
    exchange,
    main_command,
    redirect,
    unit_key,
    units_of,
    with_asking,
)

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
        counts = [replies] * len(parts) if isinstance(replies, int) else list(replies)
        done: list[list[Any] | None] = [None] * len(parts)
        pending: Sequence[int] = range(len(parts))  # a range until a retry: the hot path copies nothing
        asking: dict[int, Node] = {}
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
                    return ran
                unsure = False
            lost, retry, wait, failure = self._round(
                pending, parts, counts, key_of, describe, tolerate_errors, asking, done, want_replies
            )
            if not retry:
                break
            unsure = unsure or lost
            if attempt == self._attempts:
                if lost and not self.topology.follows_failover:
                    failure = transient_error(
                        f"{failure.message}; the connection was lost {self._attempts} times in a "
                        f"row. Check the server's health and the network, then retry the sync.",
                        internal=failure.internal_message,
                    )
                raise failure from None
            redirected = 0 if wait else redirected + 1
            # A redirect is followed at once; redirects that keep coming (slot maps that disagree
            # while a resharding or failover settles) get the backoff too, so that 8 attempts
            # are not spent in a few milliseconds.
            if wait or redirected > 2:
                delay = min(self._backoff_s * (2**waits), self._max_backoff_s)
                waits += 1
                action = "checking whether it ran, else resending" if unsure and applied else "resending"
                logger.warning(
                    f"{failure.message}; {action} {len(retry)} of {len(parts)} units in {delay:.1f}s "
                    f"(attempt {attempt + 1} of {self._attempts})."
                )
                time.sleep(delay)
                self._refresh()  # if that fails too, the next round fails and waits again
            pending = retry
        if not want_replies:
            return []
        if len(done) == 1:
            return done[0] or []
        return [reply for unit in done for reply in (unit or [])]

    def _round(
        self,
        pending: Sequence[int],
        parts: Sequence[bytes],
        counts: list[int],
        key_of: Callable[[int], bytes],
        describe: Callable[[int], Command],
        tolerate_errors: bool,
        asking: dict[int, Node],
        done: list[list[Any] | None],
        want_replies: bool,
    ) -> tuple[bool, list[int], bool, Any]:
        """One exchange with every node concerned; fills `done`, returns what to retry."""
        if not asking:
            groups = self.topology.group(pending, key_of)
        else:
            groups = dict(self.topology.group([i for i in pending if i not in asking], key_of))
            for i in pending:
                if i in asking:
                    groups[asking[i]] = [*groups.get(asking[i], ()), i]
        shares = {node: self._share(units, parts, counts, asking) for node, units in groups.items()}
        # A topology may end each share with a command confirming it (Sentinel: WAIT for a replica),
        # then durability its WAIT / WAITAOF: replies in that order, after the units'.
        confirmations = {node: self.topology.confirmation(node) for node in groups}
        guard, guards = self.durability.packed, len(self.durability.commands)
        for node, confirmation in confirmations.items():
            if confirmation or guard:
                payload, count, drops = shares[node]
                shares[node] = (payload + confirmation + guard, count + bool(confirmation) + guards, drops)
        outcomes = exchange(shares)
        lost = False
        wait = False
        retry: list[int] = []
        failure: Any = None
        for node, units in groups.items():
            outcome = outcomes[node]
            if isinstance(outcome, BaseException):
                lost = wait = True
                retry += units
                for i in units:  # the node behind an ASK may be the one lost: ask the map again
                    asking.pop(i, None)
                failure = transient_error(
                    f"Lost the connection to Redis at {node.where} ({type(outcome).__name__})",
                    internal=str(outcome),
                )
                continue
            shortfall = None
            if guards:
                shortfall = self.durability.shortfall(node.where, outcome[-guards:])
                outcome = without_last(outcome, guards)
            if confirmations[node]:
                problem = self.topology.unconfirmed(node, outcome[-1])
                outcome = without_last(outcome, 1)
                if problem is not None:  # as after a lost connection: it may or may not stay
                    lost = wait = True
                    retry += units
                    for i in units:
                        asking.pop(i, None)
                    failure = transient_error(problem)
                    continue
            drops = shares[node][2]
            if not want_replies and first_error(outcome) is None and not any(drops):
                if shortfall is not None:
                    raise shortfall.error()
                continue  # the hot path: every unit of this node acknowledged
            offset = 0
            written = False  # whether a unit of this node is done: then its durability matters
            for i, drop in zip(units, drops, strict=True):
                count = counts[i] + len(drop)
                got = outcome[offset : offset + count]
                offset += count
                if drop:
                    got = [reply for position, reply in enumerate(got) if position not in drop]
                    del asking[i]
                error = first_error(got)
                if error is None:
                    done[i] = got
                    written = True
                    continue
                code = error_code(error)
                if code in ("MOVED", "ASK"):
                    retry.append(i)
                    slot, host, port = redirect(error, node)
                    try:
                        if code == "MOVED":
                            self.topology.moved(slot, host, port)
                            failure = transient_error(f"Redis Cluster kept moving slot {slot} ({error})")
                        else:
                            asking[i] = self.topology.node_at(host, port)
                            failure = transient_error(f"Redis Cluster kept redirecting with ASK ({error})")
                    except NotImplementedError:
                        # A topology that does not redirect (standalone config at a cluster node):
                        # the config_error saying to set topology to cluster.
                        raise reply_error(error, describe(i), node.where) from None
                    except ConnectStepError as exc:  # the node named cannot be reached (yet)
                        wait = True
                        failure = transient_error(
                            f"Redis at {node.where} answered {code} to {command_text(describe(i))}, naming "
                            f"{host}:{port}, which could not be reached: {exc.message}"
                        )
                elif code in RETRYABLE_CODES or (code == "READONLY" and self.topology.follows_failover):
                    wait = True
                    retry.append(i)
                    failure = transient_error(f"Redis at {node.where} answered {code} to "
                                              f"{command_text(describe(i))}: {error}")
                elif tolerate_errors:
                    done[i] = got
                    written = True
                else:
                    raise reply_error(error, describe(i), node.where)
            if written and shortfall is not None:
                raise shortfall.error()
        return lost, retry, wait, failure

    def _share(
        self, units: Sequence[int], parts: Sequence[bytes], counts: list[int], asking: dict[int, Node]
    ) -> tuple[bytes, int, list[frozenset[int]]]:
        """One node's payload, its reply count, and per unit the reply positions to drop (ASKING)."""
        if not asking:
            empty: frozenset[int] = frozenset()
            if isinstance(units, range) and len(units) == len(parts):  # one node, first round
                return b"".join(parts), sum(counts), [empty] * len(units)
            return b"".join([parts[i] for i in units]), sum([counts[i] for i in units]), [empty] * len(units)
        chunks: list[bytes] = []
        drops: list[frozenset[int]] = []
        total = 0
        for i in units:
            if i in asking:
                payload, drop = with_asking(parts[i])
                chunks.append(payload)
                drops.append(drop)
                total += counts[i] + len(drop)
            else:
                chunks.append(parts[i])
                drops.append(frozenset())
                total += counts[i]
        return b"".join(chunks), total, drops

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
