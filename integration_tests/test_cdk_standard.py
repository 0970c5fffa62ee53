"""The Airbyte CDK's own standard tests (DestinationTestSuiteBase), run in-process.

The CDK collects one scenario per config of acceptance-test-config.yml (found from this file's
directory upwards, with the configs' paths relative to that root) and runs, in-process:
`test_config_matches_spec` for the configs under `spec`, `test_check` for those under `connection`
(with the declared status, and its check that no secret of the config reaches the output). Its
`test_docker_image_*` tests need a Docker daemon and an image: the one DESTINATION_REDIS_IMAGE (or
--connector-image) names, built from this repository's Dockerfile by scripts/docker_image.sh (.ci/run
sets it), else one the CDK builds from Airbyte's Dockerfile template, downloaded from GitHub. See
`_docker_image_tests_need_a_daemon` for when they skip, and why.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
import requests
from airbyte_cdk.models.connector_metadata import MetadataFile
from airbyte_cdk.test.standard_tests import DestinationTestSuiteBase
from airbyte_cdk.utils.docker import get_dockerfile_templates

from destination_redis.destination import DestinationRedis
from integration_tests import matrix
from integration_tests.cdk_secrets import scenario_configs, written_secrets
from integration_tests.docker_daemon import daemon_problem
from integration_tests.servers import RedisServer

PASSWORD = "Pw-8c2a4f-secret"  # noqa: S105  # the test server's; distinctive, so a leak is found
# Where the CDK downloads its Dockerfile template from when no Airbyte checkout is near
# (airbyte_cdk.utils.docker.build_connector_image, without a timeout).
TEMPLATE_URL = "https://github.com/airbytehq/airbyte/raw/master/docker-images/Dockerfile.python-connector"


def _template_problem(connector_root: Path) -> str | None:
    """Why the CDK cannot get the Dockerfile template it builds an image from (None: it can)."""
    try:
        get_dockerfile_templates(MetadataFile.from_file(connector_root / "metadata.yaml"), connector_root)
        return None  # an Airbyte checkout beside or above this one has it
    except FileNotFoundError:
        pass
    try:
        requests.head(TEMPLATE_URL, timeout=10, allow_redirects=True).raise_for_status()
    except requests.RequestException as exc:
        text = str(exc)
        lookup = re.search(r"Failed to resolve '([^']+)' \((.*?)\)", text)
        reason = f"the name lookup of {lookup[1]} failed ({lookup[2]})" if lookup else text
        return f"it downloads Airbyte's Dockerfile template from GitHub, and that fails: {reason}"
    return None


@cache
def _cdk_build_problem(connector_root: Path, connector_name: str) -> str | None:
    """Why the CDK's own image build (no image given) cannot work here, in the order it would fail:
    its Dockerfile template, `docker buildx`, and the entrypoint it names after the checkout's folder."""
    problem = _template_problem(connector_root)
    if problem:
        return problem
    buildx = subprocess.run(["docker", "buildx", "version"], capture_output=True, text=True, check=False)
    if buildx.returncode != 0:
        return "it builds with `docker buildx`, which this Docker lacks"
    if connector_root.name != connector_name:
        return (
            f"its image would run `{connector_root.name}` (the checkout's folder name) rather than "
            f"`{connector_name}`"
        )
    return None


# The CDK's image tests that skip themselves for a destination, before they build an image.
_CDK_SKIPS_FOR_DESTINATIONS = {"test_docker_image_build_and_discover", "test_docker_image_build_and_read"}


def _image_under_test(request: pytest.FixtureRequest) -> str | None:
    """--connector-image, else DESTINATION_REDIS_IMAGE (the image scripts/docker_image.sh built)."""
    option = request.config.getoption("--connector-image")
    return str(option) if option else (os.environ.get("DESTINATION_REDIS_IMAGE") or None)


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

    @pytest.fixture
    def connector_image_override(self, request: pytest.FixtureRequest) -> str | None:
        """The image of the CDK's image tests: this repository's, built by scripts/docker_image.sh
        (DESTINATION_REDIS_IMAGE, which .ci/run sets; or --connector-image), so that they run on it
        for real; None lets the CDK build one from Airbyte's template."""
        return _image_under_test(request)

    @pytest.fixture(autouse=True)
    def _docker_image_tests_need_a_daemon(self, request: pytest.FixtureRequest) -> None:
        """When the CDK's image tests cannot run here, they skip saying why, rather than fail.

        - No Docker daemon answers: the CDK skips them only when no `docker` CLI is on PATH; with a
          CLI but no daemon (as on the development machines) they would fail in `docker build`.
        - No image given, and the CDK cannot build one (`_cdk_build_problem`): without an Airbyte
          checkout near, it downloads its Dockerfile template from GitHub, which fails without the
          internet. integration_tests/test_image.py builds and tests this repository's Dockerfile.
        - `test_docker_image_build_and_check`: the CDK runs `check` in a container on Docker's own
          network, where 127.0.0.1, the test server that the secrets/ configs name, is the container
          itself. integration_tests/test_image.py runs `check` in the image on the host's network.
        With an image, `spec` and the configs against its spec run for real in the image.
        """
        if request.node.get_closest_marker("image_tests") is None:
            return
        test = getattr(request.node, "originalname", "")
        if test in _CDK_SKIPS_FOR_DESTINATIONS:
            return  # before building anything, saying so
        problem = daemon_problem()
        if problem:
            pytest.skip(
                f"docker CLI found but no Docker daemon answers ({problem}), skipping docker image tests"
            )
        if _image_under_test(request) is None:
            problem = _cdk_build_problem(self.get_connector_root_dir().absolute(), self.connector_name)
            if problem:
                pytest.skip(
                    f"no image given, and the CDK cannot build one here: {problem}. "
                    "integration_tests/test_image.py builds and tests this repository's Dockerfile; "
                    "DESTINATION_REDIS_IMAGE=<its image> (scripts/docker_image.sh) runs these tests on it"
                )
        if test == "test_docker_image_build_and_check":
            pytest.skip(
                "the CDK runs `check` in the container on Docker's own network, where 127.0.0.1 (the "
                "test server of the secrets/ configs) is the container itself; "
                "integration_tests/test_image.py runs `check` in the image on the host's network"
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
