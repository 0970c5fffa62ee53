"""Reading Airbyte messages from stdin fast, and writing states back with nothing dropped.

Records are decoded with msgspec into a small typed struct whose `data` stays raw JSON bytes, so
it is never turned into Python objects and back. States are decoded as plain dicts, so unknown
fields (the platform's `id`, future fields) are echoed unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Literal

import msgspec
import orjson

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


class Record(msgspec.Struct):
    stream: str
    data: msgspec.Raw
    emitted_at: int
    namespace: str | None = None


class Message(msgspec.Struct):
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


_decoder = msgspec.json.Decoder(Message)


def read_messages(lines: Iterable[bytes]) -> Iterator[tuple[int, bytes, Message, bytes]]:
    """Yield (line number, line, message, record data as compact JSON or b"").

    Raises InputError on the first line that is not a valid message.
    """
    decode = _decoder.decode
    for number, line in enumerate(lines, 1):
        try:
            message = decode(line)
        except msgspec.ValidationError as exc:
            raise InputError(number, str(exc)) from None
        except msgspec.DecodeError as exc:
            if not line.strip():
                continue  # a blank line carries nothing; tolerate it
            raise InputError(number, f"not JSON ({exc})") from None
        data = b""
        if message.type == "RECORD":
            if message.record is None:
                raise InputError(number, "a RECORD message without `record`")
            data = compact_json(message.record.data)
            if data[:1] != b"{":
                raise InputError(number, "`record.data` must be a JSON object")
        elif message.type == "STATE" and bytes(message.state) in (b"", b"null"):
            raise InputError(number, "a STATE message without `state`")
        yield number, line, message, data


def compact_json(raw: msgspec.Raw | bytes) -> bytes:
    """`data` as compact JSON: no insignificant whitespace, non-ASCII as UTF-8, numbers as sent.

    Escaped non-ASCII (`\\u00e9`) is unescaped by a decode/encode round trip; without escapes the
    text is only stripped of whitespace, which keeps every number exactly as the source wrote it.
    """
    text = msgspec.json.format(raw, indent=-1)
    if b"\\u" in text:
        try:
            return msgspec.json.encode(msgspec.json.decode(text))
        except (msgspec.DecodeError, msgspec.EncodeError, UnicodeError):
            return text
    return text


class StateMessage:
    """A STATE line as the source sent it, with every field kept."""

    def __init__(self, line: bytes) -> None:
        self.message: dict[str, Any] = orjson.loads(line)
        self.state: dict[str, Any] = self.message["state"]

    @property
    def kind(self) -> str:
        return str(self.state.get("type") or "LEGACY")

    @property
    def stream_descriptor(self) -> tuple[str | None, str] | None:
        stream = self.state.get("stream") or {}
        descriptor = stream.get("stream_descriptor") or {}
        name = descriptor.get("name")
        return (descriptor.get("namespace"), name) if isinstance(name, str) else None

    def with_record_count(self, count: int) -> bytes:
        stats = self.state.get("destinationStats")
        if not isinstance(stats, dict):
            stats = {}
        stats["recordCount"] = float(count)
        self.state["destinationStats"] = stats
        return orjson.dumps(self.message) + b"\n"


def completed_stream(message: Message) -> tuple[str | None, str] | None:
    """(namespace, name) of a TRACE STREAM_STATUS COMPLETE message, else None."""
    if message.type != "TRACE" or not bytes(message.trace):
        return None
    trace = orjson.loads(bytes(message.trace))
    if not isinstance(trace, dict) or trace.get("type") != "STREAM_STATUS":
        return None
    status = trace.get("stream_status") or {}
    descriptor = status.get("stream_descriptor") or {}
    name = descriptor.get("name")
    if status.get("status") != "COMPLETE" or not isinstance(name, str):
        return None
    return descriptor.get("namespace"), name


def is_stream_status(message: Message) -> bool:
    return message.type == "TRACE" and b'"STREAM_STATUS"' in bytes(message.trace)
