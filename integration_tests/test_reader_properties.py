"""Every input line is stored exactly or refused naming its line (hypothesis).

Each example writes, through `write_lines` in-process against a real redis-server, a few valid
records of `users`, a STATE, maybe more records, one *mutated* line and a last valid record.
The mutated line comes from a valid RECORD (or STATE, LOG, TRACE) line, changed in its structure
(a field of the wrong type, missing or twice, unknown fields, deep nesting, invalid UTF-8, NUL,
lone surrogates, exotic numbers, unicode) and/or in its bytes (truncated, bytes flipped, inserted
or deleted, non-JSON whitespace, a BOM).

The oracle is Python's strict reading of the line (`expectation`), never the connector's code:

- refused: a ConnectorError, `config_error`, whose message says "Input line N" for the
  mutated line; the records before it are in Redis exactly, the state before it was yielded, and
  the record after it was not written;
- accepted: the line was a valid record, stored exactly (data compared as parsed JSON, with
  numbers as their text, keys in order, duplicates kept), or a message that is not a record
  (a STATE is echoed), or a blank line; and the record after it is stored.

A line that is valid UTF-8 JSON (no NaN/Infinity), nested at most 512 levels, with type RECORD,
`record.stream` a string of the catalog, `record.data` an object, `record.emitted_at` an integer
(not a bool) and `record.namespace` absent, null or a string, must be stored. Anything deeper than
512 levels, anything that is not UTF-8 or not JSON, and every other RECORD must be refused.

Allowed refusals where msgspec is stricter than Python's json (Python accepts, msgspec refuses):
- lone surrogate escapes such as "\\udc80" or "\\ud800" anywhere in the line (msgspec:
  "invalid utf-16 surrogate pair"); they cannot be UTF-8 text in Redis anyway.
- a field of the message or of `record` given twice where an earlier value is invalid, e.g.
  {"type":1,"type":"RECORD",...}: Python keeps the last, msgspec checks every one. (When msgspec
  accepts such a line it also keeps the last, so it must then be stored as Python reads it.)
Blank lines must be skipped; lines of only non-JSON ASCII whitespace (\\x0b, \\x0c) may be skipped
or refused. A STATE, LOG (level and message) or TRACE whose payload is an object, without a
`record` field, must be accepted (a STATE echoed); other non-record messages may go either way.

`test_worst_lines` runs the same oracle on a fixed list of named lines; `test_cli_*` run the real
console script on the worst cases.
"""

from __future__ import annotations

import copy
import io
import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import redis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from destination_redis.catalog import parse_catalog
from destination_redis.config import parse_config
from destination_redis.errors import ConnectorError
from destination_redis.sync import read_lines, write_lines
from integration_tests.cli import catalog, run_connector
from integration_tests.servers import RedisServer

CATALOG = catalog(("users", "append"), ("orders", "append", "shop"))
# (namespace, name) -> the stream's counter key (README: the hash layout).
STREAM_KEYS = {("", "users"): ":users", ("shop", "orders"): "shop:orders"}
MAX_DEPTH = 512  # the contract's nesting limit (messages.MAX_DEPTH), counted from the line's top
MESSAGE_TYPES = {
    "RECORD", "STATE", "LOG", "TRACE", "CONTROL", "SPEC", "CONNECTION_STATUS", "CATALOG",
    "DESTINATION_CATALOG",
}
EMITTED = 1_700_000_000_000


# A JSON document to write, possibly broken on purpose ------------------------------------------


# Wrappers, not str/bytes subclasses: hypothesis maps drawn values back to choices when it
# shrinks, and a str subclass coming out of `.map` confuses it.
@dataclass(frozen=True)
class Num:
    """A JSON number, written as exactly this text."""

    text: str


@dataclass(frozen=True)
class Raw:
    """Bytes put into the line as they are: maybe not JSON, maybe not UTF-8."""

    text: bytes


@dataclass
class Obj:
    """A JSON object as its pairs, in order; keys may repeat, a Raw key is written as it is."""

    pairs: list[tuple[str | Raw, Any]]

    def get(self, name: str) -> Any:
        """The value of the last pair named `name`, else None."""
        found = [value for key, value in self.pairs if key == name]
        return found[-1] if found else None


@dataclass(frozen=True)
class Style:
    """How a line is written: whitespace between tokens, non-ASCII escaped or as UTF-8."""

    ws: bytes = b""
    ascii: bool = False


def encode(value: Any, style: Style = Style()) -> bytes:
    """The JSON text of a document (Raw parts verbatim; plain dicts and numbers too)."""
    ws = style.ws
    if isinstance(value, Raw):
        return value.text
    if value is None:
        return b"null"
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, Num):
        return value.text.encode()
    if isinstance(value, int | float):
        return json.dumps(value).encode()
    if isinstance(value, dict):
        return encode(Obj(list(value.items())), style)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=style.ascii).encode()
    if isinstance(value, list):
        return b"[" + ws + (ws + b"," + ws).join(encode(item, style) for item in value) + ws + b"]"
    if isinstance(value, Obj):
        members = (encode(key, style) + ws + b":" + ws + encode(item, style) for key, item in value.pairs)
        return b"{" + ws + (ws + b"," + ws).join(members) + ws + b"}"
    raise TypeError(f"cannot encode {value!r}")


def record_line(
    data: Any, stream: str = "users", emitted_at: int = EMITTED, namespace: str | None = None
) -> bytes:
    """A plain valid RECORD line."""
    fields: list[tuple[str | Raw, Any]] = [
        ("stream", stream), ("data", data), ("emitted_at", Num(str(emitted_at)))
    ]
    if namespace is not None:
        fields.append(("namespace", namespace))
    return encode(Obj([("type", "RECORD"), ("record", Obj(fields))]))


