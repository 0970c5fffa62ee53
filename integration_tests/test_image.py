"""The connector's Docker image, run as the platform runs it, against servers the tests start here.

The image is the one `scripts/docker_image.sh` builds from the Dockerfile, on a stand-in of
python-connector-base (Docker Hub cannot be reached here; see the script): DESTINATION_REDIS_IMAGE
names it (.ci/run builds it before the tests); without it, the script is run here when a Docker
daemon answers. Every container runs as uid 1000 with a read-only root filesystem and a tmpfs on
/tmp (what the platform may do: the connector must write nothing else), on the host's network, so
it reaches the redis-server, TLS server and sshd started on 127.0.0.1; its configs are mounted
read-only at /secrets, owned by uid 1000.

Where no Docker daemon answers (a laptop without root), the tests skip saying so; under CI
(CI=true, as .ci/run sets) that is a failure instead: CI has a daemon.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
import redis

from integration_tests.cli import Result
from integration_tests.docker_daemon import daemon_problem
from integration_tests.servers import RedisServer
from integration_tests.sshd import SshServer
from integration_tests.tls_certs import TlsMaterial

REPO = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO / "scripts" / "docker_image.sh"
SAMPLE = REPO / "destination_redis" / "sample"
SPEC_JSON: dict[str, Any] = json.loads((REPO / "destination_redis" / "spec.json").read_text())
PASSWORD = "Pw-image-5d0c7e-secret"  # noqa: S105  # a test server's; distinctive, so a leak is found
AIRBYTE_UID = 1000
# How the platform may run the image: its own user, nothing writable but /tmp, and here the host's
# network (the daemon runs without a bridge; the servers listen on 127.0.0.1).
RUN_OPTIONS = [
    "--read-only", "--tmpfs", "/tmp", "--network", "host", "--user", f"{AIRBYTE_UID}:{AIRBYTE_UID}",
]
# The script's exit status when this machine cannot build the image (no daemon, no root).
CANNOT_BUILD_HERE = 3


def _skip_or_fail(reason: str) -> NoReturn:
    """A skip on a machine without Docker; under CI, where a daemon runs, a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the image tests must run there)")
    pytest.skip(reason)


