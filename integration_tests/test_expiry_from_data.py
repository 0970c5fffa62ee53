"""Expiry from the data against real servers: `expire_at_field` (epoch seconds, epoch milliseconds
above 10**11, RFC 3339 text with an offset -> PEXPIREAT) and `ttl_field` (seconds -> EXPIRE, a
fraction -> PEXPIRE), else the stream's ttl_seconds, else no expiry; top level and per stream; in
the append (`K:<id>`), append_dedup (`K:<pk>`) and key-template layouts, for each per-record type.

TTLs are asserted as ranges: a key expiring at T has, when read between the clock readings
`before` (taken before the sync) and `after` (taken after the reads), a PTTL in
[T - after, T - before]; a ttl of R ms set at some moment in between, a PTTL in
[R - (after - before), R]. Nothing sleeps: a time already past must leave no key at once.

The core tests run on every server of the matrix (Redis 2.8 to 7.0, Valkey, the cluster), a sync
each, in this process (`run_here`: what the CLI's write runs, without a process start); the CLI
itself runs once for a bad value (exit code, TRACE) and for json (RedisJSON loaded), on 7.0.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from integration_tests.cli import stream_state
from integration_tests.matrix import ServerBinary
from integration_tests.servers import RedisServer
from integration_tests.test_cache_types import rejson_path
from integration_tests.test_key_templates import (
    PREFIX,
    Clock,
    check_status,
    now_ms,
    raw_record,
    refused,
    refused_here,
    run_here,
    run_write,
    states_of,
    sync,
    sync_here,
    template,
)
from integration_tests.test_sync_modes import configured

PAST_S = 1_000_000_000  # 2001-09-09T01:46:40Z
TOLERANCE_MS = 2  # PTTL and the test's clock each round to the millisecond

# What a key's expiry must be: ("at", epoch ms), ("ttl", ms), NONE: no TTL, GONE: no key.
Expect = tuple[str, int]
NONE: Expect = ("none", 0)
GONE: Expect = ("gone", 0)


def at(ms: int) -> Expect:
    return ("at", ms)


def ttl(seconds: float) -> Expect:
    return ("ttl", round(seconds * 1000))


def rfc3339(epoch_s: int, offset_hours: int = 0, fraction: str = "") -> str:
    """The instant `epoch_s` as RFC 3339 text in the offset given: `...Z`, or `...+02:00`."""
    local = datetime.fromtimestamp(epoch_s + offset_hours * 3600, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return local + fraction + ("Z" if offset_hours == 0 else f"{offset_hours:+03d}:00")


def pttls(client: redis.Redis, keys: list[str]) -> dict[str, int]:
    return {key: int(client.pttl(key)) for key in keys}


def assert_exact_times(client: redis.Redis, expected: dict[str, Expect]) -> None:
    """Redis 7.0 and later: PEXPIRETIME, the key's expiry time to the millisecond, equals the time
    the record named (its milliseconds rounded down)."""
    times = {key: int(client.pexpiretime(key)) for key, expect in expected.items() if expect[0] == "at"}
    assert times == {key: expect[1] for key, expect in expected.items() if expect[0] == "at"}


def assert_ttl_difference(client: redis.Redis, key: str, reference: str, difference_ms: int) -> None:
    """Two records of one stream and batch, given ttls: their keys expire apart by the difference
    of the ttls, to within the moments between their writes: a fraction of a second is kept, not
    rounded to whole seconds (a rounding would be 500 ms off for the ttls used)."""
    found = int(client.pttl(key)) - int(client.pttl(reference))
    assert abs(found - difference_ms) <= 250, (key, reference, found, difference_ms)


def assert_expiries(client: redis.Redis, clock: Clock, expected: dict[str, Expect]) -> None:
    """Each key's PTTL against what it must be (read first, then the clock stops)."""
    found = pttls(client, list(expected))
    clock.stop()
    wrong = {}
    for key, expect in expected.items():
        pttl = found[key]
        if expect == NONE:
            ok = pttl == -1
        elif expect == GONE:
            ok = pttl == -2
        elif expect[0] == "at":
            low, high = expect[1] - clock.after - TOLERANCE_MS, expect[1] - clock.before + TOLERANCE_MS
            ok = pttl >= 0 and low <= pttl <= high
        else:
            ok = pttl >= 0 and expect[1] - (clock.after - clock.before) - TOLERANCE_MS <= pttl <= expect[1]
        if not ok:
            wrong[key] = (expect, pttl)
    assert wrong == {}, f"{wrong} (clock: {clock.before} .. {clock.after})"


