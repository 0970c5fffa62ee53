"""What a data node is in a replication set: master or replica (ROLE, or INFO replication on
servers and users without ROLE), its replicas in sync, and whether WAIT may be used."""

from __future__ import annotations

from typing import Any

import hiredis

from destination_redis.commands import CONNECTION_ERRORS
from destination_redis.connection.node import Node
from destination_redis.topology.base import call

Address = tuple[str, int]


def wait_allowed(node: Node) -> bool:
    """Whether WAIT can be used (Redis 3.0 or later, and allowed to the ACL user)."""
    try:
        call(node, b"WAIT", 0, 0)
    except hiredis.ReplyError:
        return False
    except CONNECTION_ERRORS:
        return True  # the first round finds out
    return True


def ask_role(node: Node) -> tuple[str, list[Address]]:
    """The node's role and, for a master, its replicas in sync: ROLE, else INFO replication
    (before Redis 2.8.12, or an ACL user without ROLE). Raises what `call` raises."""
    try:
        reply = call(node, b"ROLE")
    except hiredis.ReplyError:
        return role_from_info(call(node, b"INFO", b"replication"))
    role = text(reply[0])
    if role != "master":
        return role, []
    return role, [(text(entry[0]), int(entry[1])) for entry in reply[2]]


def role_from_info(raw: Any) -> tuple[str, list[Address]]:
    """ROLE's answer from `INFO replication`: role, and slaveN lines of replicas online."""
    fields = dict(line.split(":", 1) for line in text(raw).splitlines() if ":" in line)
    role = fields.get("role", "").strip()
    if role != "master":
        return role, []
    replicas: list[Address] = []
    for name, value in fields.items():
        if name.startswith("slave") and name[5:].isdigit():
            parts = dict(part.split("=", 1) for part in value.strip().split(",") if "=" in part)
            if parts.get("state") == "online" and "ip" in parts and "port" in parts:
                replicas.append((parts["ip"], int(parts["port"])))
    return role, replicas


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
