"""Units of commands, as the router sends them: one key's commands that go to one node together.

Grouping commands into units (a MULTI .. EXEC is one), the key and main command of a unit, a
unit resent behind ASKING, the address a MOVED / ASK names, and one exchange with several nodes
(every node written before any is read, so they work in parallel).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import hiredis

from destination_redis.commands import CONNECTION_ERRORS, Command, pack_command, read_replies, send, text
from destination_redis.connection.node import Node

ASKING = pack_command((b"ASKING",))


def exchange(shares: dict[Node, tuple[bytes, int, list[frozenset[int]]]]) -> dict[Node, Any]:
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


def units_of(commands: Sequence[Command]) -> list[list[Command]]:
    """Commands grouped into units: one command each, or a whole MULTI .. EXEC."""
    units: list[list[Command]] = []
    open_unit: list[Command] | None = None
    for cmd in commands:
        name = command_name(cmd)
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


def command_name(cmd: Command) -> bytes:
    first = cmd[0]
    return (first if isinstance(first, bytes) else str(first).encode()).upper()


def main_command(unit: list[Command]) -> Command:
    """The command a unit is about (inside a MULTI, the first one with a key)."""
    return next((cmd for cmd in unit if len(cmd) > 1), unit[0])


# Commands whose key is not their first argument: a subcommand comes first (XINFO STREAM <key>).
KEY_POSITION = {b"XINFO": 2, b"OBJECT": 2, b"MEMORY": 2}


def unit_key(unit: list[Command]) -> bytes:
    main = main_command(unit)
    position = KEY_POSITION.get(command_name(main), 1)
    if len(main) <= position:
        return b""
    key = main[position]
    return key if isinstance(key, bytes) else str(key).encode()


def command_text(cmd: Command) -> str:
    return " ".join(text(part) for part in cmd[:2])


def redirect(error: BaseException, node: Node) -> tuple[int, str, int]:
    """(slot, host, port) of "MOVED 3999 127.0.0.1:6381" / "ASK ..."; an empty host is the node's."""
    words = str(error).split()
    slot = int(words[1])
    host, _, port = words[2].rpartition(":")
    return slot, host or node.address[0], int(port)


def with_asking(part: bytes) -> tuple[bytes, frozenset[int]]:
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
            chunks.append(ASKING)
            drop.add(position)
            position += 1
            in_multi = name == b"MULTI"
        elif name in (b"EXEC", b"DISCARD"):
            in_multi = False
        chunks.append(pack_command(tuple(cmd)))
        position += 1
    return b"".join(chunks), frozenset(drop)
