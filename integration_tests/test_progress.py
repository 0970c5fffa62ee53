"""Progress of long syncs: a LOG line once ~10 s have passed, a summary at the end.

A real sync through the console script, whose input pauses for longer than the interval: the
batch acknowledged after the pause brings a progress line with the figures so far, and the end
of input a summary with every stream's count. Neither is printed per record.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from integration_tests.cli import _SCRIPT, catalog, lines, record, stream_state
from integration_tests.servers import RedisServer


def _argv(tmp_path: Path) -> list[str]:
    config, catalog_file = str(tmp_path / "config.json"), str(tmp_path / "catalog.json")
    return [_SCRIPT, "write", "--config", config, "--catalog", catalog_file]


def _logs(stdout: bytes) -> list[str]:
    messages = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return [m["log"]["message"] for m in messages if m["type"] == "LOG"]


def test_a_paused_sync_logs_progress_then_a_summary(tmp_path: Path, redis_server: RedisServer) -> None:
    (tmp_path / "config.json").write_text(json.dumps(redis_server.config()))
    (tmp_path / "catalog.json").write_text(json.dumps(catalog(("users", "append"), ("orders", "append"))))
    proc = subprocess.Popen(
        _argv(tmp_path),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdin is not None
    first: list[Any] = [record("users", {"n": n}) for n in range(3)] + [record("orders", {"o": 1})]
    proc.stdin.write(lines(*first, stream_state("users", {"c": 1})).encode())
    proc.stdin.flush()
    assert proc.stdout is not None
    before = [proc.stdout.readline() for _ in range(1)]
    while b'"STATE"' not in before[-1]:  # the first batch is acknowledged: the sync has started
        assert before[-1], "the connector ended before its first state"
        before.append(proc.stdout.readline())
    time.sleep(10.5)  # longer than the progress interval
    proc.stdin.write(lines(record("users", {"n": 3}), stream_state("users", {"c": 2})).encode())
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    logs = _logs(b"".join(before) + stdout)
    progress = [line for line in logs if line.startswith("Progress:")]
    assert len(progress) == 1, logs  # one interval passed: one line, not one per record or batch
    assert progress[0].startswith("Progress: 5 records written (")
    assert "'users' 4, 'orders' 1" in progress[0]
    (summary,) = [line for line in logs if line.startswith("Summary:")]
    assert summary.startswith("Summary: wrote 5 records (")
    assert summary.endswith("per stream: 'users' 4, 'orders' 1.")


def test_a_short_sync_logs_only_the_summary(tmp_path: Path, redis_server: RedisServer) -> None:
    (tmp_path / "config.json").write_text(json.dumps(redis_server.config()))
    (tmp_path / "catalog.json").write_text(json.dumps(catalog(("users", "append"))))
    records = [record("users", {"n": n}) for n in range(25_000)]  # three batches
    result = subprocess.run(
        _argv(tmp_path),
        input=lines(*records, stream_state("users", {"c": 1})).encode(), capture_output=True, timeout=120,
    )
    assert result.returncode == 0
    logs = _logs(result.stdout)
    assert not [line for line in logs if line.startswith("Progress:")]
    (summary,) = [line for line in logs if line.startswith("Summary:")]
    assert summary.startswith("Summary: wrote 25,000 records (")
    assert "'users' 25,000" in summary
