"""Progress of a long sync: a LOG line every ~10 s and a summary at the end, never per record.

The loader reports each batch once Redis has acknowledged it (so the figures never run ahead of
what is stored); a line is due when the interval has passed since the last one. The cost is a
few additions and one clock read per batch of up to 10,000 records.
"""

from __future__ import annotations

import time
from collections.abc import Callable

INTERVAL_S = 10.0


class Progress:
    """Counts acknowledged records per stream and record bytes; says when a line is due."""

    def __init__(self, interval_s: float = INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval_s = interval_s
        self._clock = clock
        self._started = self._last_at = clock()
        self._last_records = 0
        self.records = 0
        self.bytes = 0
        self.per_stream: dict[str, int] = {}

    def written(self, counts: dict[str, int], nbytes: int) -> None:
        """A batch was acknowledged: `counts` records per stream label, `nbytes` of record data."""
        for label, count in counts.items():
            self.per_stream[label] = self.per_stream.get(label, 0) + count
            self.records += count
        self.bytes += nbytes

    def due(self) -> str | None:
        """The progress line, if the interval has passed since the last one; else None."""
        now = self._clock()
        elapsed = now - self._last_at
        if elapsed < self._interval_s:
            return None
        rate = (self.records - self._last_records) / elapsed
        self._last_at, self._last_records = now, self.records
        return (
            f"Progress: {self.records:,} records written ({rate:,.0f} records/s over the last "
            f"{elapsed:.0f} s, {_megabytes(self.bytes)} of record data so far); {self._streams()}."
        )

    def summary(self) -> str:
        """The closing line: totals, the average rate over the whole sync, per stream."""
        elapsed = max(self._clock() - self._started, 1e-9)
        return (
            f"Summary: wrote {self.records:,} records ({_megabytes(self.bytes)} of record data) in "
            f"{elapsed:.1f} s, {self.records / elapsed:,.0f} records/s; {self._streams()}."
        )

    def _streams(self) -> str:
        if not self.per_stream:
            return "no stream had records"
        parts = [f"'{label}' {count:,}" for label, count in self.per_stream.items()]
        return "per stream: " + ", ".join(parts)


def _megabytes(nbytes: int) -> str:
    return f"{nbytes / 1e6:,.1f} MB"
