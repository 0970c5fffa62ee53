#!/usr/bin/env python3
"""Build the two virtual environments of the PyAirbyte example and test, cached: PyAirbyte, source-faker.

PyAirbyte (`airbyte` on PyPI) and source-faker each pin an Airbyte CDK of their own, so neither can
share the connector's `.venv`; each gets a venv under `.cache/pyairbyte/` (PYAIRBYTE_ENV_CACHE moves
it), installed with a pinned uv from the fully pinned `scripts/<name>-requirements.txt`:

    .cache/pyairbyte/pyairbyte/bin/python          python with PyAirbyte, runs examples/
    .cache/pyairbyte/source-faker/bin/source-faker  the source, run by PyAirbyte as a local executable

A venv is (re)built only when it is missing or its requirements file, the uv pin or the Python
changed (a stamp in the venv); otherwise this takes a few milliseconds. Test-only: nothing here goes
into the connector's environment or image. Needs python3 with venv and pip, and PyPI.

    python scripts/pyairbyte_env.py            # build what is missing, print the two paths
    python scripts/pyairbyte_env.py --compile  # re-pin the requirements from scripts/*-requirements.in
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

UV_VERSION = "0.13.9"
ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
CACHE = Path(os.environ.get("PYAIRBYTE_ENV_CACHE") or ROOT / ".cache" / "pyairbyte")
ENVS = ("pyairbyte", "source-faker")
PYTHON_VERSION = "3.11"  # what the pins are resolved for
COMPILE_COMMAND = "python scripts/pyairbyte_env.py --compile"


def uv_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(UV_CACHE_DIR=str(CACHE / "uv-cache"), UV_PYTHON_DOWNLOADS="never", UV_NO_PROGRESS="1")
    return env


def run(command: list[str | Path], log: Path) -> None:
    """Run a build step, its output to `log`; on failure show the log and stop."""
    with log.open("a") as out:
        out.write(f"+ {' '.join(map(str, command))}\n")
        out.flush()
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=uv_env(), check=False)
    if done.returncode != 0:
        sys.stderr.write(log.read_text(errors="replace")[-6000:])
        sys.exit(f"pyairbyte_env: failed (exit {done.returncode}): {' '.join(map(str, command))}; log: {log}")


def stamp(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def ensure_uv(log: Path) -> Path:
    """A pinned uv in its own small venv (pip install uv==UV_VERSION)."""
    venv = CACHE / "uv"
    uv = venv / "bin" / "uv"
    wanted = stamp(UV_VERSION, sys.version)
    if (venv / ".installed").is_file() and (venv / ".installed").read_text() == wanted and uv.exists():
        return uv
    shutil.rmtree(venv, ignore_errors=True)
    run([sys.executable, "-m", "venv", venv], log)
    run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", f"uv=={UV_VERSION}"], log)
    (venv / ".installed").write_text(wanted)
    return uv


def ensure_env(name: str, uv: Path, log: Path) -> Path:
    """The venv `name`, exactly the pinned set of scripts/<name>-requirements.txt."""
    venv = CACHE / name
    requirements = SCRIPTS / f"{name}-requirements.txt"
    wanted = stamp(requirements.read_bytes(), UV_VERSION, sys.version)
    marker = venv / ".installed"
    if marker.is_file() and marker.read_text() == wanted and (venv / "bin" / "python").exists():
        return venv
    started = time.monotonic()
    print(f"pyairbyte_env: building {venv} from {requirements.relative_to(ROOT)}", file=sys.stderr)
    marker.unlink(missing_ok=True)
    run([uv, "venv", "--clear", "--python", sys.executable, venv], log)
    run([uv, "pip", "sync", "--python", venv / "bin" / "python", requirements], log)
    marker.write_text(wanted)
    print(f"pyairbyte_env: {name} built in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return venv


def ensure() -> dict[str, Path]:
    """Build what is missing (one builder at a time per cache folder); the venvs by name."""
    CACHE.mkdir(parents=True, exist_ok=True)
    log = CACHE / "build.log"
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        uv = ensure_uv(log)
        return {name: ensure_env(name, uv, log) for name in ENVS}


def compile_requirements() -> None:
    """Re-pin scripts/<name>-requirements.txt from <name>-requirements.in (CPython 3.11, x86_64 Linux)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    log = CACHE / "build.log"
    uv = ensure_uv(log)
    for name in ENVS:
        source = SCRIPTS / f"{name}-requirements.in"
        target = SCRIPTS / f"{name}-requirements.txt"
        run([uv, "pip", "compile", "--quiet", "--python-version", PYTHON_VERSION,
             "--python-platform", "x86_64-unknown-linux-gnu", "--custom-compile-command", COMPILE_COMMAND,
             "--no-annotate", source.relative_to(ROOT), "-o", target.relative_to(ROOT)], log)
        print(f"pinned {target.relative_to(ROOT)}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--compile", action="store_true", help="re-pin the requirements files, build nothing")
    args = parser.parse_args()
    os.chdir(ROOT)
    if args.compile:
        compile_requirements()
        return
    envs = ensure()
    print(envs["pyairbyte"] / "bin" / "python")
    print(envs["source-faker"] / "bin" / "source-faker")


if __name__ == "__main__":
    main()
