"""One stream's search index, kept in step with the stream's schema across syncs.

The name users query (`search_index.name`) is an alias of a physical index
`<name>:<digest of its definition>`, so it can move at once from one physical index to another:
- absent: the physical index is created (before the first record is written) and the alias set;
- the same definition: reused;
- properties added to the schema: FT.ALTER .. SCHEMA ADD (the query engine indexes the
  existing records again in the background);
- a changed type, prefix or filter: a new physical index is built beside the old one, the alias
  moved once it has indexed what exists, the old one dropped (its records stay). Queries by the
  name never fail meanwhile.
New writes are indexed as they are written; what the query engine does in the background (after
a create or an ALTER) is waited for before the stream's next state is released (`settle`),
bounded: a timeout is a transient_error naming the index.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import hiredis

from destination_redis.errors import config_error, transient_error
from destination_redis.search.schema import IndexField, schema_args
from destination_redis.topology.router import Router

logger = logging.getLogger("airbyte")

POLL_S = 0.05


@dataclass(frozen=True)
class Definition:
    """What an index covers and how: FT.CREATE's words after the index name."""

    on_json: bool
    prefix: bytes
    filter: str
    fields: tuple[IndexField, ...]

    def create_args(self) -> list[bytes | str]:
        return [
            "ON", "JSON" if self.on_json else "HASH", "PREFIX", "1", self.prefix, "FILTER", self.filter,
            "SCHEMA", *schema_args(self.fields),
        ]

    def digest(self) -> str:
        words = [w if isinstance(w, bytes) else w.encode() for w in self.create_args()]
        return hashlib.sha256(b"\0".join(words)).hexdigest()[:12]


class SearchIndex:
    def __init__(
        self, router: Router, name: str, definition: Definition, label: str, timeout_s: float = 300.0
    ) -> None:
        self.router = router
        self.name = name
        self.definition = definition
        self.label = label  # the stream's, for messages
        self.timeout_s = timeout_s
        self.physical = ""
        self._background = False  # a create or ALTER whose scan was not yet seen finished

    def ensure(self) -> None:
        """Before the first record: the index exists with every field of the definition."""
        info = self._info(self.name)
        if info is None:
            self.physical = self._create()
            self._run(("FT.ALIASUPDATE", self.name, self.physical))
            logger.info(f"Stream '{self.label}': created search index '{self.name}' ({self.physical}).")
            return
        self.physical = _text(info.get(b"index_name"))
        current = _attributes(info)
        wanted = {field.name: field for field in self.definition.fields}
        changed = [n for n, field in wanted.items() if current.get(n, _shape(field)) != _shape(field)]
        if changed or not self._same_target(info):
            self._rebuild(changed)
            return
        added = [field for name, field in wanted.items() if name not in current]
        if added:
            self._run(("FT.ALTER", self.physical, "SCHEMA", "ADD", *schema_args(added)))
            self._background = True
            logger.info(
                f"Stream '{self.label}': search index '{self.name}' gained "
                f"{', '.join(f.name for f in added)} (existing records are indexed again)."
            )

    def settle(self) -> None:
        """Wait, bounded, until the query engine has indexed what exists (after a create or an
        ALTER); new writes are indexed as they are written, so once is enough."""
        if not self._background:
            return
        deadline = time.monotonic() + self.timeout_s
        while True:
            info = self._info(self.physical or self.name)  # during a rebuild, the new index
            if info is not None and _text(info.get(b"indexing")) in ("0", ""):
                self._background = False
                return
            if time.monotonic() > deadline:
                done = _text(info.get(b"percent_indexed")) if info else "?"
                raise transient_error(
                    f"Search index '{self.name}' of stream '{self.label}' was still indexing after "
                    f"{self.timeout_s:.0f} s ({_percent(done)} done): its records are written, but "
                    f"queries would not find all of them yet. Retry the sync, or raise "
                    f"search_index.indexing_timeout_seconds."
                )
            time.sleep(POLL_S)

    def report(self) -> str:
        """The LOG line after the stream completed: documents, and whether indexing finished."""
        info = self._info(self.name) or {}
        done = _percent(_text(info.get(b"percent_indexed")))
        state = "fully indexed" if _text(info.get(b"indexing")) in ("0", "") else f"still indexing ({done})"
        docs = _text(info.get(b"num_docs")) or "0"
        failures = _text(info.get(b"hash_indexing_failures")) or "0"
        failed = (
            f" {failures} record{'' if failures == '1' else 's'} could not be indexed: their values do "
            f"not fit the index's types (the stream's schema)." if failures != "0" else ""
        )
        return (
            f"Stream '{self.label}': search index '{self.name}' holds {docs} "
            f"document{'' if docs == '1' else 's'}, {state}.{failed}"
        )

    def _create(self) -> str:
        physical = f"{self.name}:{self.definition.digest()}"
        if self._info(physical) is None:  # an attempt that died after its FT.CREATE made it
            self._run(("FT.CREATE", physical, *self.definition.create_args()))
        self._background = True
        return physical

    def _rebuild(self, changed: Sequence[str]) -> None:
        old = self.physical
        if old == self.name:
            raise config_error(
                f"Stream '{self.label}': the search index '{self.name}' exists and was not created "
                f"by this connector (it is an index, not an alias), and its definition differs "
                f"({', '.join(changed) or 'prefix or filter'}). Drop it (FT.DROPINDEX {self.name}) "
                f"or choose another search_index.name."
            )
        new = self._create()
        self.physical = new
        self.settle()  # queries keep using the old index meanwhile
        self._run(("FT.ALIASUPDATE", self.name, new))
        if old != new:
            self._run(("FT.DROPINDEX", old))  # its records stay (no DD)
        logger.info(
            f"Stream '{self.label}': search index '{self.name}' rebuilt as {new} "
            f"({', '.join(changed) or 'prefix or filter'} changed); queries moved over at once."
        )

    def _same_target(self, info: dict[bytes, Any]) -> bool:
        definition = _pairs(info.get(b"index_definition"))
        key_type = _text(definition.get(b"key_type"))
        prefixes = definition.get(b"prefixes") or []
        return (
            key_type == ("JSON" if self.definition.on_json else "HASH")
            and [bytes(p) for p in prefixes] == [self.definition.prefix]
            and _text(definition.get(b"filter")) == self.definition.filter
        )

    def _info(self, name: str) -> dict[bytes, Any] | None:
        """FT.INFO as a dict; None when there is no such index or alias."""
        (reply,) = self.router.run([("FT.INFO", name)], tolerate_errors=True)
        if isinstance(reply, hiredis.ReplyError) or not isinstance(reply, list):
            return None
        return _pairs(reply)

    def _run(self, command: tuple[Any, ...]) -> Any:
        (reply,) = self.router.run([command])
        return reply


