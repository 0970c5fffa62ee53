"""The configured catalog: tolerant parsing, clear errors, and matching records to streams."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from destination_redis.catalog import Stream, StreamResolver, load_catalog, parse_catalog
from destination_redis.errors import ConnectorError


def configured(name: str, mode: str = "append", namespace: Any = "absent", **extra: Any) -> dict[str, Any]:
    stream: dict[str, Any] = {
        "name": name,
        "json_schema": {"type": "object"},
        "supported_sync_modes": ["full_refresh"],
    }
    if namespace != "absent":
        stream["namespace"] = namespace
    return {
        "stream": stream,
        "sync_mode": "full_refresh" if mode == "overwrite" else "incremental",
        "destination_sync_mode": mode,
        **extra,
    }


def test_parses_name_namespace_and_mode() -> None:
    streams = parse_catalog(
        {"streams": [configured("users", "append", "shop"), configured("orders", "overwrite")]}
    )
    assert streams == [
        Stream(
            name="users", namespace="shop", sync_mode="append", generation_id=None, minimum_generation_id=None
        ),
        Stream(
            name="orders", namespace="", sync_mode="overwrite", generation_id=None, minimum_generation_id=None
        ),
    ]


@pytest.mark.parametrize("namespace", [None, "", "absent"])
def test_null_empty_or_absent_namespace_is_the_empty_string(namespace: Any) -> None:
    (stream,) = parse_catalog({"streams": [configured("users", namespace=namespace)]})
    assert stream.namespace == ""
    assert stream.label == "users"


def test_label_names_namespace_and_stream() -> None:
    (stream,) = parse_catalog({"streams": [configured("users", namespace="shop")]})
    assert stream.label == "shop.users"


def test_generation_ids_are_read() -> None:
    (stream,) = parse_catalog(
        {"streams": [configured("users", "overwrite", generation_id=3, minimum_generation_id=3, sync_id=9)]}
    )
    assert (stream.generation_id, stream.minimum_generation_id) == (3, 3)


def test_null_optional_fields_are_fine() -> None:
    entry = configured(
        "users",
        "append",
        None,
        primary_key=None,
        cursor_field=None,
        generation_id=None,
        minimum_generation_id=None,
        sync_id=None,
    )
    entry["stream"].update(
        {"source_defined_cursor": None, "default_cursor_field": None, "is_resumable": None}
    )
    (stream,) = parse_catalog({"streams": [entry]})
    assert (stream.name, stream.namespace, stream.sync_mode) == ("users", "", "append")


def test_unknown_fields_are_ignored_everywhere() -> None:
    entry = configured("users", "overwrite", "shop", future_field={"x": 1}, include_files=True)
    entry["stream"]["is_file_based"] = False
    entry["stream"]["whatever"] = [1, 2]
    (stream,) = parse_catalog({"streams": [entry], "top_level_future": "x"})
    assert stream == Stream("users", "shop", "overwrite", None, None)


def test_empty_catalog_is_valid() -> None:
    assert parse_catalog({"streams": []}) == []


@pytest.mark.parametrize("mode", ["overwrite_dedup", "update", "soft_delete", "nonsense", "APPEND"])
def test_unsupported_sync_mode_is_a_config_error_naming_stream_and_mode(mode: str) -> None:
    with pytest.raises(ConnectorError) as info:
        parse_catalog({"streams": [configured("users", "append"), configured("orders", mode)]})
    assert info.value.failure_type == "config_error"
    message = str(info.value.message)
    assert "'orders'" in message
    assert f"'{mode}'" in message
    assert "append" in message
    assert "overwrite" in message


def test_stream_twice_in_the_catalog_is_an_error() -> None:
    with pytest.raises(ConnectorError) as info:
        parse_catalog({"streams": [configured("users", namespace="a"), configured("users", namespace="a")]})
    assert info.value.failure_type == "config_error"
    assert "'users'" in str(info.value.message)


def test_same_name_in_two_namespaces_is_two_streams() -> None:
    streams = parse_catalog(
        {"streams": [configured("users", namespace="a"), configured("users", namespace="b")]}
    )
    assert [(s.namespace, s.name) for s in streams] == [("a", "users"), ("b", "users")]


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({}, "streams"),
        ({"streams": [{"destination_sync_mode": "append"}]}, "streams.0.stream"),
        (
            {"streams": [{"stream": {"namespace": "x"}, "destination_sync_mode": "append"}]},
            "streams.0.stream.name",
        ),
        ({"streams": "users"}, "streams"),
        ([], "Invalid configured catalog"),
    ],
)
def test_malformed_catalog_is_a_config_error_naming_the_field(raw: Any, where: str) -> None:
    with pytest.raises(ConnectorError) as info:
        parse_catalog(raw)
    assert info.value.failure_type == "config_error"
    message = str(info.value.message)
    assert message.startswith("Invalid configured catalog")
    assert where in message


def test_load_catalog_reads_any_file_name(tmp_path: Path) -> None:
    path = tmp_path / "catalog.txt"  # PyAirbyte's file name
    path.write_text(json.dumps({"streams": [configured("users", "overwrite", "shop")]}))
    assert load_catalog(path) == [Stream("users", "shop", "overwrite", None, None)]
    assert load_catalog(str(path)) == [Stream("users", "shop", "overwrite", None, None)]


def test_load_catalog_missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(ConnectorError) as info:
        load_catalog(path)
    assert info.value.failure_type == "config_error"
    assert str(path) in str(info.value.message)


def test_load_catalog_not_json_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "catalog.json"
    path.write_text("{not json")
    with pytest.raises(ConnectorError) as info:
        load_catalog(path)
    assert info.value.failure_type == "config_error"
    assert "not JSON" in str(info.value.message)
    assert str(path) in str(info.value.message)


# StreamResolver --------------------------------------------------------------------------------

USERS_A = Stream("users", "a", "append", None, None)
USERS_B = Stream("users", "b", "append", None, None)
USERS_NONE = Stream("users", "", "append", None, None)
ORDERS_SHOP = Stream("orders", "shop", "overwrite", None, None)
EVENTS_NONE = Stream("events", "", "append", None, None)


def test_resolver_exact_namespace_wins() -> None:
    resolver = StreamResolver([USERS_A, USERS_B, USERS_NONE])
    assert resolver.find("a", "users") is USERS_A
    assert resolver.find("b", "users") is USERS_B


@pytest.mark.parametrize("namespace", [None, ""])
def test_resolver_record_without_namespace_takes_the_configured_streams(namespace: str | None) -> None:
    resolver = StreamResolver([ORDERS_SHOP, EVENTS_NONE])
    assert resolver.find(namespace, "orders") is ORDERS_SHOP
    assert resolver.find(namespace, "events") is EVENTS_NONE


@pytest.mark.parametrize("namespace", [None, ""])
def test_resolver_record_without_namespace_prefers_the_stream_without_namespace(
    namespace: str | None,
) -> None:
    resolver = StreamResolver([USERS_A, USERS_NONE])
    assert resolver.find(namespace, "users") is USERS_NONE


def test_resolver_record_without_namespace_is_ambiguous_between_namespaces() -> None:
    resolver = StreamResolver([USERS_A, USERS_B])
    assert resolver.find(None, "users") is None
    message = resolver.describe_missing(None, "users")
    assert "'users'" in message
    assert "a, b" in message
    assert "namespace" in message


def test_resolver_record_with_another_namespace_is_not_found() -> None:
    resolver = StreamResolver([USERS_A, USERS_NONE])
    assert resolver.find("c", "users") is None
    message = resolver.describe_missing("c", "users")
    assert "'users'" in message
    assert "'c'" in message
    assert "not in the configured catalog" in message


def test_resolver_unknown_stream_message_lists_configured_streams() -> None:
    resolver = StreamResolver([USERS_A, EVENTS_NONE])
    assert resolver.find(None, "payments") is None
    message = resolver.describe_missing(None, "payments")
    assert "'payments'" in message
    assert "'a.users'" in message
    assert "'events'" in message


def test_resolver_is_case_sensitive() -> None:
    resolver = StreamResolver([USERS_NONE])
    assert resolver.find(None, "Users") is None
    assert resolver.find("A", "users") is None
