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
