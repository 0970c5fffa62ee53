"""Reading Airbyte messages from stdin fast, and writing states back with nothing dropped.

Records are decoded with msgspec into a small typed struct whose `data` stays raw JSON bytes, so
it is never turned into Python objects and back. States are decoded as plain dicts, so unknown
fields (the platform's `id`, future fields) are echoed unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Literal

import msgspec

from destination_redis.compact import compact_json as compact_json  # re-exported: messages' API
from destination_redis.errors import config_error

MessageType = Literal[
    "RECORD",
    "STATE",
    "LOG",
    "TRACE",
    "CONTROL",
    "SPEC",
    "CONNECTION_STATUS",
    "CATALOG",
    "DESTINATION_CATALOG",
]


# gc=False: millions are made and dropped at once, and they hold no references that could form a
# cycle (only strings, numbers, Raw and a Record), so the garbage collector need not track them.
class Record(msgspec.Struct, gc=False):
    stream: str
    data: msgspec.Raw
    emitted_at: int
    namespace: str | None = None


class Message(msgspec.Struct, gc=False):
    type: MessageType
    record: Record | None = None
    state: msgspec.Raw = msgspec.Raw(b"")  # raw: msgspec has no Raw | None; b"" means absent
    trace: msgspec.Raw = msgspec.Raw(b"")


class InputError(Exception):
    """A line of input that breaks the protocol; `line` is its 1-based number."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"Input line {line}: {problem}")
        self.line = line
        self.problem = problem

    def as_traced(self) -> Exception:
        return config_error(
            f"Input line {self.line} is not a valid Airbyte message: {self.problem}. "
            f"Everything before it was written and its states emitted."
        )


class RefusedLine(InputError):
    """A valid message that cannot be loaded (e.g. its stream is not in the catalog)."""

    def as_traced(self) -> Exception:
        return config_error(
            f"Input line {self.line}: {self.problem} Everything before it was written and its "
            f"states emitted."
        )


_decoder = msgspec.json.Decoder(Message)

# Deeper nesting than this (objects and arrays, counted from the line's top level) is refused:
# a fixed limit, far below where any parser on the way (msgspec, orjson, the JSON module of
# Redis) gives up, so whether a line is accepted never depends on the call stack.
MAX_DEPTH = 512

def read_messages(
    lines: Iterable[bytes],
) -> Iterator[tuple[int, Message, bytes, StateMessage | StreamStatus | None]]:
    """Yield (line number, message, record data as compact JSON or b"", parsed extra).

    The extra is the StateMessage of a STATE, the StreamStatus of a STREAM_STATUS trace, else
    None: every line is parsed completely here, so a bad one is refused here, naming its line.
    Raises InputError on the first line that is not a valid message.
    """
    decode = _decoder.decode
    long_line = 2 * MAX_DEPTH
    for number, line in enumerate(lines, 1):
        try:
            # The protocol is UTF-8 JSON: a line that is not UTF-8 would be stored or echoed
            # corrupted (msgspec does not check the bytes of `data` or of fields it skips).
            if not line.isascii():
                line.decode()
            # JSON nested deeper than MAX_DEPTH takes more than 2 * MAX_DEPTH bytes of brackets: a
            # shorter line's brackets are not even counted (unbalanced ones make it invalid JSON).
            if len(line) > long_line and line.count(b"[") + line.count(b"{") > MAX_DEPTH:
                _check_depth(number, line)
            message = decode(line)
        except UnicodeDecodeError as exc:
            raise InputError(number, f"not valid UTF-8 (byte {exc.start + 1} of the line)") from None
        except msgspec.ValidationError as exc:
            raise InputError(number, str(exc)) from None
        except msgspec.DecodeError as exc:
            if not line.strip():
                continue  # a blank line carries nothing; tolerate it
            raise InputError(number, f"not JSON ({exc})") from None
        except RecursionError:  # pragma: no cover  # MAX_DEPTH keeps well below it
            raise InputError(number, "nested too deeply") from None
        data = b""
        extra: StateMessage | StreamStatus | None = None
        if message.type == "RECORD":
            record = message.record
            if record is None:
                raise InputError(number, "a RECORD message without `record`")
            data = compact_json(record.data)
            if data[0] != 0x7B:  # {  (compact JSON is never empty)
                raise InputError(number, "`record.data` must be a JSON object")
        elif message.type == "STATE":
            if bytes(message.state)[:1] != b"{":
                raise InputError(number, "a STATE message needs a `state` object")
            extra = StateMessage(line)
        elif message.type == "TRACE":
            extra = stream_status(message)
        yield number, message, data, extra


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def _check_depth(number: int, line: bytes) -> None:
    """Refuse nesting deeper than MAX_DEPTH; only lines with that many brackets get here."""
    depth = deepest = 0
    for char in _JSON_STRING.sub(b'""', line):
        if char in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif char in (0x5D, 0x7D):  # ] }
            depth -= 1
    if deepest > MAX_DEPTH:
        raise InputError(number, f"nested {deepest} levels deep; at most {MAX_DEPTH} are accepted")


