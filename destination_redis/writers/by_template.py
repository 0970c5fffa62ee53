"""Addressing by key template: each record at the key its template renders (`user:{id}` ->
`<prefix>user:42`), the key the application reads.

The rendered key identifies the record in every sync mode, so every upsert is the dedup
layout's atomic replace (`MULTI; DEL; write; [expiry]; ZADD <book>; EXEC`) and a CDC delete
deletes the key. Ids still come from the counter `K` and are stored in the value where the
cache type can. Which keys the stream owns is recorded in its key book (key_book.py), in the
same MULTI as each write: an overwrite or refresh deletes only those, never an application key
of the same shape.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import msgspec

from destination_redis import keys
from destination_redis.catalog import Stream
from destination_redis.key_template import KeyTemplate
from destination_redis.topology.router import Router
from destination_redis.writers.base import RecordError
from destination_redis.writers.by_key import KeyWriter
from destination_redis.writers.encoding import DEL, EXEC, MULTI, Encoding, json_text
from destination_redis.writers.expiry import Expiry
from destination_redis.writers.fields import follow
from destination_redis.writers.key_book import KeyBook

logger = logging.getLogger("airbyte")


class TemplateWriter(KeyWriter):
    extra_replies = 1  # the ZADD recording the key

    def __init__(
        self, stream: Stream, router: Router, encoding: Encoding, template: KeyTemplate,
        ttl_seconds: int | None = None, key_prefix: str = "", expiry: Expiry | None = None,
    ) -> None:
        self.template = template
        self._prefix = key_prefix.encode()
        super().__init__(stream, router, encoding, ttl_seconds, key_prefix, expiry)
        self.book = KeyBook(keys.stream_key(stream.namespace, stream.name), key_prefix, router, encoding)

    def key_paths(self) -> Sequence[tuple[str, ...]]:
        return self.template.paths

    def address(self, found: tuple[msgspec.Raw, ...]) -> bytes:
        key = self.template.render(self._prefix, [self._text(found[top], path) for top, path in self._paths])
        if not key:
            raise RecordError(
                f"the key_template '{self.template.text}' of stream '{self.stream.label}' renders an "
                f"empty key for this record"
            )
        return key

    def _text(self, raw: msgspec.Raw, path: tuple[str, ...]) -> bytes:
        """A placeholder's value as it is inserted: a string's text, a number as the source
        wrote it, true/false; a missing or null value, or an object or array, has no key."""
        value = raw if len(path) == 1 else follow(raw, path)
        text = bytes(value) if value is not None else b"null"
        if text == b"null" or text[:1] in (b"{", b"["):
            what = "missing or null" if text == b"null" else f"an {'object' if text[:1] == b'{' else 'array'}"
            raise RecordError(
                f"the key_template '{self.template.text}' of stream '{self.stream.label}' needs "
                f"'{'.'.join(path)}', which is {what} in this record"
            )
        return json_text(text)

    def record_extra(self, key: bytes, record_id: int) -> bytes:
        return self.book.record(key, record_id)

    def delete_unit(self, key: bytes) -> tuple[bytes, int]:
        """`MULTI; DEL key; ZREM <book> key; EXEC`: the key and its entry go together."""
        return MULTI + DEL % (len(key), key) + self.book.forget(key) + EXEC, 4

    def complete(self) -> None:
        """After the base's cleanup of older generations: where keys expire, the entries of keys
        that are gone are forgotten, so that the books of an append-only stream stay as large as
        what it holds."""
        super().complete()
        if self.expiry.active:
            forgotten = self.book.forget_expired()
            if forgotten:
                logger.info(
                    f"Stream '{self.stream.label}': forgot {forgotten} recorded keys that have expired."
                )

    def delete_older_than(self, first_kept_id: int | None, floor: int = 1) -> int:
        """The keys this stream recorded, last written below `first_kept_id` (None: all)."""
        return self.book.delete_older_than(first_kept_id)
