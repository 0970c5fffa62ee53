"""spec.json (the form users fill in) and RedisConfig (what the connector reads) cannot drift apart.

Every property of the form is a field of the model and back, in every oneOf branch, with the same
type, default, limits and secrecy; configs written for Airbyte's 0.1.4 connector validate in both.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs are installed
import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from destination_redis.catalog import SUPPORTED_SYNC_MODES
from destination_redis.config import (
    ClusterTopology,
    NoTunnel,
    RedisConfig,
    SearchIndexConfig,
    SentinelTopology,
    SshKeyTunnel,
    SshPasswordTunnel,
    SslDisabled,
    SslVerifyFull,
    StandaloneTopology,
    StreamOverride,
    VectorFieldConfig,
)

SPEC: dict[str, Any] = json.loads((files("destination_redis") / "spec.json").read_text())
CONNECTION = SPEC["connectionSpecification"]

# Each oneOf property of the form, the models of its branches by discriminator value.
BRANCHES: dict[str, tuple[str, dict[str, type[BaseModel]]]] = {
    "ssl_mode": ("mode", {"disable": SslDisabled, "verify-full": SslVerifyFull}),
    "tunnel_method": (
        "tunnel_method",
        {"NO_TUNNEL": NoTunnel, "SSH_KEY_AUTH": SshKeyTunnel, "SSH_PASSWORD_AUTH": SshPasswordTunnel},
    ),
    "topology": (
        "mode",
        {"standalone": StandaloneTopology, "cluster": ClusterTopology, "sentinel": SentinelTopology},
    ),
}
CONSTRAINTS = (
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
)


def _branch_schemas(name: str) -> dict[str, dict[str, Any]]:
    discriminator, _ = BRANCHES[name]
    return {b["properties"][discriminator]["const"]: b for b in CONNECTION["properties"][name]["oneOf"]}


def _pairs() -> list[tuple[str, dict[str, Any], type[BaseModel]]]:
    """(where, spec object schema, model) for the top level and every oneOf branch."""
    pairs: list[tuple[str, dict[str, Any], type[BaseModel]]] = [("config", CONNECTION, RedisConfig)]
    for name, (_, models) in BRANCHES.items():
        schemas = _branch_schemas(name)
        assert set(schemas) == set(models), f"{name}: spec branches {set(schemas)} != models {set(models)}"
        pairs += [(f"{name}[{value}]", schemas[value], models[value]) for value in sorted(models)]
    return pairs


PAIRS = _pairs()
PAIR_IDS = [where for where, _, _ in PAIRS]


def _model_property(model: type[BaseModel], name: str) -> dict[str, Any]:
    """The model's JSON schema of one field, with `X | None` unwrapped to X."""
    prop = dict(model.model_json_schema()["properties"][name])
    options = [o for o in prop.pop("anyOf", []) if o.get("type") != "null"]
    if len(options) == 1:
        prop.update(options[0])
    if "$ref" in prop:  # a nested model (search_index): an object, compared on its own below
        prop["type"] = "object"
    return prop


def _allowed(prop: dict[str, Any]) -> set[Any] | None:
    if "const" in prop:
        return {prop["const"]}
    if "enum" in prop:
        return set(prop["enum"])
    return None


def _is_secret(model: type[BaseModel], name: str) -> bool:
    annotation = model.model_fields[name].annotation
    return annotation in (SecretStr, SecretStr | None)


def test_streams_items_and_the_override_model_agree() -> None:
    items = CONNECTION["properties"]["streams"]["items"]
    assert set(items["properties"]) == set(StreamOverride.model_fields)
    assert items["required"] == ["name"]
    for name, prop in items["properties"].items():
        mine = _model_property(StreamOverride, name)
        assert prop["type"] == mine["type"], name
        for keyword in CONSTRAINTS:
            assert prop.get(keyword) == mine.get(keyword), f"streams.{name}: {keyword}"
        assert _allowed(prop) == _allowed(mine), f"streams.{name}: allowed values"
    assert _allowed(items["properties"]["cache_type"]) == _allowed(_model_property(RedisConfig, "cache_type"))


