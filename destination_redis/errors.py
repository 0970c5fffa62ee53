"""The two kinds of failure the platform understands, built on the CDK's traced exception.

`config_error`: the user must change something (config, catalog, input, server settings).
`transient_error`: the same sync may succeed when retried (connection dropped, server loading).
Messages must never contain secrets: callers build them from names, hosts and error codes only.
"""

from __future__ import annotations

from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException


def config_error(message: str, internal: str | None = None) -> AirbyteTracedException:
    return AirbyteTracedException(
        message=message, internal_message=internal or message, failure_type=FailureType.config_error
    )


def transient_error(message: str, internal: str | None = None) -> AirbyteTracedException:
    return AirbyteTracedException(
        message=message, internal_message=internal or message, failure_type=FailureType.transient_error
    )


def system_error(message: str, internal: str | None = None) -> AirbyteTracedException:
    return AirbyteTracedException(
        message=message, internal_message=internal or message, failure_type=FailureType.system_error
    )


class ConnectStepError(Exception):
    """A step of reaching Redis failed (SSH, tunnel, TCP, TLS, AUTH, SELECT, ...).

    `message` names the step, where, and what to change; `retryable` says whether the same
    config may work on a later try (a network problem) or the user must act.
    """

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable

    def as_traced(self) -> AirbyteTracedException:
        return (transient_error if self.retryable else config_error)(self.message)


def step_failed(step: str, where: str, detail: str, advice: str, retryable: bool = False) -> ConnectStepError:
    """The one shape of every connection-step message: "<step> failed at <where>: <detail>. <advice>"."""
    return ConnectStepError(f"{step} failed at {where}: {detail}. {advice}", retryable)