# --- every form, every layout: one run -----------------------------------------------------------


STREAMS = [
    {"name": "n", "cache_type": "hash_fields", "ttl_seconds": 0},
    {"name": "t", "cache_type": "hash_fields", "ttl_field": "ttl"},
    {"name": "o", "cache_type": "string", "expire_at_field": "until", "ttl_seconds": 50},
    {"name": "ds", "cache_type": "string", "ttl_field": "ttl", "ttl_seconds": 0},
    template("k", "k:{id}", cache_type="hash_fields", ttl_field="ttl"),
    template("kd", "kd:{id}", cache_type="string", expire_at_field="until", ttl_seconds=0),
]


@pytest.mark.core
def test_expiry_from_the_data_in_every_layout(
    redis_server: RedisServer, redis_client: redis.Redis, redis_binary: ServerBinary
) -> None:
    """Top level: expire_at_field `exp`, ttl_seconds 1000. Streams: `e` (append, hash) takes them;
    `n` (hash_fields) has ttl_seconds 0; `t` (hash_fields) adds ttl_field `ttl`; `o` (string) has
    its own expire_at_field `until` and ttl_seconds 50; `d` (append_dedup, hash) takes the top
    level; `ds` (append_dedup, string) adds ttl_field `ttl` with ttl_seconds 0; `k` (template,
    hash_fields) adds `ttl`; `kd` (template, append_dedup, string) has `until` and ttl_seconds 0."""
    clock = Clock()
    s = clock.before // 1000 + 3600  # in an hour, in epoch seconds
    ms = clock.before + 7_200_123  # in two hours, in epoch milliseconds
    in_3h, in_4h = s + 2 * 3600, s + 3 * 3600
    catalog = [configured(name, "append") for name in ("e", "n", "t", "o", "k")]
    catalog += [configured(name, "append_dedup", [["id"]]) for name in ("d", "ds", "kd")]
    messages = [
        # e: every form of expire_at_field, and the fallback to ttl_seconds
        raw_record("e", f'{{"id":1,"exp":{s}}}'),
        raw_record("e", f'{{"id":2,"exp":{ms}}}'),
        raw_record("e", f'{{"id":3,"exp":"{rfc3339(in_3h, 0, ".2509")}"}}'),
        raw_record("e", f'{{"id":4,"exp":"{rfc3339(in_4h, 2)}"}}'),
        raw_record("e", f'{{"id":5,"exp":{PAST_S}}}'),
        raw_record("e", '{"id":6,"exp":null}'),
        raw_record("e", '{"id":7}'),
        raw_record("e", f'{{"id":8,"exp":"{rfc3339(PAST_S)}"}}'),
        raw_record("e", f'{{"id":9,"exp":"{s}.5"}}'),  # a decimal string
        raw_record("e", f'{{"id":10,"exp":{s}.25}}'),
        raw_record("e", f'{{"id":11,"exp":{ms}.9}}'),  # milliseconds with a fraction
        # n: ttl_seconds 0, so null / absent: no expiry
        raw_record("n", '{"id":1,"exp":null}'),
        raw_record("n", '{"id":2}'),
        raw_record("n", f'{{"id":3,"exp":{s}}}'),
        # t: ttl_field too; expire_at wins where present
        raw_record("t", '{"id":1,"ttl":600}'),
        raw_record("t", '{"id":2,"ttl":100.9}'),
        raw_record("t", '{"id":3,"ttl":"120"}'),
        raw_record("t", f'{{"id":4,"ttl":600,"exp":{s}}}'),
        raw_record("t", '{"id":5,"ttl":null,"exp":null}'),
        raw_record("t", '{"id":6,"ttl":0}'),
        raw_record("t", '{"id":7,"ttl":600,"exp":null}'),
        raw_record("t", '{"id":8,"ttl":"600.5"}'),
        raw_record("t", '{"id":9,"ttl":-5}'),  # a ttl of zero or less: the key is deleted
        # o: its own field replaces the top level's
        raw_record("o", f'{{"id":1,"exp":{s}}}'),
        raw_record("o", f'{{"id":2,"until":{ms}}}'),
        # d: append_dedup; a later record of the same key decides
        raw_record("d", f'{{"id":1,"exp":{s}}}'),
        raw_record("d", '{"id":2,"exp":null}'),
        raw_record("d", f'{{"id":3,"exp":{PAST_S}}}'),
        raw_record("d", f'{{"id":4,"exp":{PAST_S}}}'),
        raw_record("d", f'{{"id":4,"exp":{s}}}'),
        raw_record("d", f'{{"id":5,"exp":{s}}}'),
        raw_record("d", f'{{"id":5,"exp":"{rfc3339(PAST_S)}"}}'),
        # ds
        raw_record("ds", '{"id":1,"ttl":200.5}'),
        raw_record("ds", '{"id":2}'),
        raw_record("ds", f'{{"id":3,"exp":{s},"ttl":5}}'),
        raw_record("ds", '{"id":4,"ttl":600}'),
        # k: templated append (lower-case t and z are RFC 3339 too)
        raw_record("k", f'{{"id":1,"exp":"{rfc3339(in_3h).replace("T", "t").replace("Z", "z")}"}}'),
        raw_record("k", '{"id":2,"ttl":300}'),
        raw_record("k", '{"id":3}'),
        raw_record("k", f'{{"id":4,"exp":{PAST_S}}}'),
        # kd: templated append_dedup
        raw_record("kd", f'{{"id":1,"until":"{rfc3339(in_4h, 2)}"}}'),
        raw_record("kd", '{"id":2}'),
        raw_record("kd", f'{{"id":3,"until":{ms}}}'),
        stream_state("e", {"c": 1}),
    ]
    run = sync_here(
        redis_server, catalog, *messages,
        key_prefix=PREFIX, expire_at_field="exp", ttl_seconds=1000, streams=STREAMS,
    )
    assert states_of(run) == [{"c": 1}]
    expected: dict[str, Expect] = {
        "app::e:1": at(s * 1000),
        "app::e:2": at(ms),
        "app::e:3": at(in_3h * 1000 + 250),  # milliseconds rounded down
        "app::e:4": at(in_4h * 1000),
        "app::e:5": GONE,
        "app::e:6": ttl(1000),
        "app::e:7": ttl(1000),
        "app::e:8": GONE,
        "app::e:9": at(s * 1000 + 500),
        "app::e:10": at(s * 1000 + 250),
        "app::e:11": at(ms),
        "app::n:1": NONE,
        "app::n:2": NONE,
        "app::n:3": at(s * 1000),
        "app::t:1": ttl(600),
        "app::t:2": ttl(100.9),
        "app::t:3": ttl(120),
        "app::t:4": at(s * 1000),
        "app::t:5": ttl(1000),
        "app::t:6": GONE,
        "app::t:7": ttl(600),
        "app::t:8": ttl(600.5),
        "app::t:9": GONE,
        "app::o:1": ttl(50),
        "app::o:2": at(ms),
        "app::d:1": at(s * 1000),
        "app::d:2": ttl(1000),
        "app::d:3": GONE,
        "app::d:4": at(s * 1000),
        "app::d:5": GONE,
        "app::ds:1": ttl(200.5),
        "app::ds:2": NONE,
        "app::ds:3": at(s * 1000),
        "app::ds:4": ttl(600),
        "app:k:1": at(in_3h * 1000),
        "app:k:2": ttl(300),
        "app:k:3": ttl(1000),
        "app:k:4": GONE,
        "app:kd:1": at(in_4h * 1000),
        "app:kd:2": NONE,
        "app:kd:3": at(ms),
    }
    # The counters never expire.
    expected.update({f"app::{name}": NONE for name in ("e", "n", "t", "o", "d", "ds", "k", "kd")})
    assert_expiries(redis_client, clock, expected)
    if redis_binary.redis_version >= (7, 0, 0):
        assert_exact_times(redis_client, expected)
    assert_ttl_difference(redis_client, "app::t:2", "app::t:1", 100_900 - 600_000)
    assert_ttl_difference(redis_client, "app::ds:1", "app::ds:4", 200_500 - 600_000)
    assert_ttl_difference(redis_client, "app::t:8", "app::t:1", 600_500 - 600_000)
    stored = {k.decode() for k in redis_client.keys("*") if isinstance(k, bytes)}
    records = {key for key in stored if not key.startswith("app:_airbyte_meta:")}
    assert records == {key for key, expect in expected.items() if expect != GONE}
    # The values are the layouts' own: a string is the record alone; the expiry fields stay in it.
    assert redis_client.get("app::o:2") == f'{{"id":2,"until":{ms}}}'.encode()
    assert redis_client.hget("app::t:2", "ttl") == b"100.9"
    assert redis_client.hget("app:k:2", "_airbyte_ab_id") == b"2"