def _inspect(tag: str) -> dict[str, Any] | None:
    result = subprocess.run(
        ["docker", "image", "inspect", tag], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        return None
    (details,) = json.loads(result.stdout)
    return dict(details)


def _build() -> str:
    """Build the image with scripts/docker_image.sh; its tag (the script's last line)."""
    try:
        build = subprocess.run(
            ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=1800, check=False
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"scripts/docker_image.sh did not finish in {exc.timeout} s")
    output = (build.stdout + build.stderr).strip()
    if build.returncode == CANNOT_BUILD_HERE:
        _skip_or_fail(f"the image cannot be built here: {output.splitlines()[-1]}")
    assert build.returncode == 0, f"scripts/docker_image.sh failed:\n{output[-4000:]}"
    last = build.stdout.strip().splitlines()[-1]
    assert last.startswith("DESTINATION_REDIS_IMAGE="), output[-4000:]
    return last.split("=", 1)[1]


@pytest.fixture(scope="module")
def image() -> dict[str, Any]:
    """`docker image inspect` of the image under test (its "Id" runs it)."""
    problem = daemon_problem()
    if problem:
        _skip_or_fail(
            f"no Docker daemon answers ({problem}): the image tests need one "
            "(as root: apt-get install docker.io debootstrap; bash scripts/dockerd.sh start)"
        )
    tag = os.environ.get("DESTINATION_REDIS_IMAGE") or _build()
    details = _inspect(tag)
    if details is None:
        pytest.fail(f"DESTINATION_REDIS_IMAGE={tag} is not an image of the Docker daemon: build it "
                    "with scripts/docker_image.sh, or unset it to have the tests build it")
    return details


def run_image(
    image: dict[str, Any], *args: str, secrets: Path | None = None, stdin: bytes = b"", timeout: float = 180,
    tmpfs: bool = True,
) -> Result:
    """`docker run` of the image as the platform runs it; `secrets` is mounted read-only at /secrets;
    without `tmpfs` nothing at all is writable (not even /tmp)."""
    name = f"destination-redis-test-{uuid.uuid4().hex[:12]}"
    options = RUN_OPTIONS if tmpfs else [o for o in RUN_OPTIONS if o not in ("--tmpfs", "/tmp")]
    command = ["docker", "run", "--rm", "--name", name, "--interactive", *options]
    if secrets is not None:
        command += ["--volume", f"{secrets}:/secrets:ro"]
    command += [image["Id"], *args]
    try:
        proc = subprocess.run(command, input=stdin, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True, timeout=60, check=False)
        raise
    return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def secrets_dir(tmp_path: Path, files: dict[str, Any]) -> Path:
    """A folder of JSON files for /secrets, readable by the image's user only (as root), else by all."""
    folder = tmp_path / "secrets"
    folder.mkdir(parents=True)
    for name, content in files.items():
        path = folder / name
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    as_root = os.geteuid() == 0
    for path in [folder, *folder.iterdir()]:
        if as_root:
            os.chown(path, AIRBYTE_UID, AIRBYTE_UID)
            path.chmod(0o700 if path.is_dir() else 0o600)
        else:
            path.chmod(0o755 if path.is_dir() else 0o644)
    return folder


def check(
    image: dict[str, Any], tmp_path: Path, config: dict[str, Any], tmpfs: bool = True
) -> tuple[Result, dict[str, Any]]:
    """`check` in the image: the result, and its connection status, after the common assertions."""
    secrets = secrets_dir(tmp_path, {"config.json": config})
    result = run_image(image, "check", "--config", "/secrets/config.json", secrets=secrets, tmpfs=tmpfs)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output, output
    for secret in _secrets_of(config):
        assert secret not in output
    return result, result.connection_status


def _secrets_of(config: dict[str, Any]) -> list[str]:
    tunnel = config.get("tunnel_method") or {}
    ssl_mode = config.get("ssl_mode") or {}
    values = [
        config.get("password"), tunnel.get("tunnel_user_password"), tunnel.get("ssh_key"),
        ssl_mode.get("client_key"), ssl_mode.get("client_key_password"),
    ]
    return [v for v in values if isinstance(v, str) and v]


# The image itself ----------------------------------------------------------------------------------


def test_the_image_runs_the_console_script_as_airbyte(image: dict[str, Any]) -> None:
    config = image["Config"]
    assert config["Entrypoint"] == ["destination-redis"]
    assert "AIRBYTE_ENTRYPOINT=destination-redis" in config["Env"]
    assert config["User"] in ("airbyte", str(AIRBYTE_UID), f"{AIRBYTE_UID}:{AIRBYTE_UID}")
    # Without --user: the image's own user is the base's airbyte, not root.
    who = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--read-only", "--entrypoint", "id", image["Id"]],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert who.returncode == 0, who.stderr
    assert who.stdout.startswith(f"uid={AIRBYTE_UID}(airbyte) gid={AIRBYTE_UID}(airbyte)"), who.stdout


def test_the_installed_package_carries_its_data_files(image: dict[str, Any]) -> None:
    """spec.json and the sample (package_data) are in the non-editable install, not only in the tree."""
    listing = (
        "import importlib.resources as r; package = r.files('destination_redis'); "
        "print(package, *sorted(p.name for p in package.iterdir() if p.is_file() and p.suffix == '.json'), "
        "*sorted('sample/' + p.name for p in (package / 'sample').iterdir()))"
    )
    # --workdir /: from the image's WORKDIR (the source tree), `python -c` would import the sources.
    found = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--read-only", "--workdir", "/",
         "--entrypoint", "python", image["Id"], "-c", listing],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert found.returncode == 0, found.stderr
    location, *names = found.stdout.split()
    assert "/site-packages/destination_redis" in location, location
    assert "spec.json" in names
    assert sorted(n for n in names if n.startswith("sample/")) == sorted(
        f"sample/{p.name}" for p in SAMPLE.iterdir()
    )


def test_spec(image: dict[str, Any]) -> None:
    result = run_image(image, "spec")
    assert result.returncode == 0, result.stdout + result.stderr
    (message,) = result.of_type("SPEC")
    spec = message["spec"]
    assert spec["connectionSpecification"] == SPEC_JSON["connectionSpecification"]
    assert spec["supported_destination_sync_modes"] == SPEC_JSON["supported_destination_sync_modes"]
    assert "Traceback" not in result.stderr


# check ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def password_server() -> Iterator[RedisServer]:
    server = RedisServer(password=PASSWORD).start()
    yield server
    server.stop()


def test_check(image: dict[str, Any], tmp_path: Path, password_server: RedisServer) -> None:
    _, status = check(image, tmp_path, password_server.config())
    assert status["status"] == "SUCCEEDED", status
    assert f"127.0.0.1:{password_server.port}" in status["message"]


def test_check_with_tls_verify_full_and_a_client_certificate(
    image: dict[str, Any], tmp_path: Path, tls: TlsMaterial
) -> None:
    """verify-full against the config's CA, with an encrypted client key: the PEM files that
    redis-py and OpenSSL need go to /tmp, the one writable place."""
    server = tls.start_server(tls.server, auth_clients=True)
    try:
        _, status = check(image, tmp_path, tls.config(server, **tls.mtls(encrypted=True)))
    finally:
        server.stop()
    assert status["status"] == "SUCCEEDED", status
    assert f"localhost:{server.port}" in status["message"]


def test_mutual_tls_without_a_writable_tmp_says_what_to_give_the_container(
    image: dict[str, Any], tmp_path: Path, tls: TlsMaterial
) -> None:
    """A read-only root filesystem without a tmpfs on /tmp: the client certificate cannot be
    written for OpenSSL, and check says so (not an unexpected error)."""
    server = tls.start_server(tls.server, auth_clients=True)
    try:
        _, status = check(image, tmp_path, tls.config(server, **tls.mtls(encrypted=False)), tmpfs=False)
    finally:
        server.stop()
    assert status["status"] == "FAILED", status
    assert "no temporary directory is writable" in status["message"], status
    assert "tmpfs" in status["message"], status