@pytest.mark.parametrize("where", ["config", "streams"])
def test_search_index_objects_and_their_models_agree(where: str) -> None:
    """The nested search_index form (top level and per stream) and SearchIndexConfig /
    VectorFieldConfig: the same fields, types, limits, allowed values, defaults, required."""
    holder = CONNECTION if where == "config" else CONNECTION["properties"]["streams"]["items"]
    index = holder["properties"]["search_index"]
    vectors = index["properties"]["vector_fields"]["items"]
    for schema, model in ((index, SearchIndexConfig), (vectors, VectorFieldConfig)):
        assert set(schema["properties"]) == set(model.model_fields), model.__name__
        required = {n for n, f in model.model_fields.items() if f.is_required()}
        assert set(schema.get("required", [])) == required, model.__name__
        for name, prop in schema["properties"].items():
            mine = _model_property(model, name)
            assert prop["type"] == mine["type"], f"{model.__name__}.{name}"
            for keyword in CONSTRAINTS:
                assert prop.get(keyword) == mine.get(keyword), f"{model.__name__}.{name}: {keyword}"
            assert _allowed(prop) == _allowed(mine), f"{model.__name__}.{name}: allowed values"
            field = model.model_fields[name]
            if not field.is_required() and field.get_default() is not None:
                assert prop.get("default") == field.get_default(), f"{model.__name__}.{name}: default"


def test_every_oneof_property_is_mapped() -> None:
    with_one_of = {name for name, prop in CONNECTION["properties"].items() if "oneOf" in prop}
    assert with_one_of == set(BRANCHES)


@pytest.mark.parametrize(("where", "schema", "model"), PAIRS, ids=PAIR_IDS)
def test_properties_and_fields_are_the_same(
    where: str, schema: dict[str, Any], model: type[BaseModel]
) -> None:
    assert set(schema["properties"]) == set(model.model_fields), where


@pytest.mark.parametrize(("where", "schema", "model"), PAIRS, ids=PAIR_IDS)
def test_types_agree(where: str, schema: dict[str, Any], model: type[BaseModel]) -> None:
    for name, prop in schema["properties"].items():
        if name in BRANCHES and where == "config":
            assert prop["type"] == "object"
            continue
        assert prop["type"] == _model_property(model, name)["type"], f"{where}.{name}"


@pytest.mark.parametrize(("where", "schema", "model"), PAIRS, ids=PAIR_IDS)
def test_limits_and_allowed_values_agree(where: str, schema: dict[str, Any], model: type[BaseModel]) -> None:
    for name, prop in schema["properties"].items():
        if name in BRANCHES and where == "config":
            continue
        mine = _model_property(model, name)
        for keyword in CONSTRAINTS:
            assert prop.get(keyword) == mine.get(keyword), f"{where}.{name}: {keyword}"
        assert _allowed(prop) == _allowed(mine), f"{where}.{name}: allowed values"


@pytest.mark.parametrize(("where", "schema", "model"), PAIRS, ids=PAIR_IDS)
def test_defaults_agree(where: str, schema: dict[str, Any], model: type[BaseModel]) -> None:
    for name, prop in schema["properties"].items():
        field = model.model_fields[name]
        if field.is_required():
            # A discriminator may carry its const as a UI default; any other default must be the model's.
            assert "default" not in prop or prop.get("const") == prop["default"], f"{where}.{name}"
            continue
        default = field.get_default()
        if isinstance(default, BaseModel):  # a oneOf's default branch
            discriminator, models = BRANCHES[name]
            assert type(default) is models[getattr(default, discriminator)]
            assert "default" not in prop or prop["default"] == default.model_dump(), f"{where}.{name}"
        elif default is None:
            assert prop.get("default") is None, f"{where}.{name}"
        elif prop.get("const") == default and "default" not in prop:
            pass  # a discriminator: its const is the only value, whatever the default
        else:
            assert "default" in prop, f"{where}.{name}: the model defaults to {default!r}, the form has none"
            assert prop["default"] == default, f"{where}.{name}"