BAD_LINE_MESSAGE = (
    "Input line 4: the expire_at_field 'exp' holds \"tomorrow\", which is not a time (epoch seconds or "
    "milliseconds, or RFC 3339 text with a UTC offset). Everything before it was written and its "
    "states emitted."
)


def _bad_lines(s: int) -> list[str]:
    """Two records (expiring at `s`, and by ttl_seconds) around a state, then a bad value on line 4."""
    return [
        raw_record("e", f'{{"id":1,"exp":{s}}}'),
        stream_state("e", {"c": 1}),
        raw_record("e", '{"id":2}'),
        raw_record("e", '{"id":3,"exp":"tomorrow"}'),
        raw_record("e", f'{{"id":4,"exp":{s}}}'),
        stream_state("e", {"c": 4}),
    ]


@pytest.mark.core
def test_a_bad_expiry_value_names_its_line(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    """The records before the bad line are written (with their expiry) and their states released;
    a config_error names the line and the value."""
    clock = Clock()
    s = clock.before // 1000 + 3600
    run = run_here(
        redis_server, [configured("e", "append")], *_bad_lines(s),
        key_prefix=PREFIX, expire_at_field="exp", ttl_seconds=1000,
    )
    message = refused_here(run, BAD_LINE_MESSAGE)
    assert message.startswith("Input line 4:"), message
    assert states_of(run) == [{"c": 1}]
    assert_expiries(redis_client, clock, {"app::e:1": at(s * 1000), "app::e:2": ttl(1000), "app::e": NONE})
    assert sorted(redis_client.keys("*")) == [b"app::e", b"app::e:1", b"app::e:2"]


def test_a_bad_expiry_value_on_the_command_line(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """The whole command: the state before the bad line on stdout, one TRACE config_error, exit 1."""
    s = now_ms() // 1000 + 3600
    result = run_write(
        redis_server, tmp_path, [configured("e", "append")], *_bad_lines(s),
        key_prefix=PREFIX, expire_at_field="exp", ttl_seconds=1000,
    )
    refused(result, BAD_LINE_MESSAGE)
    assert states_of(result) == [{"c": 1}]
    assert sorted(redis_client.keys("*")) == [b"app::e", b"app::e:1", b"app::e:2"]


BAD_VALUES = [
    (
        "append_dedup", {"ttl_field": "ttl"}, '{"id":3,"ttl":"abc"}',
        "the ttl_field 'ttl' holds \"abc\", which is not a number of seconds, as a JSON number or a "
        "decimal string",
    ),
    (
        "append", {"key_template": "k:{id}", "expire_at_field": "exp"},
        '{"id":3,"exp":"2026-12-07T10:00:00"}',
        "the expire_at_field 'exp' holds \"2026-12-07T10:00:00\", a time without a UTC offset, whose instant "
        "is ambiguous (add Z or an offset such as +02:00)",
    ),
    (
        "append", {"expire_at_field": "exp"}, '{"id":3,"exp":true}',
        "the expire_at_field 'exp' holds true, which is not a time",
    ),
    (
        "append_dedup", {"key_template": "k:{id}", "expire_at_field": "exp"}, '{"id":3,"exp":1e30}',
        "the expire_at_field 'exp' holds 1e30, which is out of range for a time",
    ),
    (
        "append", {"ttl_field": "ttl"}, '{"id":3,"ttl":{"s":1}}',
        "the ttl_field 'ttl' holds {\"s\":1}, which is not a number of seconds",
    ),
    (
        "append", {"expire_at_field": "exp"}, '{"id":3,"exp":"2026-02-30T00:00:00Z"}',
        "the expire_at_field 'exp' holds \"2026-02-30T00:00:00Z\", which is not a time",
    ),
]


@pytest.mark.parametrize(
    ("mode", "settings", "data", "problem"), BAD_VALUES,
    ids=[
        "dedup-ttl-text", "template-no-offset", "boolean", "template-dedup-out-of-range", "object",
        "no-such-day",
    ],
)
def test_bad_expiry_values_in_each_layout(
    mode: str, settings: dict[str, Any], data: str, problem: str,
    redis_server: RedisServer, redis_client: redis.Redis,
) -> None:
    """In the append, append_dedup and template layouts: the error names the line and the value;
    what came before is written and its state released (run in this process)."""
    run = run_here(
        redis_server, [configured("e", mode, [["id"]] if mode == "append_dedup" else None)],
        raw_record("e", '{"id":1}'),
        stream_state("e", {"c": 1}),
        raw_record("e", data),
        stream_state("e", {"c": 3}),
        streams=[{"name": "e", **settings}],
    )
    message = refused_here(run)
    assert message.startswith(f"Input line 3: {problem}"), message
    assert states_of(run) == [{"c": 1}]
    key = "k:1" if "key_template" in settings else ":e:1"
    assert redis_client.exists(key) == 1
    assert redis_client.pttl(key) == -1


# --- json ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def json_server() -> Iterator[RedisServer]:
    """Debian's redis-server 7.0 with the RedisJSON module loaded (as in test_cache_types.py)."""
    server = RedisServer(args=["--loadmodule", str(rejson_path())]).start()
    yield server
    server.stop()


def test_expiry_from_the_data_with_json(json_server: RedisServer, tmp_path: Path) -> None:
    """json documents expire as the other types: in append, and templated append_dedup."""
    with json_server.flushed_client() as client:
        clock = Clock()
        s = clock.before // 1000 + 3600
        sync(
            json_server, tmp_path, [configured("e", "append"), configured("k", "append_dedup", [["id"]])],
            raw_record("e", f'{{"id":1,"exp":{s}}}'),
            raw_record("e", '{"id":2,"ttl":30.5}'),
            raw_record("e", '{"id":3}'),
            raw_record("k", f'{{"id":1,"exp":"{rfc3339(s, -5)}"}}'),
            raw_record("k", f'{{"id":2,"exp":{PAST_S}}}'),
            cache_type="json", expire_at_field="exp", ttl_field="ttl",
            streams=[template("k", "k:{id}")],
        )
        assert_expiries(client, clock, {
            ":e:1": at(s * 1000), ":e:2": ttl(30.5), ":e:3": NONE, "k:1": at(s * 1000), "k:2": GONE,
        })
        assert client.execute_command("JSON.GET", "k:1", "$.exp") == f'["{rfc3339(s, -5)}"]'.encode()


def test_check_names_the_expiry_fields(json_server: RedisServer) -> None:
    """`check` says which properties keys expire from (top level, then per stream)."""
    state, message = check_status(
        json_server, cache_type="json", ttl_field="ttl", streams=[{"name": "e", "expire_at_field": "until"}]
    )
    assert state == "SUCCEEDED", message
    assert message.endswith(
        " Keys expire from the data: ttl_field 'ttl', expire_at_field 'until' (e)."
    ), message
