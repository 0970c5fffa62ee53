"""DestinationRedis: spec, check and write, wired to the modules that do the work.

The CDK's own write path parses each line into pydantic-like models (slow, drops unknown state
fields) and skips lines it cannot parse (loses data silently), so `write` on the command line
runs our loader on raw stdin bytes instead; the CDK's `write()` API is kept for library callers.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import IO, Any

import orjson
from airbyte_cdk.destinations import Destination
from airbyte_cdk.models import (
    AirbyteConnectionStatus,
    AirbyteMessage,
    AirbyteMessageSerializer,
    ConfiguredAirbyteCatalog,
    ConfiguredAirbyteCatalogSerializer,
    Status,
    Type,
)
from airbyte_cdk.utils.airbyte_secrets_utils import get_secrets, update_secrets
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_redis.catalog import Stream, load_catalog, parse_catalog
from destination_redis.check import run_check
from destination_redis.config import RedisConfig, load_config_file, parse_config
from destination_redis.loader import Loader
from destination_redis.topology import open_router
from destination_redis.writers import make_writers


class DestinationRedis(Destination):
    def check(self, logger: logging.Logger, config: Mapping[str, Any]) -> AirbyteConnectionStatus:
        try:
            parsed = parse_config(config)
        except AirbyteTracedException as exc:
            return AirbyteConnectionStatus(status=Status.FAILED, message=exc.message)
        return run_check(parsed)

    def write(
        self,
        config: Mapping[str, Any],
        configured_catalog: ConfiguredAirbyteCatalog,
        input_messages: Iterable[AirbyteMessage],
    ) -> Iterable[AirbyteMessage]:
        """The CDK API, for library callers; the CLI uses `write_lines` on raw stdin."""
        streams = parse_catalog(ConfiguredAirbyteCatalogSerializer.dump(configured_catalog))
        lines = (orjson.dumps(AirbyteMessageSerializer.dump(m)) for m in input_messages)
        for state in write_lines(parse_config(config), streams, lines):
            yield AirbyteMessageSerializer.load(orjson.loads(state))

    def run(self, args: list[str]) -> None:
        """spec, check and write on the command line. The config file is read and validated
        here, the same way for check and write, so a mistake gets the same message from both."""
        parsed = self.parse_args(args)
        if parsed.command == "spec":
            super().run(args)
            return
        raw_config = load_config_file(parsed.config)
        spec = self.spec(logging.getLogger("airbyte"))
        update_secrets(get_secrets(spec.connectionSpecification, raw_config))
        if parsed.command == "check":
            status = self.check(logging.getLogger("airbyte"), raw_config)
            message = AirbyteMessage(type=Type.CONNECTION_STATUS, connectionStatus=status)
            emit([orjson.dumps(AirbyteMessageSerializer.dump(message)) + b"\n"], sys.stdout)
            return
        config = parse_config(raw_config)
        streams = load_catalog(parsed.catalog)
        emit(write_lines(config, streams, sys.stdin.buffer), sys.stdout)


def write_lines(config: RedisConfig, streams: list[Stream], lines: Iterable[bytes]) -> Iterator[bytes]:
    """Load the message lines into Redis; yields each STATE line once it may be emitted."""
    with _writers(config, streams) as writers:
        yield from Loader(streams, writers).run(lines)


@contextmanager
def _writers(config: RedisConfig, streams: list[Stream]) -> Iterator[dict[Stream, Any]]:
    with open_router(config) as router:
        yield make_writers(config, streams, router)


def emit(lines: Iterable[bytes], out: IO[str]) -> None:
    """Write each protocol line whole and flush at once: the platform checkpoints on it."""
    for line in lines:
        out.write(line.decode())
        out.flush()