@pytest.mark.parametrize(("where", "schema", "model"), PAIRS, ids=PAIR_IDS)
def test_required_fields_agree(where: str, schema: dict[str, Any], model: type[BaseModel]) -> None:
    spec_required = set(schema.get("required", []))
    model_required = {name for name, field in model.model_fields.items() if field.is_required()}
    # What the model requires, the form requires: a config the form accepts must parse.
    assert model_required <= spec_required, where
    # What the form requires beyond the model is only a discriminator or a field with the same default.
    for name in spec_required - model_required:
        prop = schema["properties"][name]
        default = model.model_fields[name].get_default()
        assert prop.get("const") == default or prop.get("default") == default, f"{where}.{name}"


def test_top_level_required_is_exactly_host() -> None:
    assert CONNECTION["required"] == ["host"]
    assert {n for n, f in RedisConfig.model_fields.items() if f.is_required()} == {"host"}


@pytest.mark.parametrize(("where", "schema", "model"), PAIRS, ids=PAIR_IDS)
def test_secrets_are_airbyte_secret_and_secret_str(
    where: str, schema: dict[str, Any], model: type[BaseModel]
) -> None:
    for name, prop in schema["properties"].items():
        assert bool(prop.get("airbyte_secret")) == _is_secret(model, name), f"{where}.{name}"


def test_the_expected_secrets_are_marked() -> None:
    secrets = {n for n, p in CONNECTION["properties"].items() if p.get("airbyte_secret")}
    for name in BRANCHES:
        for branch in CONNECTION["properties"][name]["oneOf"]:
            secrets |= {n for n, p in branch["properties"].items() if p.get("airbyte_secret")}
    assert secrets == {
        "password",
        "ca_certificate",
        "client_certificate",
        "sentinel_password",
        "client_key",
        "client_key_password",
        "ssh_key",
        "tunnel_user_password",
    }


def test_spec_offers_db_and_the_sync_modes_the_catalog_accepts() -> None:
    modes = SPEC["supported_destination_sync_modes"]
    assert modes[:2] == ["overwrite", "append"]
    assert sorted(modes) == sorted(SUPPORTED_SYNC_MODES)
    assert CONNECTION["properties"]["db"]["type"] == "integer"
    assert CONNECTION["properties"]["db"]["default"] == 0


def test_spec_is_a_valid_draft7_schema() -> None:
    jsonschema.Draft7Validator.check_schema(CONNECTION)


# Configs of Airbyte's destination-redis 0.1.4 ------------------------------------------------

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
LEGACY_CONFIGS: dict[str, dict[str, Any]] = {
    "as-saved-by-0.1.4": {
        "host": "localhost",
        "port": 6379,
        "username": "",
        "password": "",
        "ssl": False,
        "ssl_mode": {"mode": "disable"},
        "cache_type": "hash",
        "tunnel_method": {"tunnel_method": "NO_TUNNEL"},
    },
    "0.1.4-required-only": {
        "host": "redis.internal",
        "username": "default",
        "port": 6380,
        "cache_type": "hash",
    },
    "0.1.4-verify-full": {
        "host": "redis.example.com",
        "port": 6380,
        "username": "app",
        "password": "s3cret",
        "ssl": True,
        "ssl_mode": {
            "mode": "verify-full",
            "ca_certificate": PEM,
            "client_certificate": PEM,
            "client_key": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
            "client_key_password": "kp",
        },
        "cache_type": "hash",
        "tunnel_method": {"tunnel_method": "NO_TUNNEL"},
    },
    "0.1.4-ssh-key": {
        "host": "10.0.0.5",
        "port": 6379,
        "username": "",
        "password": "pw",
        "ssl": False,
        "ssl_mode": {"mode": "disable"},
        "cache_type": "hash",
        "tunnel_method": {
            "tunnel_method": "SSH_KEY_AUTH",
            "tunnel_host": "bastion.example.com",
            "tunnel_port": 22,
            "tunnel_user": "ubuntu",
            "ssh_key": "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n",
        },
    },
    "0.1.4-ssh-password": {
        "host": "10.0.0.5",
        "port": 6379,
        "username": "",
        "password": "pw",
        "cache_type": "hash",
        "tunnel_method": {
            "tunnel_method": "SSH_PASSWORD_AUTH",
            "tunnel_host": "bastion.example.com",
            "tunnel_port": 2222,
            "tunnel_user": "ubuntu",
            "tunnel_user_password": "tpw",
        },
    },
}


