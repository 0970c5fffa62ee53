"""The performance targets as data, so scripts/benchmark.py prints each row's figure beside
its target and says "met" or "missed" (and the targets live in one place, not in print calls).

Ratios are the connector's records/s over `redis-cli --pipe` loading the same records (the plain
append commands of the cache type, scripts/bench_commands.py), or over standalone's rate for the
cluster row. Start-up is wall seconds, peak RSS the connector process' own MB, flatness the
relative difference of peak RSS between 1M and 10M records. The 1.4.0 rows (`--templates`: key
templates, expiry from the data) are over redis-cli --pipe loading the very commands the
connector sends for them. The search rows (`--search`) are the connector's append with a search
index over the same append without one, into the same Redis 8.2; `search_backfill` (seconds to
index existing records) has no target. The path rows (`--paths`: tls, ssh, link_40ms) are the
connector's hash append over that path over the same append over plain TCP.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """A bound on one row's figure: at least (rates) or at most (seconds, MB) `bound`."""

    bound: float
    at_least: bool
    unit: str = ""

    def met(self, measured: float) -> bool:
        return measured >= self.bound if self.at_least else measured <= self.bound

    def verdict(self, measured: float) -> str:
        return "met" if self.met(measured) else "missed"

    def __str__(self) -> str:
        if self.unit == "%":
            shown = f"{self.bound:.0%}"
        elif self.unit:
            shown = f"{self.bound:g} {self.unit}"
        else:  # a ratio: 0.6, 0.35, 1.0
            shown = f"{self.bound:.2f}".rstrip("0").rstrip(".") if self.bound % 1 else f"{self.bound:.1f}"
        return f"{'>=' if self.at_least else '<='} {shown}"


def ratio(bound: float) -> Target:
    return Target(bound, at_least=True)


# Row name -> target. Rows of the hash layout are named by sync mode; the other cache types by
# their name (append mode), each against its own redis-cli --pipe equivalent.
TARGETS: dict[str, Target] = {
    "append": ratio(0.6),
    "refresh": ratio(0.6),
    "ttl": ratio(0.6),
    "append_dedup": ratio(0.35),
    **{t: ratio(0.5) for t in ("hash_fields", "json", "string")},
    # collections: redis-cli adds 1,000 values per RPUSH / SADD / ZADD (the server's work per
    # record is small), while the connector still parses each record's message on one thread
    **{t: ratio(0.3) for t in ("list", "set", "sorted_set", "stream")},
    # 1.4.0, each over redis-cli --pipe of its own commands (INCRBY per batch, then per record):
    # key_template user:{id} on hash_fields, MULTI DEL HSET ZADD <key book> EXEC in either mode
    # (append_dedup's 0.35, the replace unit's bound); expire_at_field, HSET PEXPIREAT (ttl's 0.6)
    "template": ratio(0.35),
    "template_dedup": ratio(0.35),
    "expire_at": ratio(0.6),
    # search_index (Redis 8.2's query engine): the append with the index / the same append without
    "search_hash_fields": ratio(0.7),
    "search_json": ratio(0.7),
    # paths (`--paths`): hash append over a path / the same append over plain TCP to the same kind of
    # server (link_40ms: through the same delaying proxy with 0 ms); `link_40ms check` has no target
    "tls": ratio(0.9),
    "ssh": ratio(0.7),
    "link_40ms": ratio(0.85),
    "cluster": ratio(1.0),  # cluster / standalone, same cache type and mode, same run
    "startup write": Target(0.5, at_least=False, unit="s"),  # process start -> its STATE line read
    "startup spec": Target(0.5, at_least=False, unit="s"),
    "startup check": Target(0.5, at_least=False, unit="s"),
    "peak RSS": Target(150, at_least=False, unit="MB"),  # the largest of the run's connector processes
    "peak RSS flat": Target(0.10, at_least=False, unit="%"),  # |RSS(10M) - RSS(1M)| / the smaller
}


def row_name(mode: str, ttl: int | None, cache_type: str, feature: str | None = None) -> str:
    """The row of one connector run: `append`, `refresh`, `ttl`, `append_dedup` for hash; the
    type's name in append mode; `<mode> <type>` otherwise (no target set). A
    1.4.0 row (benchmark.py --templates: its cache type fixed) by its feature: `template`,
    `template_dedup`, `expire_at`."""
    if feature is not None:
        return feature if mode == "append" else f"{feature}_{'dedup' if mode == 'append_dedup' else mode}"
    sync = mode if not ttl else ("ttl" if mode == "append" else f"{mode} ttl")
    if cache_type == "hash":
        return sync
    return cache_type if sync == "append" else f"{sync} {cache_type}"


def target(row: str) -> Target | None:
    """The row's target; a cluster row of any type or mode has the cluster's."""
    return TARGETS.get("cluster" if row.startswith("cluster") else row)