def state_message(cursor: Any, stream: str = "users") -> Obj:
    """A STREAM state of `stream`, with the platform's `id`."""
    descriptor = Obj([("name", stream)])
    stream_state = Obj([("stream_descriptor", descriptor), ("stream_state", Obj([("cursor", cursor)]))])
    state = Obj([("type", "STREAM"), ("stream", stream_state)])
    return Obj([("type", "STATE"), ("state", state), ("id", Num("7"))])


def deep(levels: int, kind: str = "[") -> Raw:
    """A value nested `levels` deep: arrays, objects, or both alternating."""
    if kind == "[":
        return Raw(b"[" * levels + b"]" * levels)
    if kind == "{":
        return Raw(b'{"k":' * (levels - 1) + b"{}" + b"}" * (levels - 1))
    opening = b"".join(b'[{"k":' for _ in range(levels // 2))
    return Raw(opening + b"1" + b"}]" * (levels // 2))


# Python's strict reading of a line: what the connector must do with it -------------------------

Verdict = Literal["skip", "skip_or_refuse", "refuse", "store", "accept", "accept_or_refuse"]


@dataclass
class Expectation:
    """What must happen to a line, and why (for the failure message)."""

    verdict: Verdict
    why: str
    key: str | None = None  # store: the stream's counter key
    data: Any = None  # store: record.data, tagged (see `parse`)
    emitted_at: int = 0
    state: Any = None  # a STATE that may be accepted: the message, tagged
    may_refuse: str | None = None  # store/accept: why a refusal is allowed all the same


class _NotJson(ValueError):
    pass


def _constant(name: str) -> Any:
    raise _NotJson(f"{name} is not JSON")


def _obj(pairs: list[tuple[str, Any]]) -> tuple[str, list[tuple[str, Any]]]:
    return ("obj", pairs)


@contextmanager
def _deep_recursion() -> Iterator[None]:
    """Room for json.loads and == on documents up to MAX_DEPTH (each level is several frames)."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 20 * MAX_DEPTH))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def parse(text: str) -> Any:
    """json.loads, strict, keeping what `==` on dicts would lose: numbers as their text
    (("int", "1.50") style tags), objects as ("obj", [pairs in order, duplicates kept])."""
    with _deep_recursion():
        return json.loads(
            text,
            parse_int=lambda s: ("int", s),
            parse_float=lambda s: ("float", s),
            parse_constant=_constant,
            object_pairs_hook=_obj,
        )


def members(value: Any) -> dict[str, Any] | None:
    """A tagged object's fields, the last of duplicates winning (as msgspec and json do); else None."""
    if isinstance(value, tuple) and value[0] == "obj":
        return dict(value[1])
    return None


def depth(text: str) -> int:
    """How deep objects and arrays nest, the line's top level being 1 (strings skipped)."""
    level = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            level += 1
            deepest = max(deepest, level)
        elif char in "]}":
            level -= 1
    return deepest


def _has_surrogate(value: Any) -> bool:
    """Whether a string anywhere (keys too) holds a lone surrogate (only a lone escape makes one)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if any(0xD800 <= ord(c) <= 0xDFFF for c in item):
                return True
        elif isinstance(item, tuple) and item[0] == "obj":
            for key, member in item[1]:
                stack += [key, member]
        elif isinstance(item, list):
            stack += item
    return False


def _repeats(value: Any) -> bool:
    """Whether a tagged object has a key twice."""
    if not (isinstance(value, tuple) and value[0] == "obj"):
        return False
    keys = [key for key, _ in value[1]]
    return len(keys) != len(set(keys))


def resolve(namespace: str | None, name: str) -> str | None:
    """The counter key of the configured stream of a record, as the README says: its own
    namespace wins; without one (null or ""), the one stream of that name."""
    exact = STREAM_KEYS.get((namespace or "", name))
    if exact is not None or namespace:
        return exact
    matches = [key for (_, stream), key in STREAM_KEYS.items() if stream == name]
    return matches[0] if len(matches) == 1 else None


def expectation(line: bytes) -> Expectation:
    """What the contract says the connector must do with this line (without its "\\n")."""
    if not line.strip(b" \t\r\n"):
        return Expectation("skip", "a blank line")
    if not line.strip():
        return Expectation("skip_or_refuse", "only non-JSON ASCII whitespace")
    try:
        text = line.decode("utf-8")  # strict: no surrogates, no overlong forms
    except UnicodeDecodeError as exc:
        return Expectation("refuse", f"not UTF-8 ({exc.reason} at byte {exc.start})")
    levels = depth(text)
    if levels > MAX_DEPTH:
        return Expectation("refuse", f"nested {levels} levels deep")
    try:
        message = parse(text)
    except (ValueError, RecursionError) as exc:
        return Expectation("refuse", f"not JSON ({exc})")
    lenient = "a lone surrogate escape (msgspec refuses them)" if _has_surrogate(message) else None
    fields = members(message)
    if fields is None:
        return Expectation("refuse", "not a JSON object")
    if _repeats(message) or _repeats(fields.get("record")):
        lenient = lenient or "a field of the message or record twice (msgspec checks each one)"
    kind = fields.get("type")
    if not isinstance(kind, str) or kind not in MESSAGE_TYPES:
        return Expectation("refuse", f"type {kind!r} is not a message type")
    if kind != "RECORD":
        return _non_record(kind, fields, message, lenient)
    record = members(fields.get("record"))
    if record is None:
        return Expectation("refuse", "a RECORD whose `record` is missing or not an object")
    stream, data, emitted_at = record.get("stream"), record.get("data"), record.get("emitted_at")
    namespace = record.get("namespace")
    if not isinstance(stream, str):
        return Expectation("refuse", f"record.stream {stream!r} is not a string")
    if members(data) is None:
        return Expectation("refuse", "record.data is not an object")
    if not (isinstance(emitted_at, tuple) and emitted_at[0] == "int"):
        return Expectation("refuse", f"record.emitted_at {emitted_at!r} is not an integer")
    if namespace is not None and not isinstance(namespace, str):
        return Expectation("refuse", f"record.namespace {namespace!r} is not a string")
    key = resolve(namespace, stream)
    if key is None:
        return Expectation("refuse", f"stream {stream!r} (namespace {namespace!r}) is not in the catalog")
    return Expectation(
        "store", "a valid record", key=key, data=data, emitted_at=int(emitted_at[1]), may_refuse=lenient
    )


def _non_record(kind: str, fields: dict[str, Any], message: Any, lenient: str | None) -> Expectation:
    """A message that is not a record: never stored. A well-formed STATE, LOG or TRACE (its payload
    an object, other fields unknown ones, no `record`) must be accepted."""
    payload = {"STATE": "state", "LOG": "log", "TRACE": "trace"}.get(kind)
    state = message if kind == "STATE" else None
    plain = payload is not None and "record" not in fields and members(fields.get(payload)) is not None
    if kind == "LOG" and plain:
        log = members(fields["log"]) or {}
        plain = set(log) == {"level", "message"} and all(isinstance(v, str) for v in log.values())
    if plain:
        return Expectation("accept", f"a plain {kind} message", state=state, may_refuse=lenient)
    return Expectation("accept_or_refuse", f"a {kind} message of an odd shape", state=state)


# Running a sync in-process and checking the outcome ---------------------------------------------


@dataclass
class Case:
    """The input of one sync: records, a state, records, the line under test, one record."""

    before: list[bytes]
    state: bytes
    between: list[bytes]
    mutated: bytes
    after: bytes
    note: str = ""

    @property
    def number(self) -> int:
        """The mutated line's 1-based number."""
        return len(self.before) + 1 + len(self.between) + 1

    def payload(self) -> bytes:
        lines = [*self.before, self.state, *self.between, self.mutated, self.after]
        return b"".join(line + b"\n" for line in lines)


@dataclass
class Outcome:
    states: list[bytes] = field(default_factory=list)
    error: Exception | None = None


def run_sync(server: RedisServer, payload: bytes) -> Outcome:
    """`write_lines` as `write` runs it on stdin, collecting the states it yields and its error."""
    config = parse_config(server.config())
    streams = parse_catalog(CATALOG)
    outcome = Outcome()
    try:
        for state in write_lines(config, streams, read_lines(io.BytesIO(payload))):
            outcome.states.append(state)
    except Exception as exc:  # the oracle judges every kind of failure
        outcome.error = exc
    return outcome


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def stored_hash(client: redis.Redis, key: str) -> dict[str, bytes]:
    return {_text(name): _bytes(value) for name, value in client.hgetall(key).items()}


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def assert_record(client: redis.Redis, key: str, record_id: int, expected: Expectation, what: str) -> None:
    """K:id holds exactly the record: its id, its emitted_at, its data as the same JSON."""
    stored = stored_hash(client, f"{key}:{record_id}")
    assert set(stored) == {"_airbyte_ab_id", "_airbyte_emitted_at", "_airbyte_data"}, f"{what}: {stored}"
    assert stored["_airbyte_ab_id"] == str(record_id).encode(), what
    assert stored["_airbyte_emitted_at"] == str(expected.emitted_at).encode(), what
    text = stored["_airbyte_data"].decode("utf-8")
    assert parse(text) == expected.data, f"{what}: stored {text[:300]!r}"


def assert_state(emitted: bytes, sent: Any, what: str) -> None:
    """An emitted state is the sent one, every field and number text kept, plus destinationStats."""
    echoed = parse(emitted.decode("utf-8"))
    echoed_fields, sent_fields = members(echoed) or {}, members(sent) or {}
    echoed_state = members(echoed_fields.pop("state")) or {}
    sent_state = members(sent_fields.pop("state")) or {}
    stats = members(echoed_state.pop("destinationStats")) or {}
    sent_state.pop("destinationStats", None)
    assert echoed_fields == sent_fields, what
    assert echoed_state == sent_state, what
    assert isinstance(stats.get("recordCount"), tuple), what


def record_count(emitted: bytes) -> float:
    """`state.destinationStats.recordCount` of an emitted state."""
    state = json.loads(emitted)["state"]
    return float(state["destinationStats"]["recordCount"])


def check(server: RedisServer, case: Case) -> str:
    """Run the case and hold it to the contract (see the module docstring); returns what
    happened, e.g. "store: accepted", for hypothesis' statistics."""
    with server.flushed_client() as client:
        expected = expectation(case.mutated)
        before = [expectation(line) for line in [*case.before, *case.between]]
        last = expectation(case.after)
        assert all(e.verdict == "store" and e.key == ":users" for e in [*before, last]), "bad fixture"
        outcome = run_sync(server, case.payload())
        context = f"line {case.number} ({expected.verdict}: {expected.why}): {case.mutated[:400]!r}"
        ended = f"{context} (the run ended with {outcome.error!r})"
        sent_state = parse(case.state.decode())

        assert len(outcome.states) >= 1, f"{ended}: the state before the line was not emitted"
        assert_state(outcome.states[0], sent_state, f"{ended}: the state before it")
        assert record_count(outcome.states[0]) == len(case.before), ended
        for record_id, record in enumerate(before, 1):
            assert_record(client, ":users", record_id, record, f"{ended}: record {record_id} before it")

        keys = {_text(key) for key in client.keys("*")}  # our own test server: KEYS is fine here
        users_ids = len(before)
        if outcome.error is not None:
            _check_refused(outcome, case, expected, context)
            assert keys == {":users"} | {f":users:{i}" for i in range(1, users_ids + 1)}, context
            assert client.get(":users") == str(users_ids).encode(), context
            return f"{expected.verdict}: refused"

        assert expected.verdict != "refuse", f"{context}: accepted, though it must be refused"
        wanted = {":users"} | {f":users:{i}" for i in range(1, users_ids + 1)}
        if expected.verdict == "store":
            assert expected.key is not None
            record_id = users_ids + 1 if expected.key == ":users" else 1
            assert_record(client, expected.key, record_id, expected, f"{context}: the line's record")
            wanted |= {expected.key, f"{expected.key}:{record_id}"}
            users_ids += expected.key == ":users"
        assert_record(client, ":users", users_ids + 1, last, f"{context}: the record after it")
        wanted.add(f":users:{users_ids + 1}")
        assert keys == wanted, f"{context}: keys"
        if expected.state is not None:
            assert len(outcome.states) == 2, f"{context}: the accepted state was not emitted"
            assert_state(outcome.states[1], expected.state, f"{context}: its echo")
        else:
            assert len(outcome.states) == 1, f"{context}: states {outcome.states}"
        return f"{expected.verdict}: accepted"


def _check_refused(outcome: Outcome, case: Case, expected: Expectation, context: str) -> None:
    """A refusal is a config_error naming the line, and only for a line that may be refused."""
    error = outcome.error
    assert isinstance(error, ConnectorError), (
        f"{context}: a generic error {type(error).__name__}: {error}"
    )
    message = error.message or ""
    assert error.failure_type == "config_error", f"{context}: {error.failure_type}: {message}"
    assert re.search(rf"\bInput line {case.number}\b", message), f"{context}: the error {message!r}"
    assert len(outcome.states) == 1, f"{context}: states after the refused line: {outcome.states}"
    if expected.verdict in ("skip", "store", "accept") and expected.may_refuse is None:
        pytest.fail(f"{context}: refused ({message}), though it must be {expected.verdict}d")


# What the property test generates ----------------------------------------------------------------

EXOTIC_NUMBERS = [
    "1e999999", "-1e999999", "1E400", "4.9e-999999", "-0", "-0.0", "0.0", "1.50", "1E5", "1e+5",
    "1E-5", str(10**40), str(-(10**40)), str(2**63), str(2**64), str(-(2**63) - 1),
    "123456789012345678901234567890.000000000000000000001", "0.1", "5e-324", "1.7976931348623157e309",
]
UNICODE = [
    "山田 太郎", "😀", "e\u0301", "\u202eRTL\u202c", "\ufeff", "\u2028\u2029", "\x7f", "\x00\x1f",
    '"\\/', "\U0010ffff", "\ufffd", "\u0085", "\U0001f468\u200d\U0001f469", "ß\u0130",
]
numbers = st.one_of(
    st.integers(min_value=-(10**45), max_value=10**45).map(str),
    st.from_regex(r"\A-?(0|[1-9][0-9]{0,20})(\.[0-9]{1,6})?([eE][+-]?[0-9]{1,4})?\Z"),
    st.sampled_from(EXOTIC_NUMBERS),
).map(Num)
texts = st.text(max_size=6) | st.sampled_from(UNICODE)
scalars = st.none() | st.booleans() | numbers | texts


def objects(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Obj]:
    """Objects whose keys may repeat (duplicate keys come naturally)."""
    keys = st.sampled_from(["a", "b", "id", "名前"]) | texts
    pairs: st.SearchStrategy[list[tuple[str | Raw, Any]]] = st.lists(st.tuples(keys, children), max_size=4)
    return pairs.map(Obj)


values = st.recursive(
    scalars, lambda children: st.lists(children, max_size=3) | objects(children), max_leaves=8
)
data_objects = objects(values)
styles = st.builds(
    Style, ws=st.sampled_from([b"", b"", b" ", b"\t", b"\r", b" \t\r "]), ascii=st.booleans()
)
DEPTHS = [*range(505, 516), 997, 998, 999, 1000, 1001, 1002, 5000, 100_000]

# Values for the record's fields that are wrong, odd or right in a surprising way.
FIELD_VALUES: dict[str, list[Any]] = {
    "type": [
        Num("1"), None, "record", "Record", "LOG", "STATE", "TRACE", "FOO", "", Raw(b'"RECORD\xff"'),
        Raw(b'"REC\\u004fRD"'), "RECORD\x00", [],
    ],
    "record": [None, [], "x", Num("1"), True, Obj([])],
    "stream": [
        Num("1"), Num("1.5"), None, True, [], Obj([]), "", "Users", "users ", " users", "users\x00",
        Raw(b'"us\xffers"'), Raw(b'"us\x00ers"'), Raw(b'"\\u0075sers"'), Raw(b'"users\\udc80"'),
        Raw(b'"\xed\xa0\x80"'), "orders", "\uff55sers", "users\u200b", Raw(b'"us\xc3"'),
        Raw(b'"users\\u0000"'),
    ],
    "emitted_at": [
        Num("1.0"), Num("1e3"), Num("1E+3"), "1700000000000", Num(str(10**40)), Num(str(-(10**40))),
        Num(str(2**63)), Num(str(2**64)), Num(str(2**63 - 1)), Num(str(-(2**63))), True, False, None,
        Num("-0"), Num("0"), Num("1e999999"), Num("-1"), Raw(b"1_000"), Raw(b"0x10"), Raw(b"01"),
        Raw(b"+1"), Raw(b".5"), Raw(b"NaN"), Raw(b"Infinity"), Raw(b"-Infinity"), [], Obj([]),
    ],
    "data": [
        [], "{}", None, Num("1"), True, Raw(b'{"a":1,}'), Raw(b'{"a":"\xff"}'), Raw(b'{"\xff":1}'),
        Raw(b"{"), Raw(b'{"a":1}}'), Raw(b'{"a" 1}'), Raw(b"{'a':1}"), Raw(b'{"a":NaN}'),
        Raw(b'{"a":Infinity}'), Raw(b'{"a":1e999999,"b":12345678901234567890123456789012345678901}'),
    ],
    "namespace": [
        Num("1"), "", None, "shop", "other", "Shop", Raw(b'"sh\xffop"'), [], Raw(b'"\\u0000"'),
        Raw(b'"\\ud800"'), True, Obj([]),
    ],
}

# Strings and values to put into `data` (or keys), many of them invalid on purpose.
STRING_BITS = [
    Raw(b'"\xff"'), Raw(b'"a\xc0\x80"'), Raw(b'"\xed\xa0\x80"'), Raw(b'"\xf4\x90\x80\x80"'),
    Raw(b'"\xe2\x82"'),
    Raw(b'"\x80"'), Raw(b'"\xf8\x88\x80\x80\x80"'), Raw(b'"\xc3\x28"'), Raw(b'"a\x00b"'), "a\x00b",
    Raw(b'"\\u0000"'), Raw(b'"\\udc80"'), Raw(b'"\\ud800"'), Raw(b'"\\ud800x"'), Raw(b'"\\udc00\\ud800"'),
    Raw(b'"\\ud800\\udc00"'), Raw(b'"\\uDBFF\\uDFFF"'), Raw(b'"\\u00e9\\u6771"'), Raw(b'"\\x41"'),
    Raw(b'"tab\there"'), Raw(b'"\\/"'), Raw(b'"\x7f"'), *UNICODE,
]


@st.composite
def data_values(draw: st.DrawFn) -> Any:
    """A value for a field of `data`: ordinary, exotic, deep, or with bad bytes."""
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(values)
    if choice == 1:
        return draw(st.sampled_from(STRING_BITS))
    if choice == 2:
        return deep(draw(st.sampled_from(DEPTHS)), draw(st.sampled_from(["[", "{", "mixed"])))
    return Num(draw(st.sampled_from(EXOTIC_NUMBERS)))


@st.composite
def valid_records(draw: st.DrawFn, stream: str | None = None) -> Obj:
    """A valid RECORD message (fields in any order), for `users` or `shop.orders`."""
    options: list[tuple[str, Any]] = [("users", ...), ("users", None), ("users", ""), ("orders", "shop"),
                                      ("orders", ...), ("orders", None)]
    name, namespace = draw(st.sampled_from([o for o in options if stream in (None, o[0])]))
    emitted = draw(st.integers(0, 2**53) | st.sampled_from([0, -1, 2**63 - 1, 2**63, 10**40]))
    fields: list[tuple[str | Raw, Any]] = [
        ("stream", name), ("data", draw(data_objects)), ("emitted_at", Num(str(emitted)))
    ]
    if namespace is not ...:
        fields.append(("namespace", namespace))
    record = Obj(draw(st.permutations(fields)))
    message: list[tuple[str | Raw, Any]] = [("type", "RECORD"), ("record", record)]
    return Obj(draw(st.permutations(message)))


@st.composite
def templates(draw: st.DrawFn) -> Obj:
    """The line to mutate: mostly a valid record, else a STATE, LOG or STREAM_STATUS TRACE."""
    kind = draw(st.sampled_from(["RECORD"] * 6 + ["STATE", "LOG", "TRACE"]))
    if kind == "RECORD":
        return draw(valid_records())
    if kind == "STATE":
        return state_message(draw(values))
    if kind == "LOG":
        return Obj([("type", "LOG"), ("log", Obj([("level", "INFO"), ("message", draw(texts))]))])
    status = draw(st.sampled_from(["STARTED", "RUNNING", "COMPLETE", "INCOMPLETE"]))
    descriptor = Obj([("name", draw(st.sampled_from(["users", "orders", "nope"])))])
    trace = Obj([
        ("type", "STREAM_STATUS"), ("emitted_at", draw(numbers)),
        ("stream_status", Obj([("stream_descriptor", descriptor), ("status", status)])),
    ])
    return Obj([("type", "TRACE"), ("trace", trace)])


# (stream, namespace) of records that the catalog (users; shop.orders) has, or has not;
# `...`: no namespace field.
ROUTES: list[tuple[Any, Any]] = [
    ("users", ...), ("users", None), ("users", ""), ("users", "shop"), ("users", "other"),
    ("orders", ...), ("orders", None), ("orders", ""), ("orders", "shop"), ("orders", "other"),
    ("shop", "orders"), ("shop.orders", ...), ("shop:orders", ...), ("Users", ...), ("", ...),
    ("", ""), (None, "shop"), ("users", Num("0")),
]


def _target(draw: st.DrawFn, message: Obj) -> Obj:
    """The message itself or its `record` (when that is an object), to change a field of."""
    record = message.get("record")
    if isinstance(record, Obj) and draw(st.booleans()):
        return record
    return message


@st.composite
def structural(draw: st.DrawFn, message: Obj) -> tuple[Obj, str]:
    """Change the document: one field wrong, missing, twice, or an unknown one; odd data."""
    message = copy.deepcopy(message)
    record = message.get("record")
    if draw(st.booleans()):
        return message, "unchanged"
    # Hypothesis favours the first choices: the ones that mostly keep the record valid go first.
    how = draw(st.sampled_from(["route", "unknown", "data", "set", "remove", "duplicate", "data-key"]))
    if how == "route" and isinstance(record, Obj):
        stream, namespace = draw(st.sampled_from(ROUTES))
        record.pairs = [(k, v) for k, v in record.pairs if k not in ("stream", "namespace")]
        record.pairs.append(("stream", stream))
        if namespace is not ...:
            record.pairs.append(("namespace", namespace))
        return message, f"stream {stream!r} namespace {namespace!r}"
    if how in ("set", "remove", "duplicate", "route"):
        name = draw(st.sampled_from(list(FIELD_VALUES)))
        value = draw(st.sampled_from(FIELD_VALUES[name]))
        record_field = name not in ("type", "record") and isinstance(record, Obj)
        target = record if record_field and draw(st.integers(0, 3)) else message
        if how == "set" and any(key == name for key, _ in target.pairs):
            target.pairs = [(key, value if key == name else item) for key, item in target.pairs]
        elif how == "set":
            target.pairs.append((name, value))
        elif how == "remove":
            target.pairs = [(k, v) for k, v in target.pairs if k != name]
        else:
            pair = (name, value)
            target.pairs = [pair, *target.pairs] if draw(st.booleans()) else [*target.pairs, pair]
        return message, f"{how} {name}={value!r}"
    if how == "unknown":
        target = _target(draw, message)
        key = draw(st.sampled_from(["meta", "_ab_x", "sourceStats", "Type", "records"]) | texts)
        value = draw(data_values())
        target.pairs.insert(draw(st.integers(0, len(target.pairs))), (key, value))
        return message, f"unknown field {key!r}"
    data = record.get("data") if isinstance(record, Obj) else None
    if not isinstance(data, Obj):
        return message, "unchanged (no data)"
    if how == "data":
        data.pairs.append((draw(texts), draw(data_values())))
        return message, "odd data value"
    odd_key = draw(st.sampled_from([bits for bits in STRING_BITS if isinstance(bits, Raw)]))
    data.pairs.append((odd_key, Num("1")))
    return message, f"odd data key {odd_key!r}"


SPECIAL_BYTES = [
    b"\x00", b"\xff", b"\x0b", b"\x0c", b"\xc2\xa0", b"\xe2\x80\xa8", b"\xef\xbb\xbf", b",", b"}", b"]",
    b'"', b"\\", b"\x80", b"\xed\xa0\x80", b"{", b"[", b":", b"\r", b"\t", b" ",
]
WHOLE_LINES = [
    b"", b" ", b"\t", b" \r\t ", b"\x0b", b"\x0c", b"null", b"[]", b"{}", b'"RECORD"', b"1", b"\x00",
    b"\xff", b'{"type":"RECORD"}', b'{"type":"RECORD","record":null}', b"[" * 1000, b"\xef\xbb\xbf{}",
    b'{"type":"LOG","log":{"level":"INFO","message":"hi"}}',
]


@st.composite
def byte_level(draw: st.DrawFn, line: bytes) -> tuple[bytes, str]:
    """Change the bytes: truncate, flip, insert, delete, prefix or suffix; or a whole odd line."""
    if draw(st.sampled_from(["keep", "change", "keep", "change", "keep"])) == "keep":
        return line, "bytes unchanged"
    how = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "prefix", "suffix", "line"]))
    size = len(line)
    if how == "truncate":
        cut = draw(st.integers(1, max(size - 1, 1)))  # the empty line is among WHOLE_LINES
        return line[:cut], f"truncated at byte {cut}"
    if how == "flip":
        changed = bytearray(line)
        for _ in range(draw(st.integers(1, 3))):
            changed[draw(st.integers(0, size - 1))] = draw(st.integers(0, 255))
        return bytes(changed), "bytes flipped"
    if how == "insert":
        at = draw(st.integers(0, size))
        bits = draw(st.sampled_from(SPECIAL_BYTES) | st.binary(min_size=1, max_size=4))
        return line[:at] + bits + line[at:], f"{bits!r} inserted at {at}"
    if how == "delete":
        start = draw(st.integers(0, max(size - 1, 0)))
        end = draw(st.integers(start + 1, min(size, start + 8)))
        return line[:start] + line[end:], f"bytes {start}:{end} deleted"
    if how == "prefix":
        bits = draw(st.sampled_from([b"\xef\xbb\xbf", b" ", b"\t", b"\x00", b"x", b"[", b"\r", b"\xc2\xa0"]))
        return bits + line, f"{bits!r} before it"
    if how == "suffix":
        bits = draw(st.sampled_from(
            [b" ", b"\r", b"\t", b",", b"}", b"\x00", b' {"a":1}', b"x", b"\x0c", b"\xff"]
        ))
        return line + bits, f"{bits!r} after it"
    if how == "line":
        return draw(st.sampled_from(WHOLE_LINES)), "a whole odd line"
    return line, "bytes unchanged"


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """Records, a state, maybe records, the mutated line, one record."""
    style = draw(styles)
    users = valid_records(stream="users")
    before = [encode(m, style) for m in draw(st.lists(users, min_size=1, max_size=3))]
    state = encode(state_message(draw(values)), style)
    between = [encode(m, style) for m in draw(st.lists(users, max_size=2))]
    message, change = draw(structural(draw(templates())))
    mutated, bytes_change = draw(byte_level(encode(message, draw(styles))))
    mutated = mutated.replace(b"\n", b" ")  # one line stays one line
    after = encode(draw(users), style)
    return Case(before, state, between, mutated, after, note=f"{change}; {bytes_change}")


# Users records of fixed lines, so the tests below only vary the line under test.
PLAIN_BEFORE = [record_line({"id": 1}), record_line({"id": 2, "name": "山田"})]
PLAIN_STATE = encode(state_message("c1"))
PLAIN_BETWEEN = [record_line({"id": 3})]
PLAIN_AFTER = record_line({"id": 99})


def plain_case(line: bytes) -> Case:
    return Case(PLAIN_BEFORE, PLAIN_STATE, PLAIN_BETWEEN, line, PLAIN_AFTER)


def _record_with_data(data: bytes, stream: bytes = b'"users"', extra: bytes = b"") -> bytes:
    head = b'{"type":"RECORD","record":{"stream":' + stream + extra
    return head + b',"emitted_at":1,"data":' + data + b"}}"


def _nested_data(line_depth: int) -> bytes:
    """A record line nested exactly `line_depth` levels (message, record and data take 3)."""
    return _record_with_data(b'{"a":' + deep(line_depth - 3).text + b"}")


def _emitted_at(text: bytes) -> bytes:
    return b'{"type":"RECORD","record":{"stream":"users","emitted_at":' + text + b',"data":{}}}'


# name -> (what the contract says, the line). The test below checks the oracle agrees, so that
# it cannot drift; `test_worst_lines` then holds the connector to it.
WORST_LINES: dict[str, tuple[Verdict, bytes]] = {
    "depth-511": ("store", _nested_data(511)),
    "depth-512": ("store", _nested_data(512)),
    "depth-513": ("refuse", _nested_data(513)),
    "depth-1000": ("refuse", _nested_data(1000)),
    "depth-100000": ("refuse", _nested_data(100_000)),
    "data-nested-1000-levels": ("refuse", _record_with_data(b'{"a":' + deep(999, "mixed").text + b"}")),
    "deep-in-unknown-field": (
        "refuse", _record_with_data(b"{}", extra=b',"x":' + deep(2000, "mixed").text)
    ),
    "deep-log": (
        "refuse", b'{"type":"LOG","log":{"level":"INFO","message":"m"},"x":' + deep(1000, "{").text + b"}"
    ),
    "deep-state": ("refuse", b'{"type":"STATE","state":{"type":"LEGACY","data":' + deep(600).text + b"}}"),
    "utf8-in-data": ("refuse", _record_with_data(b'{"a":"\xff"}')),
    "utf8-in-key": ("refuse", _record_with_data(b'{"\xc0\x80":1}')),
    "utf8-surrogate-in-data": ("refuse", _record_with_data(b'{"a":"\xed\xa0\x80"}')),
    "utf8-in-stream": ("refuse", _record_with_data(b"{}", stream=b'"us\xe9rs"')),
    "utf8-in-namespace": ("refuse", _record_with_data(b"{}", extra=b',"namespace":"\xff"')),
    "utf8-in-log": ("refuse", b'{"type":"LOG","log":{"level":"INFO","message":"\xfe"}}'),
    "utf8-in-state": ("refuse", b'{"type":"STATE","state":{"type":"LEGACY","data":{"c":"\x80"}}}'),
    "nul-raw-in-data": ("refuse", _record_with_data(b'{"a":"x\x00y"}')),
    "nul-raw-outside-strings": ("refuse", _record_with_data(b'{"a":1}\x00')),
    "nul-escaped-in-data": ("store", _record_with_data(b'{"a":"x\\u0000y","\\u0000":0}')),
    "nul-escaped-in-stream": ("refuse", _record_with_data(b"{}", stream=b'"users\\u0000"')),
    # Valid for Python's json; msgspec refuses them (an allowed refusal, see the module docstring).
    "lone-low-surrogate": ("store", _record_with_data(b'{"a":"\\udc80"}')),
    "lone-high-surrogate": ("store", _record_with_data(b'{"a":"\\ud800"}')),
    "surrogate-pair": ("store", _record_with_data(b'{"a":"\\ud83d\\ude00"}')),
    "huge-float": ("store", _record_with_data(b'{"a":1e999999,"b":-1e999999}')),
    "40-digit-integer": ("store", _record_with_data(b'{"a":1234567890123456789012345678901234567890}')),
    "numbers-as-sent": ("store", _record_with_data(b'{"a":1.50,"b":1E5,"c":-0,"d":0.1e-7}')),
    "emitted-at-float": ("refuse", _emitted_at(b"1.0")),
    "emitted-at-string": ("refuse", _emitted_at(b'"1"')),
    "emitted-at-huge": ("refuse", _emitted_at(b"1e999999")),
    "emitted-at-bool": ("refuse", _emitted_at(b"true")),
    "emitted-at-null": ("refuse", _emitted_at(b"null")),
    "emitted-at-40-digits": ("store", _emitted_at(str(10**40).encode())),
    "emitted-at-negative": ("store", _emitted_at(b"-1")),
    "stream-number": ("refuse", _record_with_data(b"{}", stream=b"1")),
    "stream-escaped": ("store", _record_with_data(b"{}", stream=b'"\\u0075sers"')),
    "stream-unknown": ("refuse", _record_with_data(b"{}", stream=b'"payments"')),
    "namespace-unknown": ("refuse", _record_with_data(b"{}", extra=b',"namespace":"other"')),
    "namespace-of-another-stream": ("refuse", _record_with_data(b"{}", extra=b',"namespace":"shop"')),
    "other-stream-without-namespace": ("store", _record_with_data(b"{}", stream=b'"orders"')),
    "namespace-number": ("refuse", _record_with_data(b"{}", extra=b',"namespace":1')),
    "other-stream": (
        "store", _record_with_data(b'{"o":1}', stream=b'"orders"', extra=b',"namespace":"shop"')
    ),
    "data-array": ("refuse", _record_with_data(b"[1]")),
    "data-string": ("refuse", _record_with_data(b'"{}"')),
    "data-null": ("refuse", _record_with_data(b"null")),
    "record-null": ("refuse", b'{"type":"RECORD","record":null}'),
    "record-missing": ("refuse", b'{"type":"RECORD"}'),
    "duplicate-keys": ("store", _record_with_data(b'{"a":1,"a":2}', extra=b',"stream":"users"')),
    "duplicate-type": (
        "store", b'{"type":"LOG","type":"RECORD","record":{"stream":"users","emitted_at":1,"data":{}}}'
    ),
    "duplicate-type-last-log": (
        "accept_or_refuse",
        b'{"type":"RECORD","type":"LOG","record":{"stream":"users","emitted_at":1,"data":{}}}',
    ),
    "unknown-fields": (
        "store",
        b'{"type":"RECORD","z":[1,{"q":null}],"record":{"meta":{"x":1},"stream":"users",'
        b'"emitted_at":1,"data":{"k":"v"}}}',
    ),
    "whitespace": (
        "store",
        b' \t{ "type" :\r"RECORD" , "record" : { "stream" : "users" , "emitted_at" : 1 ,'
        b' "data" : { "a" : [ 1 , 2 ] } } }\t \r',
    ),
    "nbsp-whitespace": (
        "refuse", b'{"type":"RECORD",\xc2\xa0"record":{"stream":"users","emitted_at":1,"data":{}}}'
    ),
    "form-feed": ("refuse", b'{"type":"RECORD",\x0c"record":{"stream":"users","emitted_at":1,"data":{}}}'),
    "bom": ("refuse", b'\xef\xbb\xbf{"type":"RECORD","record":{"stream":"users","emitted_at":1,"data":{}}}'),
    "unicode": ("store", _record_with_data('{"名前":"山田 😀 e\u0301 \u2028 \ufeff \U0010ffff"}'.encode())),
    "truncated": ("refuse", _record_with_data(b'{"a":1}')[:-1]),
    "trailing-garbage": ("refuse", _record_with_data(b"{}") + b" x"),
    "two-messages": ("refuse", _record_with_data(b"{}") + _record_with_data(b"{}")),
    "nan": ("refuse", _record_with_data(b'{"a":NaN}')),
    "blank": ("skip", b"   "),
    "empty": ("skip", b""),
    "vertical-tab": ("skip_or_refuse", b"\x0b"),
    "log": ("accept", b'{"type":"LOG","log":{"level":"INFO","message":"hello"}}'),
    "state": ("accept", b'{"type":"STATE","state":{"type":"LEGACY","data":{"n":1.50}}}'),
    "state-not-an-object": ("accept_or_refuse", b'{"type":"STATE","state":1}'),
    # Numbers beyond a double's range are JSON (and kept as sent in records): states and traces too.
    "state-huge-float": (
        "accept",
        b'{"type":"STATE","state":{"type":"STREAM","stream":{"stream_descriptor":{"name":"users"},'
        b'"stream_state":{"cursor":1E400}}}}',
    ),
    "trace-huge-float": (
        "accept",
        b'{"type":"TRACE","trace":{"type":"STREAM_STATUS","emitted_at":1e999999,"stream_status":'
        b'{"stream_descriptor":{"name":"users"},"status":"RUNNING"}}}',
    ),
    "unknown-type": ("refuse", b'{"type":"FOO"}'),
}


def test_the_oracle_knows_the_worst_lines() -> None:
    """The oracle's verdicts on the named lines are the contract's (so it cannot drift)."""
    verdicts = {name: expectation(line).verdict for name, (_, line) in WORST_LINES.items()}
    assert verdicts == {name: verdict for name, (verdict, _) in WORST_LINES.items()}
    assert expectation(WORST_LINES["lone-low-surrogate"][1]).may_refuse is not None
    assert expectation(WORST_LINES["surrogate-pair"][1]).may_refuse is None


@pytest.mark.parametrize("name", list(WORST_LINES))
def test_worst_lines(redis_server: RedisServer, name: str) -> None:
    """Each named line, in the middle of a sync, is stored exactly or refused naming it."""
    check(redis_server, plain_case(WORST_LINES[name][1]))


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large
    ],
)
@given(case=cases())
def test_every_line_is_stored_exactly_or_refused_naming_it(redis_server: RedisServer, case: Case) -> None:
    """The property: whatever the line, stored exactly or refused naming it; before it kept."""
    event(check(redis_server, case))


