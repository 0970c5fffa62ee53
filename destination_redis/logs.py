"""Log records as Airbyte LOG messages, what the CDK's AirbyteLogFormatter wrote, without the CDK.

They go to stdout through the same stream as the states and are flushed at once, so log lines and
states reach the platform in the order they happened.
"""

from __future__ import annotations

import logging
from typing import TextIO

from destination_redis.protocol import LOG_LEVELS, log_line


class AirbyteLogFormatter(logging.Formatter):
    """One LOG line per record: the message (and a traceback, if any), secrets redacted."""

    def format(self, record: logging.LogRecord) -> str:
        level = LOG_LEVELS.get(record.levelno, "INFO")
        return log_line(level, super().format(record)).decode().rstrip("\n")


def init_logging(out: TextIO) -> logging.Logger:
    """Route every logger to `out`; the connector's own logger ("airbyte") logs from INFO on."""
    handler = logging.StreamHandler(out)
    handler.setFormatter(AirbyteLogFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    logger = logging.getLogger("airbyte")
    logger.setLevel(logging.INFO)
    return logger
