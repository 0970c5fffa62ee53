"""What a server is and can do, read once from INFO, so writers adapt to old servers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ServerInfo:
    version: tuple[int, int, int]  # INFO's redis_version: the Redis whose commands the server has
    mode: str  # "standalone", "cluster" or "sentinel", as INFO server says
    # Valkey reports redis_version 7.2.4 (the Redis it forked from) and its own version apart.
    product: str = "Redis"
    product_version: str = ""

    @property
    def version_text(self) -> str:
        return ".".join(str(part) for part in self.version)

    @property
    def label(self) -> str:
        """For messages: "Redis 5.0.6", "Valkey 8.1.8 (Redis 7.2.4 compatible)"."""
        if self.product == "Redis" or not self.product_version:
            return f"Redis {self.version_text}"
        return f"{self.product} {self.product_version} (Redis {self.version_text} compatible)"

    @property
    def has_unlink(self) -> bool:
        return self.version >= (4, 0, 0)

    @property
    def hset_verb(self) -> bytes:
        """HSET with several fields came with Redis 4.0; HMSET does the same before it."""
        return b"HSET" if self.version >= (4, 0, 0) else b"HMSET"

    @property
    def has_acl(self) -> bool:
        return self.version >= (6, 0, 0)


def parse_version(text: str) -> tuple[int, int, int]:
    parts = [int(p) if p.isdigit() else 0 for p in text.split(".")[:3]]
    while len(parts) < 3:
        parts.append(0)
    return parts[0], parts[1], parts[2]


def parse_info(raw: Any) -> ServerInfo:
    """ServerInfo from the reply of `INFO server`."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    valkey = fields.get("server_name", "").strip() == "valkey"  # Redis has no server_name
    return ServerInfo(
        version=parse_version(fields.get("redis_version", "0.0.0").strip()),
        # Valkey 8 says server_mode where Redis says redis_mode.
        mode=(fields.get("redis_mode") or fields.get("server_mode") or "standalone").strip(),
        product="Valkey" if valkey else "Redis",
        product_version=fields.get("valkey_version", "").strip() if valkey else "",
    )


def error_code(exc: BaseException) -> str:
    """The Redis error code (OOM, WRONGTYPE, NOPERM, ...) of an error reply: its first word."""
    code = getattr(exc, "status_code", None)
    if code:
        return str(code)
    text = str(exc)
    return text.split(" ", 1)[0] if text else ""
