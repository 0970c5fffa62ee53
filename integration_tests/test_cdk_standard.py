"""The Airbyte CDK's own standard tests (DestinationTestSuiteBase), run in-process.

The CDK collects one scenario per config of acceptance-test-config.yml (found from this file's
directory upwards, with the configs' paths relative to that root) and runs, in-process:
`test_config_matches_spec` for the configs under `spec`, `test_check` for those under `connection`
(with the declared status, and its check that no secret of the config reaches the output). Its
`test_docker_image_*` tests need a Docker daemon; see `_docker_image_tests_need_a_daemon`.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from airbyte_cdk.test.standard_tests import DestinationTestSuiteBase

from destination_redis.destination import DestinationRedis
from integration_tests import matrix
from integration_tests.cdk_secrets import scenario_configs, written_secrets
from integration_tests.servers import RedisServer

PASSWORD = "Pw-8c2a4f-secret"  # noqa: S105  # the test server's; distinctive, so a leak is found


@cache
def _docker_daemon_problem() -> str | None:
    """Why the Docker daemon cannot be used (None: it answers), asked once per session."""
    try:
        result = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True, text=True, timeout=30, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if result.returncode == 0:
        return None
    return (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]


class TestDestinationRedisStandard(DestinationTestSuiteBase):
    """The CDK's suite for DestinationRedis, against a redis-server with a password started here."""

    # The CDK finds the class by the root directory's name (destination-redis -> module
    # destination_redis, class DestinationRedis), and tells destinations from sources by that
    # name: a clone or worktree is named anything, so both are given.
    connector = DestinationRedis
    connector_name = "destination-redis"

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _secrets(cls, redis_binary: matrix.ServerBinary) -> Iterator[None]:
        """secrets/*.json for a throwaway server, present exactly while this class's tests run."""
        server = RedisServer(binary=redis_binary.path, args=redis_binary.args, password=PASSWORD).start()
        try:
            with written_secrets(cls.get_connector_root_dir() / "secrets", scenario_configs(server)):
                yield
        finally:
            server.stop()

    @pytest.fixture(autouse=True)
    def _docker_image_tests_need_a_daemon(self, request: pytest.FixtureRequest) -> None:
        """The CDK skips its image tests only when no `docker` CLI is on PATH; with a CLI but no
        daemon (as on the development machines) they would fetch Dockerfile templates from GitHub
        and fail in `docker build`. So they skip in that case too, saying why."""
        if request.node.get_closest_marker("image_tests") is None:
            return
        problem = _docker_daemon_problem()
        if problem:
            pytest.skip(
                f"docker CLI found but no Docker daemon answers ({problem}), skipping docker image tests"
            )


def _fail_while_written(secrets_dir: Path) -> None:
    with written_secrets(secrets_dir, {"config.json": {"host": "x"}}):
        assert json.loads((secrets_dir / "config.json").read_text()) == {"host": "x"}
        assert (secrets_dir / "config.json").stat().st_mode & 0o777 == 0o600
        raise RuntimeError("a test failed")


def test_written_secrets_put_a_developers_config_back(tmp_path: Path) -> None:
    """A secrets/config.json kept for the image tests survives the suite, even when it fails."""
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "config.json").write_text('{"host": "redis.example.internal"}')
    with pytest.raises(RuntimeError, match="a test failed"):
        _fail_while_written(secrets_dir)
    assert sorted(p.name for p in secrets_dir.iterdir()) == ["config.json"]
    assert json.loads((secrets_dir / "config.json").read_text()) == {"host": "redis.example.internal"}

    fresh = tmp_path / "fresh" / "secrets"
    fresh.parent.mkdir()
    with written_secrets(fresh, {"config.json": {"host": "x"}}):
        assert fresh.stat().st_mode & 0o777 == 0o700
    assert not fresh.exists()