@pytest.fixture(scope="module")
def sshd() -> Iterator[SshServer]:
    server = SshServer().start()
    yield server
    server.stop()


@pytest.mark.parametrize("auth", ["key", "password"])
def test_check_through_the_ssh_tunnel(
    image: dict[str, Any], tmp_path: Path, sshd: SshServer, password_server: RedisServer, auth: str
) -> None:
    tunnel = sshd.tunnel_key() if auth == "key" else sshd.tunnel_password()
    _, status = check(image, tmp_path, password_server.config(tunnel_method=tunnel))
    assert status["status"] == "SUCCEEDED", status
    assert f"127.0.0.1:{password_server.port} via SSH bastion 127.0.0.1:{sshd.port}" in status["message"]
    assert sshd.wait_for_sessions(0) == 0


# write ---------------------------------------------------------------------------------------------


def _compact(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def expected_sample_keys() -> dict[str, Any]:
    """What writing the sample into an empty database leaves: each stream's counter `<namespace>:<name>`
    at its last id, and a hash `<counter key>:<id>` per record, ids from 1 in the input's order."""
    keys: dict[str, Any] = {}
    counts: dict[str, int] = {}
    for line in (SAMPLE / "messages.jsonl").read_text(encoding="utf-8").splitlines():
        message = json.loads(line)
        if message["type"] != "RECORD":
            continue
        record = message["record"]
        stream_key = f"{record.get('namespace') or ''}:{record['stream']}"
        counts[stream_key] = record_id = counts.get(stream_key, 0) + 1
        keys[f"{stream_key}:{record_id}"] = {
            "_airbyte_ab_id": str(record_id),
            "_airbyte_emitted_at": str(record["emitted_at"]),
            "_airbyte_data": _compact(record["data"]),
        }
    keys.update({stream_key: str(count) for stream_key, count in counts.items()})
    return keys


def expected_sample_states() -> list[dict[str, Any]]:
    """The sample's states as the connector echoes them: unchanged, destinationStats.recordCount set."""
    states = []
    for line in (SAMPLE / "messages.jsonl").read_text(encoding="utf-8").splitlines():
        message = json.loads(line)
        if message["type"] == "STATE":
            state = message["state"]
            state["destinationStats"] = {"recordCount": state["sourceStats"]["recordCount"]}
            states.append(message)
    return states


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def database(client: redis.Redis) -> dict[str, Any]:
    """Every key of the (test's own) server, with its value: a string, or a hash's fields."""
    contents: dict[str, Any] = {}
    for key in client.keys("*"):  # our own test server: KEYS is fine here
        name = _text(key)
        kind = _text(client.type(key))
        if kind == "string":
            contents[name] = _text(client.get(key) or b"")
        elif kind == "hash":
            contents[name] = {_text(f): _text(v) for f, v in client.hgetall(key).items()}
        else:
            contents[name] = f"<{kind}>"
    return contents


def test_write_of_the_sample(image: dict[str, Any], tmp_path: Path, password_server: RedisServer) -> None:
    secrets = secrets_dir(tmp_path, {
        "config.json": password_server.config(),
        "catalog.json": (SAMPLE / "catalog.json").read_text(encoding="utf-8"),
    })
    with password_server.flushed_client() as client:
        result = run_image(
            image, "write", "--config", "/secrets/config.json", "--catalog", "/secrets/catalog.json",
            secrets=secrets, stdin=(SAMPLE / "messages.jsonl").read_bytes(),
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert result.errors == [], output
        assert "Traceback" not in output, output
        assert PASSWORD not in output
        assert result.states == expected_sample_states()
        assert database(client) == expected_sample_keys()


# an error ------------------------------------------------------------------------------------------


def test_a_wrong_password_is_a_clear_error(
    image: dict[str, Any], tmp_path: Path, password_server: RedisServer
) -> None:
    wrong = "Wrong-pw-image-8e1a"
    config = password_server.config(password=wrong)
    where = f"AUTH failed at 127.0.0.1:{password_server.port}"

    _, status = check(image, tmp_path / "check", config)  # check reports it, and exits 0
    assert status["status"] == "FAILED", status
    assert where in status["message"], status
    assert "Check the password" in status["message"], status

    secrets = secrets_dir(tmp_path, {
        "config.json": config, "catalog.json": (SAMPLE / "catalog.json").read_text(encoding="utf-8"),
    })
    with password_server.flushed_client() as client:
        result = run_image(
            image, "write", "--config", "/secrets/config.json", "--catalog", "/secrets/catalog.json",
            secrets=secrets, stdin=(SAMPLE / "messages.jsonl").read_bytes(),
        )
        assert client.dbsize() == 0
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output, output
    assert wrong not in output
    assert PASSWORD not in output
    assert result.states == []
    (error,) = result.errors
    assert error["failure_type"] == "config_error", error
    assert where in error["message"], error
    assert "Check the password" in error["message"], error