@pytest.mark.parametrize("name", sorted(LEGACY_CONFIGS))
def test_0_1_4_config_validates_against_the_spec(name: str) -> None:
    jsonschema.validate(LEGACY_CONFIGS[name], CONNECTION, cls=jsonschema.Draft7Validator)


@pytest.mark.parametrize("name", sorted(LEGACY_CONFIGS))
def test_0_1_4_config_validates_in_the_model(name: str) -> None:
    config = RedisConfig.model_validate(LEGACY_CONFIGS[name])
    assert config.host == LEGACY_CONFIGS[name]["host"]
    assert config.port == LEGACY_CONFIGS[name]["port"]
    assert config.db == 0
    assert config.cache_type == "hash"


def test_0_1_4_config_as_saved_means_no_auth_no_tls_no_tunnel() -> None:
    config = RedisConfig.model_validate(LEGACY_CONFIGS["as-saved-by-0.1.4"])
    assert config.username is None
    assert config.password is None
    assert config.tls is None
    assert config.tunnel_method == NoTunnel()
    assert config.ssl_mode == SslDisabled()


def test_0_1_4_verify_full_config_keeps_its_certificates() -> None:
    config = RedisConfig.model_validate(LEGACY_CONFIGS["0.1.4-verify-full"])
    tls = config.tls
    assert tls is not None
    assert tls.ca_certificate is not None
    assert tls.ca_certificate.get_secret_value() == PEM
    assert config.password is not None
    assert config.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(config)
    assert PEM not in repr(config)


def test_0_1_4_ssh_configs_keep_their_tunnel() -> None:
    key = RedisConfig.model_validate(LEGACY_CONFIGS["0.1.4-ssh-key"]).tunnel_method
    assert isinstance(key, SshKeyTunnel)
    assert (key.tunnel_host, key.tunnel_port, key.tunnel_user) == ("bastion.example.com", 22, "ubuntu")
    password = RedisConfig.model_validate(LEGACY_CONFIGS["0.1.4-ssh-password"]).tunnel_method
    assert isinstance(password, SshPasswordTunnel)
    assert password.tunnel_port == 2222
    assert password.tunnel_user_password.get_secret_value() == "tpw"


def test_minimal_config_gets_the_defaults() -> None:
    config = RedisConfig.model_validate({"host": "localhost"})
    assert (config.port, config.db, config.cache_type, config.ssl) == (6379, 0, "hash", False)
    assert config.ssl_mode == SslDisabled()
    assert config.tunnel_method == NoTunnel()


def test_unknown_keys_are_accepted_by_both() -> None:
    config = {"host": "localhost", "some_future_option": 1}
    jsonschema.validate(config, CONNECTION, cls=jsonschema.Draft7Validator)
    assert RedisConfig.model_validate(config).host == "localhost"


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"port": 6379},
        {"host": 123},
        {"host": "h", "port": 0},
        {"host": "h", "port": 65536},
        {"host": "h", "db": -1},
        {"host": "h", "cache_type": "queue"},
        {"host": "h", "streams": [{"namespace": "n"}]},
        {"host": "h", "streams": [{"name": "s", "cache_type": "queue"}]},
        {"host": "h", "streams": [{"name": "s", "score_field": ""}]},
        {"host": "h", "streams": [{"name": "s", "ttl_seconds": -1}]},
        {"host": "h", "ssl_mode": {"mode": "prefer"}},
        {
            "host": "h",
            "tunnel_method": {"tunnel_method": "SSH_KEY_AUTH", "tunnel_host": "b", "tunnel_user": "u"},
        },
        {"host": "h", "tunnel_method": {"tunnel_method": "SSH_PASSWORD_AUTH", "tunnel_host": "b"}},
        {"host": "h", "tunnel_method": {"tunnel_method": "CARRIER_PIGEON"}},
    ],
    ids=repr,
)
def test_bad_configs_are_rejected_by_both(config: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, CONNECTION, cls=jsonschema.Draft7Validator)
    with pytest.raises(ValidationError):
        RedisConfig.model_validate(config)
