"""The `secrets/*.json` configs that acceptance-test-config.yml names, written for a test server.

The CDK's standard tests read each config from its path in acceptance-test-config.yml, relative to
the connector root, when the test runs. These configs point at a server the tests started, so they
are written just before the tests and removed afterwards; `secrets/` is in .gitignore. A file a
developer keeps there (a config for the Docker acceptance tests) is moved aside and put back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from integration_tests.servers import RedisServer

WRONG_PASSWORD = "Wrong-3b7d1e-secret"  # noqa: S105  # distinctive, so the CDK's leak check finds a leak


def scenario_configs(server: RedisServer) -> dict[str, dict[str, Any]]:
    """The configs of the `secrets/` scenarios (file name -> config) for `server` (with a password)."""
    address = {"host": "127.0.0.1", "port": server.port}
    return {
        # What a user fills in: host, port, password.
        "config.json": {**address, "password": server.password},
        # As Airbyte's 0.1.4 connector saved it: must still validate against the spec and work.
        "config_0_1_4.json": {
            **address,
            "username": "",
            "password": server.password,
            "ssl": False,
            "ssl_mode": {"mode": "disable"},
            "cache_type": "hash",
            "tunnel_method": {"tunnel_method": "NO_TUNNEL"},
        },
        # The 1.x options that a standalone server without modules can check.
        "config_all_options.json": {
            **address,
            "password": server.password,
            "db": 3,
            "cache_type": "hash_fields",
            "key_prefix": "app:",
            "ttl_seconds": 3600,
            "topology": {"mode": "standalone"},
            "streams": [
                {"name": "events", "cache_type": "stream", "ttl_seconds": 0},
                {"name": "scores", "namespace": "", "cache_type": "sorted_set", "score_field": "points"},
            ],
        },
        # Valid for the spec, refused by the server: check reports FAILED and never the password.
        "config_wrong_password.json": {**address, "password": WRONG_PASSWORD},
    }


@contextmanager
def written_secrets(secrets_dir: Path, configs: Mapping[str, Mapping[str, Any]]) -> Iterator[None]:
    """Write `configs` into `secrets_dir` (0600) for the duration, restoring what was there."""
    created_dir = not secrets_dir.exists()
    secrets_dir.mkdir(mode=0o700, exist_ok=True)
    set_aside: list[tuple[Path, Path]] = []
    written: list[Path] = []
    try:
        for name, config in configs.items():
            path = secrets_dir / name
            if path.exists():
                aside = path.with_name(f"{name}.kept-during-tests")
                os.replace(path, aside)
                set_aside.append((aside, path))
            written.append(path)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as file:
                json.dump(config, file)
        yield
    finally:
        for path in written:
            path.unlink(missing_ok=True)
        for aside, path in set_aside:
            os.replace(aside, path)
        if created_dir and not any(secrets_dir.iterdir()):
            secrets_dir.rmdir()
