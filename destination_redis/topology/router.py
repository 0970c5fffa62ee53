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
Resending is safe because units are idempotent (records under ids reserved before the write);
a unit that is not (the INCRBY reserving ids) passes `applied`, which tells after a lost
connection whether the server had run it. A writer never knows which topology it talks to.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import hiredis

from destination_redis.commands import (
    CONNECTION_ERRORS,
    RETRYABLE_CODES,
    Command,
    first_error,
    pack_command,
    read_replies,
    reply_error,
    send,
    text,
)
from destination_redis.connection.node import Node
from destination_redis.connection.server import ServerInfo, error_code
from destination_redis.errors import ConnectStepError, transient_error
from destination_redis.topology.base import Topology

logger = logging.getLogger("airbyte")

# After a lost connection: the replies of the batch if the server had run it, else None (resend).
Applied = Callable[[], list[Any] | None]

_ASKING = pack_command((b"ASKING",))


class Router:
    """Runs batches on the topology's nodes, with retries; the writers' one way to Redis."""

    def __init__(
        self, topology: Topology, attempts: int = 8, backoff_s: float = 0.5, max_backoff_s: float = 5.0
    ) -> None:
        self.topology = topology
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s

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
        units = _units(commands)
        parts = [b"".join([pack_command(tuple(cmd)) for cmd in unit]) for unit in units]
        keys = [_unit_key(unit) for unit in units]
        return self.run_units(
            parts, [len(unit) for unit in units], keys.__getitem__, lambda i: _main(units[i]),
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
        # A topology may end each share with a command confirming it (Sentinel: WAIT for a replica).
        confirmations = {node: self.topology.confirmation(node) for node in groups}
        for node, confirmation in confirmations.items():
            if confirmation:
                payload, count, drops = shares[node]
                shares[node] = (payload + confirmation, count + 1, drops)
        outcomes = _exchange(shares)
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
            if confirmations[node]:
                problem = self.topology.unconfirmed(node, outcome[-1])
                outcome = outcome[:-1]
                if problem is not None:  # as after a lost connection: it may or may not stay
                    lost = wait = True
                    retry += units
                    for i in units:
                        asking.pop(i, None)
                    failure = transient_error(problem)
                    continue
            drops = shares[node][2]
            if not want_replies and first_error(outcome) is None and not any(drops):
                continue  # the hot path: every unit of this node acknowledged
            offset = 0
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
                    continue
                code = error_code(error)
                if code in ("MOVED", "ASK"):
                    retry.append(i)
                    slot, host, port = _redirect(error, node)
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
                            f"Redis at {node.where} answered {code} to {_describe(describe(i))}, naming "
                            f"{host}:{port}, which could not be reached: {exc.message}"
                        )
                elif code in RETRYABLE_CODES or (code == "READONLY" and self.topology.follows_failover):
                    wait = True
                    retry.append(i)
                    failure = transient_error(f"Redis at {node.where} answered {code} to "
                                              f"{_describe(describe(i))}: {error}")
                elif tolerate_errors:
                    done[i] = got
                else:
                    raise reply_error(error, describe(i), node.where)
        if lost and not self.topology.follows_failover and failure is not None:
            failure = transient_error(
                f"{failure.message}; the connection was lost {self._attempts} times in a row. "
                f"Check the server's health and the network, then retry the sync.",
                internal=failure.internal_message,
            )
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
                payload, drop = _with_asking(parts[i])
                chunks.append(payload)
                drops.append(drop)
                total += counts[i] + len(drop)
            else:
                chunks.append(parts[i])
                drops.append(frozenset())
                total += counts[i]
        return b"".join(chunks), total, drops

    def _refresh(self) -> bool:
        """Find the nodes again; False (and a warning) if that failed too: the next round retries."""
        try:
            self.topology.refresh()
        except ConnectStepError as exc:
            logger.warning(f"Could not find the Redis nodes again yet: {exc.message}")
            return False
        return True

    # --- keyless commands: every primary -------------------------------------------------------

    def run_on(self, node: Node, command: Command, tolerate_errors: bool = False) -> Any:
        """One keyless command (PING, SCAN) on one node, retried after a lost connection."""
        losses = 0
        while True:
            try:
                return self._keyless(node, command, tolerate_errors)
            except _Lost as exc:
                losses += 1
                self._after_loss(losses, exc)

    def scan(self, pattern: bytes, count: int = 1000) -> Iterator[bytes]:
        """Every key matching the glob pattern on every primary, over SCAN cursors (never KEYS).

        A primary lost mid-scan (killed and failed over, restarting) is not retried blindly: after
        a backoff the nodes are found again, and every primary not yet scanned to the end (its
        replacement among them) is scanned from the start. A key may come twice (deleting it twice
        is harmless); none held by a primary is missed. A primary that became a replica while it
        was scanned still answers SCAN with the same keys.
        """
        finished: set[tuple[str, int]] = set()
        losses = 0
        while todo := [node for node in self.topology.primaries() if node.address not in finished]:
            for node in todo:
                try:
                    yield from self._scan_node(node, pattern, count)
                except _Lost as exc:
                    losses += 1
                    self._after_loss(losses, exc)
                    break
                finished.add(node.address)
                losses = 0

    def dbsize(self) -> int:
        """Keys in the database, summed over the primaries (asked again after a lost one)."""
        losses = 0
        while True:
            try:
                return sum(int(self._keyless(node, (b"DBSIZE",))) for node in self.topology.primaries())
            except _Lost as exc:
                losses += 1
                self._after_loss(losses, exc)

    def _scan_node(self, node: Node, pattern: bytes, count: int) -> Iterator[bytes]:
        cursor: bytes | int = 0
        while True:
            cursor, found = self._keyless(node, (b"SCAN", cursor, b"MATCH", pattern, b"COUNT", count))
            yield from found
            if int(cursor) == 0:
                return

    def _keyless(self, node: Node, command: Command, tolerate_errors: bool = False) -> Any:
        """One exchange; raises _Lost after a lost connection or a reply worth retrying (LOADING ...)."""
        outcome = _exchange({node: (pack_command(tuple(command)), 1, [frozenset()])})[node]
        if isinstance(outcome, BaseException):
            reason = f"Lost the connection to Redis at {node.where} ({type(outcome).__name__})"
            raise _Lost(reason, transient_error(
                f"Lost the connection to Redis at {node.where} {self._attempts} times in a row "
                f"({type(outcome).__name__}); giving up. Check the server's health and the "
                f"network, then retry the sync.",
                internal=str(outcome),
            ))
        (reply,) = outcome
        if isinstance(reply, hiredis.ReplyError) and not tolerate_errors:
            if error_code(reply) in RETRYABLE_CODES:
                reason = f"Redis at {node.where} answered {error_code(reply)} to {_describe(command)}"
                raise _Lost(reason, reply_error(reply, command, node.where))
            raise reply_error(reply, command, node.where)
        return reply

    def _after_loss(self, losses: int, lost: _Lost) -> None:
        """The backoff after the `losses`-th loss in a row, then the nodes found again; raises
        the loss's error once the attempts are spent."""
        if losses >= self._attempts:
            raise lost.failure from None
        delay = min(self._backoff_s * (2 ** (losses - 1)), self._max_backoff_s)
        logger.warning(
            f"{lost.reason}; asking again in {delay:.1f}s (attempt {losses + 1} of {self._attempts})."
        )
        time.sleep(delay)
        self._refresh()


