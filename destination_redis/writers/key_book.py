"""The keys a templated stream wrote, recorded so that an overwrite or refresh deletes those and
nothing else.

A template's keys (`user:42`) cannot be told from the application's own keys by their name, so
ownership is written down: per stream and hash slot one sorted set (keys.owned_keys_book), member
the record key, score the id of the last record written to it. Each entry is written inside the
record's own MULTI .. EXEC (key and book share a hash slot, so this holds on Redis Cluster too):
a key is never written without its entry, even when the connector is killed mid-batch, and a
batch resent after a lost reply writes the same entries again (ZADD is idempotent).

Cost: one ZADD per record, inside its MULTI (one more reply). In Redis memory about the key's
length plus ~12 bytes per key while its slot's set is small (a listpack, up to
zset-max-listpack-entries = 128 entries: ~2M keys per stream), plus one small key per hash slot
used (at most 16,384 per stream).

Old generations are the entries scored below the cutoff id. Where the cache type stores its id in
the value, a key is deleted only if it still holds the id its entry names: a key the application
rewrote (or wrote again after ours expired) is left alone, and only its entry goes.
"""

from __future__ import annotations

from collections.abc import Iterator

from destination_redis import keys
from destination_redis.topology.router import Router
from destination_redis.writers.encoding import Encoding

READ_BATCH = 512  # books read per round trip when looking for old entries
PAGE = 1000  # entries of one book read (and deleted in one MULTI) at a time


class KeyBook:
    """One stream's record of the keys it wrote, one sorted set per hash slot."""

    def __init__(self, stream: bytes, key_prefix: str, router: Router, encoding: Encoding) -> None:
        """`stream`: the stream key without the prefix (`<namespace>:<name>`)."""
        self.stream = stream
        self.prefix = key_prefix
        self.router = router
        self.encoding = encoding
        self._books: dict[int, bytes] = {}

    def book(self, key: bytes) -> bytes:
        """The sorted set that records `key`: in `key`'s hash slot."""
        slot = keys.key_slot(key)
        book = self._books.get(slot)
        if book is None:
            book = self._books[slot] = keys.owned_keys_book(self.stream, self.prefix, slot)
        return book

    def record(self, key: bytes, record_id: int) -> bytes:
        """RESP of `ZADD <book> <id> <key>`, for the record's MULTI."""
        book = self.book(key)
        score = b"%d" % record_id
        return b"*4\r\n$4\r\nZADD\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
            len(book), book, len(score), score, len(key), key,
        )

    def forget(self, key: bytes) -> bytes:
        """RESP of `ZREM <book> <key>`, beside the DEL of a CDC delete."""
        book = self.book(key)
        return b"*3\r\n$4\r\nZREM\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(book), book, len(key), key)

    def delete_older_than(self, first_kept_id: int | None) -> int:
        """Delete the keys last written by a record with an id below `first_kept_id` (None: every
        key recorded), and their entries; returns how many keys were deleted."""
        deleted = 0
        verb = b"UNLINK" if self.router.server.has_unlink else b"DEL"
        for book, entries in self._old_entries(first_kept_id):
            owned = self._still_ours(entries)
            unit: list[tuple[bytes | int, ...]] = [(b"MULTI",)]
            if owned:
                unit.append((verb, *owned))
            unit += [(b"ZREM", book, *(key for key, _ in entries)), (b"EXEC",)]
            # The keys share the book's slot: one MULTI, one node. Counted as verified (a resent
            # MULTI whose first run went through finds them gone).
            self.router.run(unit)
            deleted += len(owned)
        return deleted

    def forget_expired(self) -> int:
        """Remove the entries of keys that no longer exist (expired, or deleted by a past expiry
        time): for streams whose keys expire, so that an append-only stream's books do not grow
        with keys long gone. One EXISTS per entry; returns how many entries went."""
        forgotten = 0
        for book, entries in self._old_entries(None):
            replies = self.router.run([(b"EXISTS", key) for key, _ in entries])
            gone = [key for (key, _), exists in zip(entries, replies, strict=True) if not exists]
            if gone:
                self.router.run([(b"ZREM", book, *gone)])
                forgotten += len(gone)
        return forgotten

    def _old_entries(self, first_kept_id: int | None) -> Iterator[tuple[bytes, list[tuple[bytes, int]]]]:
        """(book, [(key, id), ...]) in pages of at most PAGE entries, for every entry below the
        cutoff. A book's scores are record ids, one record per key, so no two entries share a
        score: the next page starts after the last score seen, whatever the caller removed."""
        upper = b"+inf" if first_kept_id is None else b"(%d" % first_kept_id
        names = [keys.owned_keys_book(self.stream, self.prefix, slot) for slot in range(keys.SLOTS)]
        for start in range(0, len(names), READ_BATCH):
            batch = names[start : start + READ_BATCH]
            replies = self.router.run([self._page(book, b"-inf", upper) for book in batch])
            for book, reply in zip(batch, replies, strict=True):
                while reply:
                    entries = [(reply[i], int(float(reply[i + 1]))) for i in range(0, len(reply), 2)]
                    yield book, entries
                    if len(entries) < PAGE:
                        break
                    (reply,) = self.router.run([self._page(book, b"(%d" % entries[-1][1], upper)])

    @staticmethod
    def _page(book: bytes, lower: bytes, upper: bytes) -> tuple[bytes, ...]:
        return (b"ZRANGEBYSCORE", book, lower, upper, b"WITHSCORES", b"LIMIT", b"0", b"%d" % PAGE)

    def _still_ours(self, entries: list[tuple[bytes, int]]) -> list[bytes]:
        """The entries' keys that still hold the record the entry names (where the cache type
        stores ids; `string` does not, and its entries are trusted)."""
        if self.encoding.id_command(b"") is None:
            return [key for key, _ in entries]
        commands = [self.encoding.id_command(key) for key, _ in entries]
        replies = self.router.run([c for c in commands if c is not None], tolerate_errors=True)
        return [
            key for (key, record_id), reply in zip(entries, replies, strict=True)
            if self.encoding.parse_id(reply) == record_id
        ]
