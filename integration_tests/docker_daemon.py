"""Whether a Docker daemon answers here: asked by the image tests and the CDK's standard tests."""

from __future__ import annotations

import subprocess
from functools import cache


@cache
def daemon_problem() -> str | None:
    """Why no Docker daemon can be used (None: one answers), asked once per session."""
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