class _Lost(Exception):
    """A keyless command's node was lost (or answered LOADING, BUSY ...): retry after a backoff."""

    def __init__(self, reason: str, failure: Exception) -> None:
        super().__init__(reason)
        self.reason = reason
        self.failure = failure


def _exchange(shares: dict[Node, tuple[bytes, int, list[frozenset[int]]]]) -> dict[Node, Any]:
    """Write every node's payload, then read every node's replies: per node, replies or the
    exception that lost its connection."""
    outcomes: dict[Node, Any] = {}
    sent: list[tuple[Node, Any, int]] = []
    for node, (payload, count, _) in shares.items():
        conn = None
        try:
            conn = node.checkout()
            send(conn, payload)
            sent.append((node, conn, count))
        except CONNECTION_ERRORS as exc:
            if conn is not None:
                node.release(conn, healthy=False)
            outcomes[node] = exc
    for node, conn, count in sent:
        healthy = False
        try:
            outcomes[node] = read_replies(conn, count)
            healthy = True
        except CONNECTION_ERRORS as exc:
            outcomes[node] = exc
        finally:
            node.release(conn, healthy)
    return outcomes


def _units(commands: Sequence[Command]) -> list[list[Command]]:
    """Commands grouped into units: one command each, or a whole MULTI .. EXEC."""
    units: list[list[Command]] = []
    open_unit: list[Command] | None = None
    for cmd in commands:
        name = _name(cmd)
        if open_unit is not None:
            open_unit.append(cmd)
            if name in (b"EXEC", b"DISCARD"):
                units.append(open_unit)
                open_unit = None
        elif name == b"MULTI":
            open_unit = [cmd]
        else:
            units.append([cmd])
    if open_unit is not None:
        raise ValueError("MULTI without EXEC")
    return units


def _name(cmd: Command) -> bytes:
    first = cmd[0]
    return (first if isinstance(first, bytes) else str(first).encode()).upper()


def _main(unit: list[Command]) -> Command:
    """The command a unit is about (inside a MULTI, the first one with a key)."""
    return next((cmd for cmd in unit if len(cmd) > 1), unit[0])


def _unit_key(unit: list[Command]) -> bytes:
    main = _main(unit)
    if len(main) < 2:
        return b""
    key = main[1]
    return key if isinstance(key, bytes) else str(key).encode()


def _describe(cmd: Command) -> str:
    return " ".join(text(part) for part in cmd[:2])


def _redirect(error: BaseException, node: Node) -> tuple[int, str, int]:
    """(slot, host, port) of "MOVED 3999 127.0.0.1:6381" / "ASK ..."; an empty host is the node's."""
    words = str(error).split()
    slot = int(words[1])
    host, _, port = words[2].rpartition(":")
    return slot, host or node.address[0], int(port)


def _with_asking(part: bytes) -> tuple[bytes, frozenset[int]]:
    """A unit resent behind ASKING: before each command, or once before a MULTI (the flag lasts
    the transaction). Returns the payload and the reply positions of the ASKINGs."""
    reader = hiredis.Reader()
    reader.feed(part)
    chunks: list[bytes] = []
    drop: set[int] = set()
    position = 0
    in_multi = False
    while (cmd := reader.gets()) is not False:
        name = bytes(cmd[0]).upper()
        if not in_multi:
            chunks.append(_ASKING)
            drop.add(position)
            position += 1
            in_multi = name == b"MULTI"
        elif name in (b"EXEC", b"DISCARD"):
            in_multi = False
        chunks.append(pack_command(tuple(cmd)))
        position += 1
    return b"".join(chunks), frozenset(drop)
