"""Entry point of the console script `destination-redis` and of `python main.py`."""

from __future__ import annotations

import logging
import sys

from airbyte_cdk.exception_handler import init_uncaught_exception_handler
from airbyte_cdk.logger import AirbyteLogFormatter
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
        # A known failure: one TRACE error message with the cause, no traceback noise.
        logger.error(exc.message)
        exc.emit_message()
        sys.exit(1)


if __name__ == "__main__":
    run()
