"""Reading protocol lines: compact record data, line-numbered errors, states echoed whole."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from destination_redis.errors import ConnectorError
from destination_redis.messages import (
    MAX_DEPTH,
    InputError,
    StateMessage,
    StreamStatus,
    compact_json,
    read_messages,
)

# compact_json --------------------------------------------------------------------------------


def test_compact_json_removes_insignificant_whitespace() -> None:
    raw = b'{ "a" : 1 ,\n\t"b" : [ 1 , 2 , { } ] ,\r\n "c" : { "d" : null } }'
    assert compact_json(raw) == b'{"a":1,"b":[1,2,{}],"c":{"d":null}}'


def test_compact_json_keeps_whitespace_inside_strings() -> None:
    raw = b'{"a" : " x  y \\n z\\t" }'
    assert compact_json(raw) == b'{"a":" x  y \\n z\\t"}'


@pytest.mark.parametrize(
    "number",
    [
        b"123456789012345678901234567890",
        b"-123456789012345678901234567890",
        b"1e400",
        b"-1e400",
        b"1e-400",
        b"1.50",
        b"1E5",
        b"1e+308",
        b"-0.0",
        b"-0",
        b"1.5e-300",
        b"0.1000000000000000055511151231257827",
        b"1180591620717411303424",
    ],
)
def test_compact_json_keeps_numbers_exactly_as_sent(number: bytes) -> None:
    assert compact_json(b'{"n" : ' + number + b" }") == b'{"n":' + number + b"}"


def test_compact_json_turns_unicode_escapes_into_utf8() -> None:
    raw = b'{"name": "Ren\\u00e9e", "city": "\\u6771\\u4eac", "smile": "\\ud83d\\ude00"}'
    assert compact_json(raw) == '{"name":"Renée","city":"東京","smile":"😀"}'.encode()


def test_compact_json_keeps_utf8_as_is() -> None:
    text = '{"name": "Renée", "city": "東京", "smile": "😀"}'
    assert compact_json(text.encode()) == '{"name":"Renée","city":"東京","smile":"😀"}'.encode()


def test_compact_json_keeps_required_escapes_valid() -> None:
    raw = b'{"q": "\\u0022quoted\\u0022", "nl": "a\\u000ab", "nul": "\\u0000", "bs": "\\\\u00e9"}'
    out = compact_json(raw)
    assert json.loads(out) == {"q": '"quoted"', "nl": "a\nb", "nul": "\x00", "bs": "\\u00e9"}
    assert b"\n" not in out


@pytest.mark.parametrize(
    "number",
    [b"123456789012345678901234567890", b"1e400", b"1.50", b"1E5", b"-0.0", b"1.5e-300"],
)
def test_compact_json_keeps_numbers_exactly_when_the_text_also_has_escapes(number: bytes) -> None:
    raw = b'{"name": "Ren\\u00e9e", "n": ' + number + b"}"
    assert compact_json(raw) == b'{"name":"Ren\xc3\xa9e","n":' + number + b"}"


def test_compact_json_of_empty_object_and_strings() -> None:
    assert compact_json(b" { } ") == b"{}"
    assert compact_json(b'{"": "", "e": {}, "l": []}') == b'{"":"","e":{},"l":[]}'


def test_compact_json_of_deep_nesting() -> None:
    raw = b'{"a": ' * 100 + b"1" + b" }" * 100
    assert compact_json(raw) == b'{"a":' * 100 + b"1" + b"}" * 100


# read_messages --------------------------------------------------------------------------------


_DROP = object()


def rec(data: Any = None, **overrides: Any) -> bytes:
    """A RECORD line; a field given as `_DROP` is left out."""
    body: dict[str, Any] = {"stream": "users", "data": {"a": 1} if data is None else data, "emitted_at": 1}
    body.update(overrides)
    kept = {k: v for k, v in body.items() if v is not _DROP}
    return json.dumps({"type": "RECORD", "record": kept}).encode()


STATE = b'{"type": "STATE", "state": {"type": "GLOBAL", "global": {"shared_state": {}}}}'


def read_all(lines: list[bytes]) -> list[tuple[int, str, bytes]]:
    return [(number, message.type, data) for number, message, data, _parsed in read_messages(lines)]


def error_of(lines: list[bytes]) -> InputError:
    with pytest.raises(InputError) as info:
        read_all(lines)
    return info.value


def test_read_messages_yields_line_numbers_types_and_compact_data() -> None:
    lines = [rec({"x": "é"}), STATE, b'{"type": "LOG", "log": {"level": "INFO", "message": "hi"}}']
    assert read_all(lines) == [(1, "RECORD", '{"x":"é"}'.encode()), (2, "STATE", b""), (3, "LOG", b"")]


def test_read_messages_gives_the_record_fields() -> None:
    line = rec({"a": 1}, stream="orders", emitted_at=1_700_000_000_123, namespace="shop")
    ((_, message, data, _),) = list(read_messages([line]))
    assert message.record is not None
    assert (message.record.stream, message.record.namespace, message.record.emitted_at) == (
        "orders",
        "shop",
        1_700_000_000_123,
    )
    assert data == b'{"a":1}'


def test_read_messages_accepts_null_namespace_and_unknown_fields() -> None:
    line = json.dumps(
        {
            "type": "RECORD",
            "record": {"stream": "u", "data": {}, "emitted_at": 5, "namespace": None, "meta": {}},
            "future": True,
        }
    ).encode()
    ((_, message, data, _),) = list(read_messages([line]))
    assert message.record is not None
    assert message.record.namespace is None
    assert data == b"{}"


@pytest.mark.parametrize("blank", [b"", b"   ", b"\n", b"\r\n", b"\t \n"])
def test_read_messages_tolerates_blank_lines_and_keeps_counting(blank: bytes) -> None:
    lines = [rec(), blank, rec(), blank, blank, b"nope"]
    err = error_of(lines)
    assert err.line == 6


def test_read_messages_tolerates_crlf_line_endings() -> None:
    assert read_all([rec() + b"\r\n", STATE + b"\r\n"]) == [(1, "RECORD", b'{"a":1}'), (2, "STATE", b"")]


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (b"not json", "not JSON"),
        (b'{"type": "RECORD", "record": {"stream": "users", "data": {"a": 1}, "emitted_at": 1}', "not JSON"),
        (rec(data=_DROP), "data"),
        (rec(emitted_at=_DROP), "emitted_at"),
        (rec(stream=_DROP), "stream"),
        (rec(data=[1, 2]), "must be a JSON object"),
        (rec(data="text"), "must be a JSON object"),
        (rec(data=0), "must be a JSON object"),
        (b'{"type": "RECORD"}', "record"),
        (b'{"type": "RECORD", "record": null}', "record"),
        (b'{"type": "STATE"}', "state"),
        (b'{"type": "STATE", "state": null}', "state"),
        (b'{"record": {"stream": "users", "data": {}, "emitted_at": 1}}', "type"),
        (b"[1, 2]", ""),
    ],
)
def test_read_messages_error_names_the_line_and_the_problem(bad: bytes, problem: str) -> None:
    err = error_of([rec(), STATE, b"", rec(), bad, rec()])
    assert err.line == 5
    assert problem in err.problem
    assert str(err).startswith("Input line 5: ")


def test_record_with_null_data_is_rejected() -> None:
    line = b'{"type": "RECORD", "record": {"stream": "users", "data": null, "emitted_at": 1}}'
    err = error_of([line])
    assert err.line == 1


def test_input_error_becomes_a_config_error_naming_the_line() -> None:
    traced = error_of([rec(), b"{oops"]).as_traced()
    assert isinstance(traced, ConnectorError)
    assert traced.failure_type == "config_error"
    assert "line 2" in str(traced.message)
    assert "not JSON" in str(traced.message)


def test_read_messages_stops_at_the_bad_line() -> None:
    seen: list[int] = []
    messages = read_messages([rec(), rec(), b"bad", rec()])
    seen.append(next(messages)[0])
    seen.append(next(messages)[0])
    with pytest.raises(InputError):
        next(messages)
    assert seen == [1, 2]


def test_lone_surrogate_escape_is_kept_or_reported_never_a_crash() -> None:
    """JSON allows a lone surrogate escape (Python's json.dumps writes one); it has no UTF-8 form."""
    line = b'{"type": "RECORD", "record": {"stream": "u", "data": {"s": "\\ud800"}, "emitted_at": 1}}'
    outcome: object
    try:
        ((_, _, outcome, _),) = list(read_messages([line]))
    except InputError as err:
        outcome = ("InputError", err.line)
    assert outcome in (b'{"s":"\\ud800"}', ("InputError", 1))


def nested(depth: int) -> Any:
    """A value `depth` levels deep: [[...[1]...]]."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


# The envelope {"type": .., "record": {.., "data": {"a": <value>}}} adds 3 levels.
ENVELOPE = 3


def test_nesting_up_to_the_limit_is_accepted() -> None:
    ((_, _, data),) = read_all([rec({"a": nested(MAX_DEPTH - ENVELOPE)})])
    assert data == json.dumps({"a": nested(MAX_DEPTH - ENVELOPE)}, separators=(",", ":")).encode()


@pytest.mark.parametrize("depth", [MAX_DEPTH - ENVELOPE + 1, 1000, 100_000])
def test_deeper_nesting_is_refused_naming_the_line(depth: int) -> None:
    line = b'{"type":"RECORD","record":{"stream":"u","emitted_at":1,"data":{"a":' + (
        b"[" * depth + b"]" * depth + b"}}}"
    )
    err = error_of([rec(), line])
    assert err.line == 2
    assert f"at most {MAX_DEPTH}" in err.problem


def test_deep_state_is_refused_too() -> None:
    line = b'{"type":"STATE","state":{"a":' + b"[" * 2000 + b"]" * 2000 + b"}}"
    assert error_of([STATE, line]).line == 2


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = '[{"\\"' * 400 + '\"]'
    ((_, _, data),) = read_all([rec({"s": text})])
    assert json.loads(data) == {"s": text}


@pytest.mark.parametrize(
    "line",
    [
        b'{"type":"RECORD","record":{"stream":"u","emitted_at":1,"data":{"a":"\xff"}}}',
        b'{"type":"RECORD","record":{"stream":"u\xc3","emitted_at":1,"data":{}}}',
        b'{"type":"RECORD","record":{"stream":"u","namespace":"\xed\xa0\x80","emitted_at":1,"data":{}}}',
        b'{"type":"RECORD","record":{"stream":"u","emitted_at":1,"data":{"\xfe":1}}}',
        b'{"type":"STATE","state":{"type":"GLOBAL","x":"\xc0\xaf"}}',
    ],
    ids=["in-data", "in-stream", "surrogate-in-namespace", "in-a-key", "in-a-state"],
)
def test_invalid_utf8_is_refused_naming_the_line_and_byte(line: bytes) -> None:
    err = error_of([rec(), line])
    assert err.line == 2
    assert "not valid UTF-8" in err.problem
    first_bad = next(i for i, byte in enumerate(line) if byte >= 0x80)
    assert f"byte {first_bad + 1} of the line" in err.problem


def test_valid_utf8_of_every_width_is_kept() -> None:
    ((_, _, data),) = read_all([rec({"s": "é東😀"}, stream="ü")])
    assert data == '{"s":"é東😀"}'.encode()


@pytest.mark.parametrize(
    "trace",
    [
        {"type": "STREAM_STATUS", "stream_status": 5},
        {"type": "STREAM_STATUS", "stream_status": {"stream_descriptor": [1]}},
        {"type": "STREAM_STATUS", "stream_status": {"stream_descriptor": {"name": 3}}},
        {"type": "STREAM_STATUS", "stream_status": {"stream_descriptor": {"name": "u", "namespace": 3}}},
        {"type": "ERROR", "error": {"message": "STREAM_STATUS"}},
        [1, 2],
    ],
)
def test_odd_traces_are_not_statuses_and_never_crash(trace: Any) -> None:
    line = json.dumps({"type": "TRACE", "trace": trace}).encode()
    ((_, message, _, parsed),) = list(read_messages([line]))
    assert message.type == "TRACE"
    assert parsed is None


def test_stream_status_is_parsed_by_the_reader() -> None:
    status = {"stream_descriptor": {"name": "u", "namespace": None}, "status": "COMPLETE"}
    line = json.dumps({"type": "TRACE", "trace": {"type": "STREAM_STATUS", "stream_status": status}})
    ((_, _, _, parsed),) = list(read_messages([line.encode()]))
    assert parsed == StreamStatus(namespace=None, name="u", status="COMPLETE")


# StateMessage ---------------------------------------------------------------------------------


def test_state_message_keeps_id_and_unknown_fields_and_sets_the_count() -> None:
    message: dict[str, Any] = {
        "type": "STATE",
        "id": 17,
        "future_top": {"x": [1, "2"]},
        "state": {
            "type": "STREAM",
            "stream": {
                "stream_descriptor": {"name": "users", "namespace": "shop"},
                "stream_state": {"cursor": "2024-01-01", "nested": {"a": None}},
                "future_stream": 1,
            },
            "sourceStats": {"recordCount": 3.0},
            "future_state": "kept",
        },
    }
    state = StateMessage(json.dumps(message).encode())
    assert state.kind == "STREAM"
    assert state.stream_descriptor == ("shop", "users")
    out = state.with_record_count(3)
    assert out.endswith(b"\n")
    assert out.count(b"\n") == 1
    expected = json.loads(json.dumps(message))
    expected["state"]["destinationStats"] = {"recordCount": 3}
    assert json.loads(out) == expected


def test_state_message_keeps_existing_destination_stats_fields() -> None:
    line = (
        b'{"type":"STATE","state":{"type":"GLOBAL","global":{},"destinationStats":{"recordCount":9,"x":1}}}'
    )
    out = json.loads(StateMessage(line).with_record_count(0))
    assert out["state"]["destinationStats"] == {"recordCount": 0, "x": 1}


def test_state_message_keeps_big_numbers_in_the_state_exactly() -> None:
    line = (
        b'{"type":"STATE","id":12345678901234567890123,"state":{"type":"STREAM","stream":{'
        b'"stream_descriptor":{"name":"u"},"stream_state":{"cursor":123456789012345678901234567890}}}}'
    )
    out = json.loads(StateMessage(line).with_record_count(1))
    assert out["id"] == 12345678901234567890123
    assert out["state"]["stream"]["stream_state"]["cursor"] == 123456789012345678901234567890


def test_state_message_keeps_unicode() -> None:
    line = '{"type":"STATE","state":{"type":"GLOBAL","global":{"shared_state":{"k":"東京 😀"}}}}'.encode()
    out = StateMessage(line).with_record_count(0)
    assert json.loads(out)["state"]["global"]["shared_state"] == {"k": "東京 😀"}


@pytest.mark.parametrize(
    ("state", "kind", "descriptor"),
    [
        ({"type": "STREAM", "stream": {"stream_descriptor": {"name": "u"}}}, "STREAM", (None, "u")),
        (
            {"type": "STREAM", "stream": {"stream_descriptor": {"name": "u", "namespace": None}}},
            "STREAM",
            (None, "u"),
        ),
        ({"type": "GLOBAL", "global": {"shared_state": {}}}, "GLOBAL", None),
        ({"type": "LEGACY", "data": {"a": 1}}, "LEGACY", None),
        ({"data": {"a": 1}}, "LEGACY", None),
        ({"type": "STREAM", "stream": None}, "STREAM", None),
        ({"type": None, "data": {}, "global_": None}, "LEGACY", None),
    ],
)
def test_state_message_kind_and_descriptor(
    state: dict[str, Any], kind: str, descriptor: tuple[str | None, str] | None
) -> None:
    message = StateMessage(orjson.dumps({"type": "STATE", "state": state}))
    assert message.kind == kind
    assert message.stream_descriptor == descriptor
