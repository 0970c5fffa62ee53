"""The Airbyte protocol lines the CLI writes, built with orjson: no CDK, no pydantic models.

Shapes as the CDK's serializers wrote them (fields that would be null are left out). Every string
of a LOG or TRACE message is redacted (secrets.py) before the line is encoded.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import IO, Any

import orjson

from destination_redis.errors import ConnectorError
from destination_redis.secrets import redact

# The CDK's ConnectorSpecification, in its field order (the order `spec` printed them in).
_SPEC_FIELDS = (
    "connectionSpecification",
    "documentationUrl",
    "changelogUrl",
    "supportsIncremental",
    "supportsNormalization",
    "supportsDBT",
    "supported_destination_sync_modes",
    "authSpecification",
    "advanced_auth",
    "protocol_version",
)

# Python logging levels -> the protocol's log levels.
LOG_LEVELS = {50: "FATAL", 40: "ERROR", 30: "WARN", 20: "INFO", 10: "DEBUG"}

UNEXPECTED = "Something went wrong in the connector. See the logs for more details."


@cache
def spec() -> dict[str, Any]:
    """spec.json, as shipped beside this module (importlib.resources would cost more to import
    than the whole `spec` command otherwise takes)."""
    raw = Path(__file__).with_name("spec.json").read_bytes()
    loaded: dict[str, Any] = orjson.loads(raw)
    return loaded


def connection_specification() -> dict[str, Any]:
    specification: dict[str, Any] = spec()["connectionSpecification"]
    return specification


def spec_line() -> bytes:
    raw = spec()
    body = {name: raw[name] for name in _SPEC_FIELDS if raw.get(name) is not None}
    return _line({"type": "SPEC", "spec": body})


def connection_status_line(ok: bool, message: str) -> bytes:
    status = {"status": "SUCCEEDED" if ok else "FAILED", "message": message}
    return _line({"type": "CONNECTION_STATUS", "connectionStatus": status})


def log_line(level: str, message: str) -> bytes:
    return _redacted({"type": "LOG", "log": {"level": level, "message": message}})


def error_trace_line(exc: BaseException) -> bytes:
    """One TRACE error message for a failure that ends the command.

    A ConnectorError says its own message and failure type; a config_error is the user's to fix,
    so its stack trace would only be noise and it carries none. Anything else is a system_error
    with the connector's generic message, the exception as internal message and its stack trace.
    """
    error: dict[str, Any]
    if isinstance(exc, ConnectorError):
        error = {
            "message": exc.message,
            "internal_message": exc.internal_message,
            "failure_type": exc.failure_type,
        }
        if exc.failure_type != "config_error":
            error["stack_trace"] = stack_trace(exc)
    else:
        error = {
            "message": UNEXPECTED,
            "internal_message": str(exc),
            "failure_type": "system_error",
            "stack_trace": stack_trace(exc),
        }
    trace = {"type": "ERROR", "emitted_at": time.time() * 1000, "error": error}
    return _redacted({"type": "TRACE", "trace": trace})


def stack_trace(exc: BaseException) -> str:
    return "".join(traceback.TracebackException.from_exception(exc).format())


def _line(message: dict[str, Any]) -> bytes:
    return orjson.dumps(message) + b"\n"


def _redacted(message: dict[str, Any]) -> bytes:
    return _line(_redact_strings(message))


def _redact_strings(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redact_strings(item) for key, item in value.items()}
    return value


def emit(lines: Iterable[bytes], out: IO[str]) -> None:
    """Write each protocol line whole and flush at once: the platform checkpoints on it."""
    for line in lines:
        out.write(line.decode())
        out.flush()
