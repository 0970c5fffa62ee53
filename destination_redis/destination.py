"""DestinationRedis: the CDK's Destination API (spec / check / write) for library callers.

The command line does not come through here (run.py; the CDK takes over a second to import).
This class keeps the CDK's API for code that drives the connector as a library, the CDK's
standard tests among them, and gives it what it always gave: AirbyteConnectionStatus,
AirbyteMessage states, and AirbyteTracedException for a failure (our own ConnectorError
converted). The CDK's own write path parses each line into models (slow, drops unknown state
fields) and skips lines it cannot parse (loses data silently), so `write` here serializes the
messages and hands them to the same loader as the CLI.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import orjson
from airbyte_cdk.destinations import Destination
from airbyte_cdk.models import (
    AirbyteConnectionStatus,
    AirbyteMessage,
    AirbyteMessageSerializer,
    ConfiguredAirbyteCatalog,
    ConfiguredAirbyteCatalogSerializer,
    FailureType,
    Status,
)
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_redis.catalog import parse_catalog
from destination_redis.check import run_check
from destination_redis.config import parse_config
from destination_redis.errors import ConnectorError
from destination_redis.sync import write_lines


class DestinationRedis(Destination):
    def check(self, logger: logging.Logger, config: Mapping[str, Any]) -> AirbyteConnectionStatus:
        try:
            parsed = parse_config(config)
        except ConnectorError as exc:
            return AirbyteConnectionStatus(status=Status.FAILED, message=exc.message)
        result = run_check(parsed)
        return AirbyteConnectionStatus(
            status=Status.SUCCEEDED if result.ok else Status.FAILED, message=result.message
        )

    def write(
        self,
        config: Mapping[str, Any],
        configured_catalog: ConfiguredAirbyteCatalog,
        input_messages: Iterable[AirbyteMessage],
    ) -> Iterable[AirbyteMessage]:
        """The CDK API, for library callers; the CLI runs `sync.write_lines` on raw stdin."""
        with _traced():
            streams = parse_catalog(ConfiguredAirbyteCatalogSerializer.dump(configured_catalog))
            lines = (orjson.dumps(AirbyteMessageSerializer.dump(m)) for m in input_messages)
            for state in write_lines(parse_config(config), streams, lines):
                yield AirbyteMessageSerializer.load(orjson.loads(state))

    def run(self, args: list[str]) -> None:
        """spec, check and write as on the command line (run.py), printing to stdout; a failure
        raises AirbyteTracedException, as the CDK's `run` does."""
        import sys

        from destination_redis.run import execute, parse_args

        with _traced():
            execute(parse_args(args), sys.stdout)


def as_traced(exc: ConnectorError) -> AirbyteTracedException:
    """The CDK's exception for one of ours: same messages, same failure type."""
    return AirbyteTracedException(
        message=exc.message,
        internal_message=exc.internal_message,
        failure_type=FailureType(exc.failure_type),
        exception=exc,
    )


@contextmanager
def _traced() -> Iterator[None]:
    try:
        yield
    except ConnectorError as exc:
        raise as_traced(exc) from exc
