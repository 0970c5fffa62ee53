"""The collection types pack their batches by hand (members.py): byte for byte what hiredis makes of
their readable `commands`, for every type, batch size and kind of value."""

from __future__ import annotations

from typing import Any

import hiredis
import pytest

from destination_redis.connection.server import ServerInfo
from destination_redis.writers import MEMBERS
from destination_redis.writers.members import CHUNK, Members, Number

SERVER = ServerInfo(version=(7, 0, 15), mode="standalone")


class _NewKeys:
    """A router for Members that only ever asks about a key that does not exist yet."""

    server = SERVER

    def run(self, commands: list[tuple[bytes, ...]], *args: Any, **kwargs: Any) -> list[Any]:
        assert [command[0] for command in commands] == [b"TYPE"], commands
        return [b"none"]


def _members(cache_type: str, score_field: str | None = None) -> Members:
    return MEMBERS[cache_type](_NewKeys(), b"app:ns:s", "app:", score_field)  # type: ignore[arg-type]


def _batch(size: int) -> tuple[list[int], list[bytes]]:
    """Records with lengths from 2 bytes to past the kept heads (16 KiB), UTF-8 and escapes, and
    emitted_at that repeats, grows and goes back (stream ids: seq + 1 where it does not grow)."""
    datas = [b'{"i":%d,"s":"Z\xc3\xbcrich \\"q\\"","pad":"%s"}' % (i, b"x" * (i * 37 % 400))
             for i in range(size)]
    if size > 3:
        datas[1], datas[2], datas[3] = b"{}", b'{"big":"%s"}' % (b"y" * 20_000), b'{"n":1e400}'
    emitted = [1_700_000_000_000 + i // 7 - (50 if i % 97 == 96 else 0) for i in range(size)]
    return emitted, datas


def _packed(members: Members, key: bytes, numbers: list[Number], datas: list[bytes]) -> tuple[bytes, int]:
    out: list[bytes] = []
    count = members.pack(key, numbers, datas, out)
    return b"".join(out), count


def _by_hiredis(members: Members, key: bytes, numbers: list[Number], datas: list[bytes]) -> tuple[bytes, int]:
    commands = members.commands(key, numbers, datas)
    return b"".join(hiredis.pack_command(tuple(command)) for command in commands), len(commands)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [1, 2, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 500])
@pytest.mark.parametrize("cache_type", ["list", "set", "sorted_set", "stream"])
def test_a_packed_batch_is_what_hiredis_makes_of_its_commands(cache_type: str, size: int) -> None:
    emitted, datas = _batch(size)
    numbers: list[Number] = list(emitted)
    # Two instances, so that both start from the same last stream id.
    packed = _packed(_members(cache_type), b"app:{app:ns:s}:_airbyte_stage", numbers, datas)
    assert packed == _by_hiredis(_members(cache_type), b"app:{app:ns:s}:_airbyte_stage", numbers, datas)
    commands, count = packed[0], packed[1]
    reader = hiredis.Reader()
    reader.feed(commands)
    parsed = []
    while (command := reader.gets()) is not False:
        parsed.append(command)
    assert len(parsed) == count
    assert count == (size if cache_type == "stream" else -(-size // CHUNK))


def test_sorted_set_scores_by_score_field_are_packed_as_their_text() -> None:
    members = _members("sorted_set", "p")
    datas = [b'{"p":%d}' % i for i in range(2 * CHUNK + 3)] + [b'{"p":-1.5e3}', b'{"p":1e999}']
    assert members.number is not None
    numbers = [members.number(7, data) for data in datas]
    assert numbers[-2:] == [b"-1500.0", b"inf"]
    assert _packed(members, b"Z", numbers, datas) == _by_hiredis(members, b"Z", numbers, datas)


def test_only_sorted_set_with_score_field_sees_each_record() -> None:
    """Every other type keeps a record's emitted_at as it is: no call per record."""
    assert [t for t in MEMBERS if _members(t).number is not None] == []
    assert _members("sorted_set", "p").number is not None


def test_stream_ids_continue_across_batches_and_follow_emitted_at() -> None:
    members = _members("stream")
    first, _ = _packed(members, b"K", [1000, 1000, 999], [b"{}"] * 3)
    assert first.count(b"\r\n1000-") == 3
    assert b"1000-2\r\n" in first
    guard = members.guard(b"K")
    assert guard is not None
    guard.done()  # acknowledged: the next batch follows it
    second, _ = _packed(members, b"K", [1000, 1001], [b"{}"] * 2)
    assert b"1000-3\r\n" in second
    assert b"1001-0\r\n" in second