def _pairs(reply: Any) -> dict[bytes, Any]:
    if not isinstance(reply, list):
        return {}
    return {bytes(reply[i]): reply[i + 1] for i in range(0, len(reply) - 1, 2) if isinstance(reply[i], bytes)}


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return "" if value is None else str(value)


def _percent(fraction: str) -> str:
    try:
        return f"{float(fraction) * 100:.0f}%"
    except ValueError:
        return "?"


def _attributes(info: dict[bytes, Any]) -> dict[str, tuple[str, ...]]:
    """attribute name -> its shape (source, type, vector settings), from FT.INFO: each attribute
    is `identifier I attribute A type T` then flags (SORTABLE, UNF) or, for a vector, pairs."""
    found: dict[str, tuple[str, ...]] = {}
    for attribute in info.get(b"attributes") or []:
        words = [_text(w) for w in attribute]
        head = {words[i].lower(): words[i + 1] for i in range(0, min(len(words), 6) - 1, 2)}
        kind = head.get("type", "")
        shape: tuple[str, ...] = (head.get("identifier", ""), kind)
        if kind == "VECTOR":
            rest = {words[i].lower(): words[i + 1] for i in range(6, len(words) - 1, 2)}
            shape += tuple(rest.get(k, "") for k in ("algorithm", "dim", "distance_metric"))
        found[head.get("attribute", "")] = shape
    return found


def _shape(field: IndexField) -> tuple[str, ...]:
    """What FT.INFO says of a field made from `field`, to compare with `_attributes`."""
    if field.kind == "VECTOR" and field.vector is not None:
        v = field.vector
        return (field.source, "VECTOR", v.algorithm, str(v.dims), v.distance_metric)
    return (field.source, field.kind)
