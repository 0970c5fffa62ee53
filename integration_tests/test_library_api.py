"""DestinationRedis.write(), the CDK's API for library callers (the CLI reads raw stdin instead)."""

from __future__ import annotations

import redis
from airbyte_cdk.models import (
    AirbyteMessage,
    AirbyteRecordMessage,
    AirbyteStateMessage,
    AirbyteStateType,
    AirbyteStreamState,
    ConfiguredAirbyteCatalogSerializer,
    StreamDescriptor,
    Type,
)

from destination_redis import DestinationRedis
from integration_tests.cli import catalog
from integration_tests.servers import RedisServer


def test_cdk_write_api_writes_records_and_yields_states_with_counts(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    records = [
        AirbyteMessage(
            type=Type.RECORD,
            record=AirbyteRecordMessage(stream="users", data={"id": i, "name": "é"}, emitted_at=1000 + i),
        )
        for i in (1, 2)
    ]
    state = AirbyteMessage(
        type=Type.STATE,
        state=AirbyteStateMessage(
            type=AirbyteStateType.STREAM,
            stream=AirbyteStreamState(stream_descriptor=StreamDescriptor(name="users"), stream_state=None),
        ),
    )
    configured = ConfiguredAirbyteCatalogSerializer.load(catalog(("users", "append")))
    out = list(DestinationRedis().write(redis_server.config(), configured, [*records, state]))
    assert [m.type for m in out] == [Type.STATE]
    assert out[0].state is not None
    assert out[0].state.destinationStats is not None
    assert out[0].state.destinationStats.recordCount == 2.0
    assert redis_client.hgetall(":users:2") == {
        b"_airbyte_ab_id": b"2",
        b"_airbyte_emitted_at": b"1002",
        b"_airbyte_data": '{"id":2,"name":"é"}'.encode(),
    }
