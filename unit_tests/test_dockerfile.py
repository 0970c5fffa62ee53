"""The Dockerfile agrees with metadata.yaml and setup.py: one source of truth for the base image.

metadata.yaml's `connectorBuildOptions.baseImage` is what Airbyte's tooling builds on (read here as
the CDK reads it); the Dockerfile's `ARG BASE_IMAGE` default must be the same pinned image, and its
labels the registry's name and version. integration_tests/test_image.py builds and runs the image.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from airbyte_cdk.models.connector_metadata import MetadataFile

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def values(keyword: str) -> list[str]:
    return [rest for kw, rest in instructions() if kw == keyword]


def metadata() -> MetadataFile:
    return MetadataFile.from_file(REPO / "metadata.yaml")


def test_the_base_image_is_an_argument_defaulting_to_the_pinned_base_of_metadata_yaml() -> None:
    build_options = metadata().data.connectorBuildOptions
    assert build_options is not None
    pinned = build_options.baseImage
    assert pinned is not None, "metadata.yaml has no connectorBuildOptions.baseImage"
    assert re.fullmatch(r"docker\.io/airbyte/python-connector-base:[0-9.]+@sha256:[0-9a-f]{64}", pinned)
    kinds = [kw for kw, _ in instructions()]
    assert kinds[:2] == ["ARG", "FROM"], "the template's form: ARG BASE_IMAGE=..., then FROM ${BASE_IMAGE}"
    assert values("ARG")[0] == f"BASE_IMAGE={pinned}", "the Dockerfile's base differs from metadata.yaml's"
    assert values("FROM") == ["${BASE_IMAGE}"]


def test_labels_name_the_registry_entry_of_metadata_yaml() -> None:
    data = metadata().data
    labels = dict(label.split("=", 1) for label in values("LABEL"))
    assert labels == {"io.airbyte.version": data.dockerImageTag, "io.airbyte.name": data.dockerRepository}


def test_it_installs_the_pinned_set_and_runs_the_console_script_as_airbyte() -> None:
    assert values("RUN")[-1] == "pip install -c constraints.txt ."
    assert values("USER")[-1] in ("airbyte", "1000", "1000:1000")
    (entrypoint,) = values("ENTRYPOINT")
    assert entrypoint == '["destination-redis"]'
    assert values("ENV").count('AIRBYTE_ENTRYPOINT="destination-redis"') == 1
    setup = (REPO / "setup.py").read_text()
    assert '"destination-redis=destination_redis.run:run"' in setup  # the console script it runs


def test_every_copied_path_exists() -> None:
    for arguments in values("COPY"):
        *sources, _destination = (word for word in shlex.split(arguments) if not word.startswith("--"))
        for source in sources:
            assert (REPO / source).exists(), source
