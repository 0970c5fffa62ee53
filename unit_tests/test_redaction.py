"""Secrets never in an emitted line: found from spec.json's airbyte_secret fields, and redacted
in every LOG and TRACE line as is and in their escaped forms."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from destination_redis import protocol, secrets
from destination_redis.errors import config_error, transient_error
from destination_redis.logs import AirbyteLogFormatter

SPEC = protocol.connection_specification()

# A quote, a backslash, a newline, a tab, non-ASCII (2- and 4-byte UTF-8) and a control character.
NASTY = 'pa"ss\\wö\nrd\t€😀\x01-SECRET'


@pytest.fixture(autouse=True)
def no_secrets() -> Iterator[None]:
    secrets.register([])
    yield
    secrets.register([])


def forms_of(secret: str) -> list[str]:
    """Every way the secret could be spelled in a JSON line."""
    once = [orjson.dumps(secret).decode()[1:-1], json.dumps(secret)[1:-1]]
    twice = [orjson.dumps(f).decode()[1:-1] for f in once] + [json.dumps(f)[1:-1] for f in once]
    return [secret, *once, *twice]


def assert_clean(line: bytes, secret: str) -> dict[str, Any]:
    text = line.decode()
    leaked = [form for form in forms_of(secret) if form in text]
    assert leaked == [], text
    message: dict[str, Any] = json.loads(text)  # still valid JSON
    return message


def test_secret_values_are_the_airbyte_secret_fields_of_the_config() -> None:
    config = {
        "host": "h", "username": "not-secret", "password": "pw",
        "ssl_mode": {"mode": "verify-full", "ca_certificate": "ca", "client_key": "key",
                     "client_key_password": ""},
        "tunnel_method": {"tunnel_method": "SSH_PASSWORD_AUTH", "tunnel_user": "u",
                          "tunnel_user_password": "ssh-pw"},
        "topology": {"mode": "sentinel", "master_name": "m", "sentinel_password": "sent-pw"},
    }
    assert sorted(secrets.secret_values(SPEC, config)) == ["ca", "key", "pw", "sent-pw", "ssh-pw"]


def test_secret_values_skip_absent_empty_and_odd_values() -> None:
    assert secrets.secret_values(SPEC, {"host": "h", "password": ""}) == []
    assert secrets.secret_values(SPEC, {"host": "h", "ssl_mode": "not an object"}) == []
    assert secrets.secret_values(SPEC, {"host": "h", "password": 12345}) == ["12345"]
    assert secrets.secret_values(SPEC, {"host": "h", "password": None}) == []


def test_secret_values_follow_array_items() -> None:
    spec = {"properties": {"keys": {"type": "array", "items": {"type": "string", "airbyte_secret": True}}}}
    assert secrets.secret_values(spec, {"keys": ["a1", "b2"]}) == ["a1", "b2"]


def test_a_log_line_never_holds_the_secret_in_any_form() -> None:
    secrets.register([NASTY])
    for text in forms_of(NASTY):
        message = assert_clean(protocol.log_line("INFO", f"AUTH with <{text}> failed"), NASTY)
        assert message["log"]["message"] == "AUTH with <****> failed"


def test_a_log_record_through_the_formatter_is_redacted() -> None:
    secrets.register([NASTY])
    quoted = json.dumps({"p": NASTY})
    record = logging.LogRecord("airbyte", logging.INFO, __file__, 1, "config %s", (quoted,), None)
    line = AirbyteLogFormatter().format(record).encode()
    message = assert_clean(line, NASTY)
    assert message["log"]["message"] == 'config {"p": "****"}'


def test_a_trace_line_never_holds_the_secret_in_message_internal_message_or_stack_trace() -> None:
    secrets.register([NASTY])
    try:
        raise transient_error(f"lost {NASTY}", f"internal {json.dumps(NASTY)} {NASTY!r}")
    except Exception as exc:
        line = protocol.error_trace_line(exc)
    error = assert_clean(line, NASTY)["trace"]["error"]
    assert error["message"] == "lost ****"
    assert error["internal_message"] == 'internal "****" \'****\''
    assert NASTY not in error["stack_trace"]
    assert "****" in error["stack_trace"]


def test_an_unexpected_exception_quoting_the_secret_is_redacted() -> None:
    secrets.register([NASTY])
    try:
        raise ValueError(NASTY.encode())  # a bytes repr: b'pa"ss\\w\xc3\xb6...'
    except ValueError as exc:
        line = protocol.error_trace_line(exc)
    error = assert_clean(line, NASTY)["trace"]["error"]
    assert repr(NASTY.encode())[2:-1] not in line.decode()
    assert error["internal_message"] == "b'****'"


def test_config_error_line_is_redacted_too() -> None:
    secrets.register(["hunter2"])
    error = assert_clean(protocol.error_trace_line(config_error("bad hunter2")), "hunter2")["trace"]["error"]
    assert error["message"] == "bad ****"


def test_the_longest_secret_is_replaced_first() -> None:
    secrets.register(["ab", "abc"])
    assert secrets.redact("x abc y ab") == "x **** y ****"


def test_register_replaces_what_was_registered() -> None:
    secrets.register(["first-secret"])
    secrets.register(["second-secret"])
    assert secrets.redact("first-secret second-secret") == "first-secret ****"
