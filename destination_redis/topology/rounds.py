"""One round of a batch: which node gets which units (planned), and what their replies say (judged).

The router runs rounds until every unit has a good reply or the attempts are spent; a round is
planned and judged the same way whether its replies are read at once (router.run_units) or
later, with other batches sent meanwhile (router.send_units, wires.py). Judging follows what the
replies say:

- MOVED (a resharding or failover moved the slot): the slot map learns the new owner; retried.
- ASK (the slot is being migrated): retried at the importing node behind ASKING.
- MOVED or ASK where the topology does not redirect (a standalone config at a cluster node):
  the config_error that says to set topology to cluster.
- READONLY or a lost connection where the topology follows failovers (a primary failed over),
  CLUSTERDOWN, TRYAGAIN, LOADING, BUSY, MASTERDOWN, a lost connection, a round the topology does
  not confirm (Sentinel: no replica acknowledged it with WAIT): retried after a backoff.
- Durability (wait_for_replicas, wait_for_aof): each node's share ends with WAIT / WAITAOF too
  (durability.py); a shortfall on a node whose units were written fails the batch with its error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from destination_redis.commands import RETRYABLE_CODES, Command, first_error, reply_error, without_last
from destination_redis.connection.node import Node
from destination_redis.connection.server import error_code
from destination_redis.errors import ConnectStepError, transient_error
from destination_redis.topology.base import Topology
from destination_redis.topology.durability import Durability
from destination_redis.topology.units import command_text, redirect, with_asking

# One node's payload, its reply count, and per unit the reply positions to drop (ASKING).
Share = tuple[bytes, int, list[frozenset[int]]]


@dataclass
class Batch:
    """Packed units and what the router learns of them over its rounds."""

    parts: Sequence[bytes]
    counts: list[int]
    key_of: Callable[[int], bytes]  # unit i's key (asked only where the topology has slots)
    describe: Callable[[int], Command]  # unit i's main command, for error messages
    tolerate_errors: bool = False
    want_replies: bool = True
    done: list[list[Any] | None] = field(default_factory=list)  # per unit: its good replies
    asking: dict[int, Node] = field(default_factory=dict)  # units to resend behind ASKING

    def __post_init__(self) -> None:
        self.done = [None] * len(self.parts)


@dataclass
class Round:
    """Where one round sends which units: per node its units (in order) and its payload."""

    groups: dict[Node, Sequence[int]]
    shares: dict[Node, Share]
    confirmed: dict[Node, bool]  # whether the share ends with the topology's confirmation
    guards: int  # durability commands at the end of every share


@dataclass
class Verdict:
    """What a round's replies say: units to retry, whether a connection was lost (a unit may or
    may not have run), whether to back off first, and the error to raise when out of attempts."""

    lost: bool = False
    retry: list[int] = field(default_factory=list)
    wait: bool = False
    failure: Any = None


def plan(topology: Topology, durability: Durability, pending: Sequence[int], batch: Batch) -> Round:
    """Group the pending units by node; each share ends with the topology's confirmation, then
    durability's WAIT / WAITAOF (their replies in that order, after the units')."""
    asking = batch.asking
    if not asking:
        groups = topology.group(pending, batch.key_of)
    else:
        groups = dict(topology.group([i for i in pending if i not in asking], batch.key_of))
        for i in pending:
            if i in asking:
                groups[asking[i]] = [*groups.get(asking[i], ()), i]
    shares = {node: _share(units, batch) for node, units in groups.items()}
    guard, guards = durability.packed, len(durability.commands)
    confirmed: dict[Node, bool] = {}
    for node in groups:
        confirmation = topology.confirmation(node)
        confirmed[node] = bool(confirmation)
        if confirmation or guard:
            payload, count, drops = shares[node]
            shares[node] = (payload + confirmation + guard, count + bool(confirmation) + guards, drops)
    return Round(groups, shares, confirmed, guards)


def judge(
    topology: Topology, durability: Durability, rnd: Round, outcomes: dict[Node, Any], batch: Batch
) -> Verdict:
    """Fill `batch.done` from the round's replies (per node: replies, or the exception that lost
    its connection); raise a final error reply as the traced error naming it."""
    verdict = Verdict()
    asking = batch.asking
    for node, units in rnd.groups.items():
        outcome = outcomes[node]
        if isinstance(outcome, BaseException):
            _unsure(verdict, units, asking, transient_error(
                f"Lost the connection to Redis at {node.where} ({type(outcome).__name__})",
                internal=str(outcome),
            ))
            continue
        shortfall = None
        if rnd.guards:
            shortfall = durability.shortfall(node.where, outcome[-rnd.guards:])
            outcome = without_last(outcome, rnd.guards)
        if rnd.confirmed[node]:
            problem = topology.unconfirmed(node, outcome[-1])
            outcome = without_last(outcome, 1)
            if problem is not None:  # as after a lost connection: it may or may not stay
                _unsure(verdict, units, asking, transient_error(problem))
                continue
        drops = rnd.shares[node][2]
        if not batch.want_replies and first_error(outcome) is None and not any(drops):
            if shortfall is not None:
                raise shortfall.error()
            continue  # the hot path: every unit of this node acknowledged
        if _judge_units(topology, node, units, drops, outcome, batch, verdict) and shortfall is not None:
            raise shortfall.error()
    return verdict


def _unsure(verdict: Verdict, units: Sequence[int], asking: dict[int, Node], failure: Any) -> None:
    """Every unit of a node may or may not have run: retry them all, after a backoff."""
    verdict.lost = verdict.wait = True
    verdict.retry += units
    for i in units:  # the node behind an ASK may be the one lost: ask the map again
        asking.pop(i, None)
    verdict.failure = failure


def _judge_units(
    topology: Topology, node: Node, units: Sequence[int], drops: list[frozenset[int]],
    outcome: list[Any], batch: Batch, verdict: Verdict,
) -> bool:
    """Judge each unit of one node's share; returns whether any unit of it is done."""
    offset = 0
    written = False
    for i, drop in zip(units, drops, strict=True):
        count = batch.counts[i] + len(drop)
        got = outcome[offset : offset + count]
        offset += count
        if drop:
            got = [reply for position, reply in enumerate(got) if position not in drop]
            del batch.asking[i]
        error = first_error(got)
        if error is None:
            batch.done[i] = got
            written = True
            continue
        code = error_code(error)
        if code in ("MOVED", "ASK"):
            verdict.retry.append(i)
            _redirected(topology, node, i, error, code, batch, verdict)
        elif code in RETRYABLE_CODES or (code == "READONLY" and topology.follows_failover):
            verdict.wait = True
            verdict.retry.append(i)
            verdict.failure = transient_error(
                f"Redis at {node.where} answered {code} to {command_text(batch.describe(i))}: {error}"
            )
        elif batch.tolerate_errors:
            batch.done[i] = got
            written = True
        else:
            raise reply_error(error, batch.describe(i), node.where)
    return written


def _redirected(
    topology: Topology, node: Node, i: int, error: BaseException, code: str, batch: Batch, verdict: Verdict
) -> None:
    slot, host, port = redirect(error, node)
    try:
        if code == "MOVED":
            topology.moved(slot, host, port)
            verdict.failure = transient_error(f"Redis Cluster kept moving slot {slot} ({error})")
        else:
            batch.asking[i] = topology.node_at(host, port)
            verdict.failure = transient_error(f"Redis Cluster kept redirecting with ASK ({error})")
    except NotImplementedError:
        # A topology that does not redirect (standalone config at a cluster node): the
        # config_error saying to set topology to cluster.
        raise reply_error(error, batch.describe(i), node.where) from None
    except ConnectStepError as exc:  # the node named cannot be reached (yet)
        verdict.wait = True
        verdict.failure = transient_error(
            f"Redis at {node.where} answered {code} to {command_text(batch.describe(i))}, naming "
            f"{host}:{port}, which could not be reached: {exc.message}"
        )


def _share(units: Sequence[int], batch: Batch) -> Share:
    """One node's payload, its reply count, and per unit the reply positions to drop (ASKING)."""
    parts, counts, asking = batch.parts, batch.counts, batch.asking
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