_RawObject = dict[str, msgspec.Raw]


def _field(raw: msgspec.Raw | None, name: str) -> msgspec.Raw | None:
    """Field `name` of a raw JSON object, else None. Only the path to it is decoded, never the
    other fields: they may hold numbers no Python type holds (1E400), which are echoed as sent."""
    if raw is None or bytes(raw)[:1] != b"{":
        return None
    return msgspec.json.decode(raw, type=_RawObject).get(name)


def _text(raw: msgspec.Raw | None) -> str | None:
    """A raw JSON string's value; None for anything else."""
    if raw is None or bytes(raw)[:1] != b'"':
        return None
    value = msgspec.json.decode(raw)
    return value if isinstance(value, str) else None


class StateMessage:
    """A STATE line as the source sent it: every field, and every byte of them, kept.

    The message and its `state` are split into raw fields; only `destinationStats` is replaced,
    so cursors with big integers or exotic floats are echoed exactly as they came.
    """

    def __init__(self, line: bytes) -> None:
        self._message = msgspec.json.decode(line, type=_RawObject)
        self._state = msgspec.json.decode(self._message["state"], type=_RawObject)

    @property
    def kind(self) -> str:
        return _text(self._state.get("type")) or "LEGACY"

    @property
    def stream_descriptor(self) -> tuple[str | None, str] | None:
        descriptor = _field(self._state.get("stream"), "stream_descriptor")
        name = _text(_field(descriptor, "name"))
        return (_text(_field(descriptor, "namespace")), name) if name is not None else None

    def with_record_count(self, count: int) -> bytes:
        """The line to emit: `state.destinationStats.recordCount` set, all else as received."""
        raw_stats = self._state.get("destinationStats")
        stats: _RawObject = {}
        if raw_stats is not None and bytes(raw_stats)[:1] == b"{":
            stats = msgspec.json.decode(raw_stats, type=_RawObject)
        stats["recordCount"] = msgspec.Raw(msgspec.json.encode(float(count)))
        self._state["destinationStats"] = msgspec.Raw(msgspec.json.encode(stats))
        self._message["state"] = msgspec.Raw(msgspec.json.encode(self._state))
        return msgspec.json.encode(self._message) + b"\n"


class StreamStatus(msgspec.Struct):
    """A TRACE STREAM_STATUS: which stream, and its status (STARTED, COMPLETE, ...)."""

    namespace: str | None
    name: str
    status: str


def stream_status(message: Message) -> StreamStatus | None:
    """The STREAM_STATUS a TRACE message carries, else None (other traces, other messages).

    Traces are not stored: one of an unexpected shape is simply not a status.
    """
    trace = msgspec.Raw(message.trace) if bytes(message.trace) else None
    if _text(_field(trace, "type")) != "STREAM_STATUS":
        return None
    status = _field(trace, "stream_status")
    descriptor = _field(status, "stream_descriptor")
    name = _text(_field(descriptor, "name"))
    raw_namespace = _field(descriptor, "namespace")
    namespace = _text(raw_namespace)
    if name is None or (namespace is None and raw_namespace is not None and bytes(raw_namespace) != b"null"):
        return None
    return StreamStatus(namespace=namespace, name=name, status=_text(_field(status, "status")) or "")
