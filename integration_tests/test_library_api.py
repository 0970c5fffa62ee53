"""DestinationRedis, the CDK's API for library callers (the CLI reads raw stdin instead): what it
returns and raises is the CDK's (AirbyteConnectionStatus, AirbyteMessage, AirbyteTracedException),
though the package underneath raises its own ConnectorError."""

from __future__ import annotations

import json
import logging

import pytest
import redis
from airbyte_cdk.models import (
    AirbyteMessage,
    AirbyteRecordMessage,
    AirbyteStateMessage,
    AirbyteStateType,
    AirbyteStreamState,
    ConfiguredAirbyteCatalogSerializer,
    FailureType,
    Status,
    StreamDescriptor,
    Type,
)
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

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


def test_a_failing_cdk_write_raises_the_cdks_traced_exception(redis_server: RedisServer) -> None:
    record = AirbyteMessage(
        type=Type.RECORD, record=AirbyteRecordMessage(stream="nope", data={"id": 1}, emitted_at=1)
    )
    configured = ConfiguredAirbyteCatalogSerializer.load(catalog(("users", "append")))
    with pytest.raises(AirbyteTracedException) as info:
        list(DestinationRedis().write(redis_server.config(), configured, [record]))
    assert info.value.failure_type == FailureType.config_error
    assert "'nope'" in str(info.value.message)
    assert info.value.internal_message == info.value.message


def test_cdk_check_answers_connection_statuses(redis_server: RedisServer) -> None:
    logger = logging.getLogger("airbyte")
    good = DestinationRedis().check(logger, redis_server.config())
    assert good.status == Status.SUCCEEDED
    assert "Connected to Redis" in str(good.message)
    bad = DestinationRedis().check(logger, {"host": "localhost", "port": "abc"})
    assert bad.status == Status.FAILED
    assert "port" in str(bad.message)


def test_cdk_spec_is_spec_json(capsys: pytest.CaptureFixture[str]) -> None:
    spec = DestinationRedis().spec(logging.getLogger("airbyte"))
    DestinationRedis().run(["spec"])
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["spec"]["connectionSpecification"] == spec.connectionSpecification


def test_cdk_run_raises_the_cdks_traced_exception(tmp_path: object) -> None:
    with pytest.raises(AirbyteTracedException) as info:
        DestinationRedis().run(["check", "--config", "/nonexistent/config.json"])
    assert info.value.failure_type == FailureType.config_error
