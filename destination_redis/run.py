"""Entry point of the console script `destination-redis` and of `python main.py`."""

from __future__ import annotations

import logging
import sys

import orjson
from airbyte_cdk.exception_handler import init_uncaught_exception_handler
from airbyte_cdk.logger import AirbyteLogFormatter
from airbyte_cdk.models import AirbyteMessageSerializer, FailureType
from airbyte_cdk.utils.airbyte_secrets_utils import filter_secrets
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_redis.destination import DestinationRedis


def _init_logging() -> logging.Logger:
    """Log lines as Airbyte LOG messages on stdout, through the same stream as states, unbuffered."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(AirbyteLogFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    logger = logging.getLogger("airbyte")
    logger.setLevel(logging.INFO)
    return logger


def run(argv: list[str] | None = None) -> None:
    logger = _init_logging()
    init_uncaught_exception_handler(logger)
    try:
        DestinationRedis().run(sys.argv[1:] if argv is None else argv)
    except AirbyteTracedException as exc:
        # A known failure: one TRACE error message with the cause. A config_error is the user's
        # to fix: its stack trace would only be noise, so it carries none.
        logger.error(exc.message)
        message = exc.as_airbyte_message()
        if exc.failure_type == FailureType.config_error and message.trace and message.trace.error:
            message.trace.error.stack_trace = None
        print(filter_secrets(orjson.dumps(AirbyteMessageSerializer.dump(message)).decode()), flush=True)
        sys.exit(1)


if __name__ == "__main__":
    run()
