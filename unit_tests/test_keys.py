"""Key names of the hash layout, glob escaping for SCAN MATCH, and which keys a stream owns."""

from __future__ import annotations

import pytest

from destination_redis import keys


def test_stream_key_joins_namespace_and_name() -> None:
    assert keys.stream_key("shop", "users") == b"shop:users"


def test_stream_key_without_namespace_starts_with_colon_as_0_1_4_wrote() -> None:
    assert keys.stream_key("", "users") == b":users"


def test_stream_key_is_utf8() -> None:
    assert keys.stream_key("café", "usérs") == "café:usérs".encode()


def test_record_key_appends_the_decimal_id() -> None:
    assert keys.record_key(b":users", 1) == b":users:1"
    assert keys.record_key(b"shop:users", 1234567890123) == b"shop:users:1234567890123"


@pytest.mark.parametrize(
    ("literal", "escaped"),
    [
        (b"users", b"users"),
        (b"we*ird", b"we\\*ird"),
        (b"wh?t", b"wh\\?t"),
        (b"br[ac]ket", b"br\\[ac\\]ket"),
        (b"back\\slash", b"back\\\\slash"),
        (b"*?[]\\", b"\\*\\?\\[\\]\\\\"),
        (b"a-b.c:d^e!f", b"a-b.c:d^e!f"),
    ],
)
def test_glob_escape(literal: bytes, escaped: bytes) -> None:
    assert keys.glob_escape(literal) == escaped


def test_record_scan_pattern_escapes_the_stream_key() -> None:
    assert keys.record_scan_pattern(b":we*ird") == b":we\\*ird:[0-9]*"
    assert keys.record_scan_pattern(b"ns:users") == b"ns:users:[0-9]*"


@pytest.mark.parametrize("key", [b":users:1", b":users:12", b":users:0", b":users:1234567890123456789"])
def test_is_record_key_accepts_stream_key_colon_digits(key: bytes) -> None:
    assert keys.is_record_key(b":users", key)


@pytest.mark.parametrize(
    "key",
    [
        b":users",  # the counter is not a record key
        b":users:",
        b":users:12:x",
        b":users:abc",
        b":users:1a",
        b":users:-1",
        b":users:+1",
        b":users: 1",
        b":users:1 ",
        b":users:\xd9\xa1",  # Arabic-Indic digit one, UTF-8
        b":users2:1",
        b":users-extra",
        b":users::1",
        b"x:users:1",
        b"users:1",
        b":user:1",
        b":usersX1",
    ],
)
def test_is_record_key_rejects_look_alikes(key: bytes) -> None:
    assert not keys.is_record_key(b":users", key)


def test_is_record_key_with_glob_characters_in_the_stream_is_literal() -> None:
    assert keys.is_record_key(b":we*ird", b":we*ird:3")
    assert not keys.is_record_key(b":we*ird", b":weXird:3")
    assert not keys.is_record_key(b":we*ird", b":we*irdo:3")


def test_is_record_key_with_namespace() -> None:
    assert keys.is_record_key(b"shop:users", b"shop:users:7")
    assert not keys.is_record_key(b"shop:users", b":users:7")
    assert not keys.is_record_key(b"shop:users", b"shop:users2:7")
