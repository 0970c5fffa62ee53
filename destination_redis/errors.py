"""The kinds of failure the platform understands, as our own exception: no CDK import.

`config_error`: the user must change something (config, catalog, input, server settings).
`transient_error`: the same sync may succeed when retried (connection dropped, server loading).
`system_error`: a fault of the connector itself.
The CLI turns a ConnectorError into one TRACE error message (protocol.py); the CDK-facing
`DestinationRedis` turns it into the CDK's AirbyteTracedException, so library callers see what
they always saw. Messages must never contain secrets: callers build them from names, hosts and
error codes only (and every emitted line is redacted besides, secrets.py).
"""

from __future__ import annotations

from typing import Literal

FailureType = Literal["config_error", "transient_error", "system_error"]


class ConnectorError(Exception):
    """A known failure: `message` for the user, `internal_message` for the logs, and who must act."""

    def __init__(self, message: str, internal_message: str | None, failure_type: FailureType) -> None:
        super().__init__(message)
        self.message = message
        self.internal_message = internal_message or message
        self.failure_type: FailureType = failure_type


def config_error(message: str, internal: str | None = None) -> ConnectorError:
    return ConnectorError(message, internal, "config_error")


def transient_error(message: str, internal: str | None = None) -> ConnectorError:
    return ConnectorError(message, internal, "transient_error")


def system_error(message: str, internal: str | None = None) -> ConnectorError:
    return ConnectorError(message, internal, "system_error")


class ConnectStepError(Exception):
    """A step of reaching Redis failed (SSH, tunnel, TCP, TLS, AUTH, SELECT, ...).

    `message` names the step, where, and what to change; `retryable` says whether the same
    config may work on a later try (a network problem) or the user must act.
    """

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable

    def as_traced(self) -> ConnectorError:
        return (transient_error if self.retryable else config_error)(self.message)


def step_failed(step: str, where: str, detail: str, advice: str, retryable: bool = False) -> ConnectStepError:
    """The one shape of every connection-step message: "<step> failed at <where>: <detail>. <advice>"."""
    return ConnectStepError(f"{step} failed at {where}: {detail}. {advice}", retryable)


class GateError(Exception):
    """The server cannot do what the config asks (a cache type, a search index); the message
    says why and what to do. `check` answers FAILED with it, `write` a config_error."""
