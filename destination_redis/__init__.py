"""Airbyte destination that loads records into Redis.

`DestinationRedis` (the CDK's Destination API) is imported on first use: importing the package,
as the CLI does, must not pull in the CDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from destination_redis.destination import DestinationRedis

__all__ = ["DestinationRedis"]


def __getattr__(name: str) -> Any:
    if name == "DestinationRedis":
        from destination_redis.destination import DestinationRedis

        return DestinationRedis
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
