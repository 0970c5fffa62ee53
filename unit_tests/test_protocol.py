"""The protocol lines the CLI builds itself (protocol.py, logs.py): the shapes the CDK wrote."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from destination_redis import protocol, secrets
from destination_redis.errors import ConnectorError, config_error, system_error, transient_error
from destination_redis.logs import AirbyteLogFormatter

SPEC_FILE = Path(protocol.__file__).with_name("spec.json")


@pytest.fixture(autouse=True)
def no_secrets() -> Iterator[None]:
    secrets.register([])
    yield
    secrets.register([])


def parse(line: bytes) -> dict[str, Any]:
    assert line.endswith(b"\n"), line
    assert line.count(b"\n") == 1, line
    loaded: dict[str, Any] = json.loads(line)
    return loaded


def test_spec_line_is_spec_json_in_the_cdk_field_order() -> None:
    message = parse(protocol.spec_line())
    raw = json.loads(SPEC_FILE.read_text())
    assert message["type"] == "SPEC"
    assert message["spec"] == raw
    assert list(message["spec"]) == [
        "connectionSpecification",
        "documentationUrl",
        "supportsIncremental",
        "supportsNormalization",
        "supportsDBT",
        "supported_destination_sync_modes",
    ]


@pytest.mark.parametrize(("ok", "status"), [(True, "SUCCEEDED"), (False, "FAILED")])
def test_connection_status_line(ok: bool, status: str) -> None:
    assert parse(protocol.connection_status_line(ok, "Connected, é")) == {
        "type": "CONNECTION_STATUS",
        "connectionStatus": {"status": status, "message": "Connected, é"},
    }


def test_log_line() -> None:
    assert parse(protocol.log_line("WARN", "careful")) == {
        "type": "LOG",
        "log": {"level": "WARN", "message": "careful"},
    }


def test_a_config_error_trace_has_no_stack_trace() -> None:
    message = parse(protocol.error_trace_line(config_error("Set host.", "host was empty")))
    assert message["type"] == "TRACE"
    trace = message["trace"]
    assert trace["type"] == "ERROR"
    assert isinstance(trace["emitted_at"], float)
    assert trace["emitted_at"] > 1.7e12  # epoch milliseconds
    assert trace["error"] == {
        "message": "Set host.",
        "internal_message": "host was empty",
        "failure_type": "config_error",
    }


@pytest.mark.parametrize("make", [transient_error, system_error])
def test_other_known_failures_carry_their_stack_trace(make: Any) -> None:
    try:
        raise make("Redis is loading.")
    except ConnectorError as exc:
        error = parse(protocol.error_trace_line(exc))["trace"]["error"]
    assert error["message"] == error["internal_message"] == "Redis is loading."
    assert error["failure_type"] == make.__name__
    assert "Traceback" in error["stack_trace"]
    assert "Redis is loading." in error["stack_trace"]


def test_an_unexpected_exception_is_a_system_error_with_the_generic_message() -> None:
    try:
        raise KeyError("boom")
    except KeyError as exc:
        error = parse(protocol.error_trace_line(exc))["trace"]["error"]
    assert error["message"] == protocol.UNEXPECTED
    assert error["internal_message"] == "'boom'"
    assert error["failure_type"] == "system_error"
    assert "KeyError: 'boom'" in error["stack_trace"]


def test_connector_error_keeps_its_fields() -> None:
    exc = transient_error("lost")
    assert (exc.message, exc.internal_message, exc.failure_type) == ("lost", "lost", "transient_error")
    assert str(exc) == "lost"


@pytest.mark.parametrize(
    ("level", "expected"),
    [(logging.DEBUG, "DEBUG"), (logging.INFO, "INFO"), (logging.WARNING, "WARN"),
     (logging.ERROR, "ERROR"), (logging.CRITICAL, "FATAL")],
)
def test_log_records_become_log_lines(level: int, expected: str) -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(AirbyteLogFormatter())
    logger = logging.getLogger("test_protocol")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        logger.log(level, "wrote %d records", 3)
    finally:
        logger.removeHandler(handler)
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [
        {"type": "LOG", "log": {"level": expected, "message": "wrote 3 records"}}
    ]


def test_a_logged_exception_carries_its_traceback_in_one_line() -> None:
    record = logging.LogRecord("airbyte", logging.ERROR, __file__, 1, "failed", None, None)
    try:
        raise ValueError("inner")
    except ValueError:
        record.exc_info = sys.exc_info()
    text = AirbyteLogFormatter().format(record)
    assert "\n" not in text
    message = json.loads(text)["log"]["message"]
    assert message.startswith("failed\nTraceback")
    assert "ValueError: inner" in message