# The worst cases through the real console script -------------------------------------------------

WRITE_ARGS = ["write", "--config", "{config}", "--catalog", "{catalog}"]


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("data-nested-1000-levels", "nested"),
        ("utf8-in-data", "UTF-8"),
        ("utf8-in-stream", "UTF-8"),
        ("stream-unknown", "payments"),
    ],
)
def test_cli_refuses_the_worst_lines_naming_them(
    redis_server: RedisServer, tmp_path: Path, name: str, problem: str
) -> None:
    """`destination-redis write`: exit 1, one config_error TRACE naming the line; before it kept."""
    case = plain_case(WORST_LINES[name][1])
    with redis_server.flushed_client() as client:
        result = run_connector(
            WRITE_ARGS, tmp_path, config=redis_server.config(), catalog=CATALOG, stdin=case.payload()
        )
        assert result.returncode == 1, result.stderr[-2000:]
        (error,) = result.errors
        assert error["failure_type"] == "config_error", error
        assert re.search(rf"\bInput line {case.number}\b", error["message"]), error["message"]
        assert problem in error["message"], error["message"]
        assert "Traceback" not in result.stdout + result.stderr
        (state,) = result.states
        assert state["id"] == 7
        assert state["state"]["destinationStats"] == {"recordCount": float(len(case.before))}
        written = [*case.before, *case.between]
        for record_id, line in enumerate(written, 1):
            assert_record(client, ":users", record_id, expectation(line), f"{name}: record {record_id}")
        expected_keys = {":users"} | {f":users:{i}" for i in range(1, len(written) + 1)}
        assert {_text(key) for key in client.keys("*")} == expected_keys
