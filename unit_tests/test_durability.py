"""The durability commands and how their replies are judged (topology/durability.py): pure logic,
the replies as hiredis gives them. The servers' side is in integration_tests/test_durability.py."""

from __future__ import annotations

import hiredis
import pytest

from destination_redis.commands import pack_command
from destination_redis.config import parse_config
from destination_redis.topology.durability import Durability

WHERE = "10.0.0.5:6379"


def _packed(*commands: tuple[bytes, ...]) -> bytes:
    return b"".join(pack_command(command) for command in commands)


def test_nothing_asked_sends_nothing() -> None:
    durability = Durability.of(parse_config({"host": "h"}))
    assert durability == Durability(0, 10_000, False)
    assert durability.commands == []
    assert durability.packed == b""
    assert durability.shortfall(WHERE, []) is None


def test_the_commands_follow_the_config_in_order() -> None:
    durability = Durability.of(parse_config(
        {"host": "h", "wait_for_replicas": 2, "wait_timeout_ms": 1500, "wait_for_aof": True}
    ))
    assert durability.commands == [(b"WAIT", b"2", b"1500"), (b"WAITAOF", b"1", b"0", b"1500")]
    assert durability.packed == _packed((b"WAIT", b"2", b"1500"), (b"WAITAOF", b"1", b"0", b"1500"))
    assert durability.without_replicas().commands == [(b"WAITAOF", b"1", b"0", b"1500")]


@pytest.mark.parametrize(
    "bad", [{"wait_for_replicas": -1}, {"wait_timeout_ms": 0}, {"wait_timeout_ms": 25_001}]
)
def test_out_of_range_settings_are_config_errors(bad: dict[str, int]) -> None:
    with pytest.raises(Exception, match="Invalid configuration"):
        parse_config({"host": "h", **bad})


def test_enough_replicas_and_a_local_fsync_pass() -> None:
    durability = Durability(replicas=2, aof=True)
    assert durability.shortfall(WHERE, [2, [1, 0]]) is None
    assert durability.shortfall(WHERE, [3, [1, 2]]) is None  # more than asked is fine


def test_fewer_replicas_name_how_many_of_how_many_and_where() -> None:
    shortfall = Durability(replicas=2, timeout_ms=500).shortfall(WHERE, [1])
    assert shortfall is not None
    assert shortfall.message.startswith(f"Only 1 of 2 replicas of Redis at {WHERE} acknowledged")
    assert "WAIT 2 500" in shortfall.message
    assert shortfall.error().failure_type == "transient_error"


def test_no_local_fsync_is_a_shortfall() -> None:
    shortfall = Durability(aof=True, timeout_ms=300).shortfall(WHERE, [[0, 0]])
    assert shortfall is not None
    assert "WAITAOF 1 0 300 answered 0 local" in shortfall.message
    assert shortfall.error().failure_type == "transient_error"


def test_the_first_shortfall_is_reported() -> None:
    shortfall = Durability(replicas=1, aof=True).shortfall(WHERE, [0, [0, 0]])
    assert shortfall is not None
    assert "0 of 1 replica " in shortfall.message


def test_an_error_reply_is_transient_but_noperm_is_the_users_to_fix() -> None:
    durability = Durability(replicas=1, aof=True)
    refused = durability.shortfall(WHERE, [hiredis.ReplyError("NOPERM this user has no permissions"), [1, 0]])
    assert refused is not None
    assert refused.user_must_act
    assert "+wait" in refused.message
    assert refused.error().failure_type == "config_error"
    other = durability.shortfall(WHERE, [1, hiredis.ReplyError("ERR WAITAOF cannot be used ...")])
    assert other is not None
    assert not other.user_must_act
    assert "WAITAOF 1 0 10000 (wait_for_aof)" in other.message
    assert other.error().failure_type == "transient_error"
