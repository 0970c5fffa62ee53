"""`check`: prove that a sync with this config would work, or say which step fails and why.

Steps: TCP connect, AUTH, SELECT, INFO (in `connection.probe`), then PING, write and delete a
probe key of the configured cache type (proves write permission for that data type).
"""

from __future__ import annotations

import logging
import uuid

from airbyte_cdk.models import AirbyteConnectionStatus, Status
from redis import exceptions as rex

from destination_redis.config import RedisConfig
from destination_redis.connection import ConnectStepError, RedisTarget, error_code, open_target

logger = logging.getLogger("airbyte")

PROBE_PREFIX = "_airbyte_check:"


def run_check(config: RedisConfig) -> AirbyteConnectionStatus:
    try:
        with open_target(config) as target:
            _ping(target)
            _probe_write(target)
            message = (
                f"Connected to Redis {target.server.version_text} ({target.server.mode}) at "
                f"{target.where}, database {config.db}; the '{config.cache_type}' layout can be written."
            )
    except ConnectStepError as exc:
        return AirbyteConnectionStatus(status=Status.FAILED, message=exc.message)
    except Exception as exc:
        message = getattr(exc, "message", None) or f"Unexpected {type(exc).__name__} during check."
        return AirbyteConnectionStatus(status=Status.FAILED, message=str(message))
    logger.info(message)
    return AirbyteConnectionStatus(status=Status.SUCCEEDED, message=message)


def _ping(target: RedisTarget) -> None:
    try:
        target.client.ping()
    except rex.RedisError as exc:
        raise ConnectStepError(f"PING failed at {target.where}: {type(exc).__name__}.", True) from None


def _probe_write(target: RedisTarget) -> None:
    """HSET then DEL a uniquely named probe key; it expires after a minute should DEL not run."""
    key = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    client = target.client
    try:
        if target.server.has_multi_field_hset:
            client.execute_command("HSET", key, "_airbyte_ab_id", "0", "_airbyte_data", "{}")
        else:
            client.execute_command("HMSET", key, "_airbyte_ab_id", "0", "_airbyte_data", "{}")
        client.expire(key, 60)
        client.delete(key)
    except rex.ResponseError as exc:
        code = error_code(exc)
        if code == "NOPERM":
            advice = "grant the ACL user write commands (HSET, INCRBY, UNLINK/DEL, SCAN) on the keys"
        elif code == "READONLY":
            advice = "this server is a read-only replica; point the connector at the primary"
        elif code == "OOM":
            advice = "the server is at maxmemory; raise maxmemory or free memory"
        else:
            advice = "check the server's settings"
        raise ConnectStepError(
            f"Write permission check failed at {target.where}: writing a probe hash was refused "
            f"({code}); {advice}.",
            False,
        ) from None
