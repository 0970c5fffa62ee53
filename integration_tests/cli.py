"""Run the connector as a user does: the console script in a subprocess, JSON lines on stdin/stdout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCRIPT = shutil.which("destination-redis", path=str(Path(sys.executable).parent)) or "destination-redis"


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == kind]

    @property
    def states(self) -> list[dict[str, Any]]:
        return self.of_type("STATE")

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [m["trace"]["error"] for m in self.of_type("TRACE") if m["trace"].get("type") == "ERROR"]

    @property
    def connection_status(self) -> dict[str, Any]:
        (status,) = self.of_type("CONNECTION_STATUS")
        return dict(status["connectionStatus"])


def run_connector(
    args: list[str],
    tmp_path: Path,
    config: dict[str, Any] | None = None,
    catalog: dict[str, Any] | None = None,
    stdin: str | bytes = b"",
    timeout: float = 120,
) -> Result:
    """`destination-redis <args>`; `{config}` and `{catalog}` in args become written JSON files."""
    files = {"{config}": config, "{catalog}": catalog}
    argv = [_SCRIPT]
    for arg in args:
        if arg in files:
            path = tmp_path / (arg.strip("{}") + ".json")
            path.write_text(json.dumps(files[arg]))
            argv.append(str(path))
        else:
            argv.append(arg)
    data = stdin.encode() if isinstance(stdin, str) else stdin
    proc = subprocess.run(
        argv, input=data, capture_output=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def record(
    stream: str, data: dict[str, Any], emitted_at: int = 1_700_000_000_000, namespace: str | None = None
) -> str:
    body: dict[str, Any] = {"stream": stream, "data": data, "emitted_at": emitted_at}
    if namespace is not None:
        body["namespace"] = namespace
    return json.dumps({"type": "RECORD", "record": body}, ensure_ascii=False)


def stream_state(stream: str, state: dict[str, Any], namespace: str | None = None, **extra: Any) -> str:
    descriptor: dict[str, Any] = {"name": stream}
    if namespace is not None:
        descriptor["namespace"] = namespace
    message = {
        "type": "STATE",
        "state": {"type": "STREAM", "stream": {"stream_descriptor": descriptor, "stream_state": state}},
    }
    message.update(extra)
    return json.dumps(message)


def catalog(*streams: tuple[str, str] | tuple[str, str, str | None]) -> dict[str, Any]:
    """catalog(("users", "append"), ("orders", "overwrite", "shop"), ...): (name, mode[, namespace])."""
    configured = []
    for spec in streams:
        name, mode = spec[0], spec[1]
        namespace = spec[2] if len(spec) > 2 else None
        stream: dict[str, Any] = {
            "name": name,
            "json_schema": {"type": "object"},
            "supported_sync_modes": ["full_refresh", "incremental"],
        }
        if namespace is not None:
            stream["namespace"] = namespace
        configured.append({
            "stream": stream,
            "sync_mode": "full_refresh" if mode == "overwrite" else "incremental",
            "destination_sync_mode": mode,
        })
    return {"streams": configured}


def lines(*messages: str) -> str:
    return "".join(m + "\n" for m in messages)
