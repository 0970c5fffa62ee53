"""Progress: a line only when the interval has passed, figures of acknowledged records only."""

from __future__ import annotations

from destination_redis.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_no_line_before_the_interval() -> None:
    clock = Clock()
    progress = Progress(interval_s=10, clock=clock)
    progress.written({"shop.users": 10_000}, 3_000_000)
    clock.now += 9.9
    assert progress.due() is None


def test_a_line_with_totals_rate_and_streams_once_due_then_not_again_at_once() -> None:
    clock = Clock()
    progress = Progress(interval_s=10, clock=clock)
    progress.written({"shop.users": 150_000}, 45_000_000)
    progress.written({"shop.orders": 50_000}, 5_000_000)
    clock.now += 10
    line = progress.due()
    assert line == (
        "Progress: 200,000 records written (20,000 records/s over the last 10 s, 50.0 MB of record "
        "data so far); per stream: 'shop.users' 150,000, 'shop.orders' 50,000."
    )
    assert progress.due() is None
    progress.written({"shop.users": 50_000}, 1)
    clock.now += 20
    second = progress.due()
    assert second is not None
    assert "250,000 records written (2,500 records/s over the last 20 s" in second
    assert "'shop.users' 200,000" in second


def test_summary_counts_everything_over_the_whole_sync() -> None:
    clock = Clock()
    progress = Progress(interval_s=10, clock=clock)
    progress.written({"u": 3}, 900)
    progress.written({"u": 1, "o": 2}, 100)
    clock.now += 2
    assert progress.summary() == (
        "Summary: wrote 6 records (0.0 MB of record data) in 2.0 s, 3 records/s; per stream: 'u' 4, 'o' 2."
    )


def test_summary_of_a_sync_without_records() -> None:
    progress = Progress(clock=Clock())
    assert progress.summary().endswith("0 records/s; no stream had records.")
