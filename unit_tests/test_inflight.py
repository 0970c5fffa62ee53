"""InFlight: one job at a time beside the caller, in order, errors back in the caller's thread."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from destination_redis.inflight import InFlight


def test_jobs_run_one_at_a_time_in_order_off_the_callers_thread() -> None:
    events: list[str] = []
    threads: set[int] = set()

    def job(name: str) -> None:
        threads.add(threading.get_ident())
        events.append(f"start {name}")
        time.sleep(0.02)
        events.append(f"end {name}")

    with InFlight() as inflight:
        for name in "abc":
            inflight.submit(lambda name=name: job(name))  # type: ignore[misc]
        inflight.drain()
    assert events == ["start a", "end a", "start b", "end b", "start c", "end c"]
    assert threading.get_ident() not in threads


def test_submit_returns_while_the_job_runs() -> None:
    release = threading.Event()
    with InFlight() as inflight:
        inflight.submit(release.wait)
        assert not release.is_set()  # we got here while the job still waits
        release.set()
        inflight.drain()


def test_a_failed_job_raises_at_the_next_submit_and_its_done_never_runs() -> None:
    done: list[str] = []
    started: list[str] = []

    def fail() -> None:
        raise RuntimeError("lost")

    with InFlight() as inflight:
        inflight.submit(fail, lambda: done.append("fail"))
        with pytest.raises(RuntimeError, match="lost"):
            inflight.submit(lambda: started.append("next"))
    assert done == []
    assert started == []


def test_done_runs_in_the_callers_thread_after_the_job() -> None:
    order: list[tuple[str, int]] = []
    with InFlight() as inflight:
        inflight.submit(lambda: order.append(("job", threading.get_ident())),
                        lambda: order.append(("done", threading.get_ident())))
        inflight.drain()
    assert [name for name, _ in order] == ["job", "done"]
    assert order[1][1] == threading.get_ident() != order[0][1]


def test_drain_raises_the_error_and_restores_the_switch_interval() -> None:
    before = sys.getswitchinterval()

    def fail() -> None:
        raise ValueError("refused")

    inflight = InFlight()
    inflight.submit(fail)
    with pytest.raises(ValueError, match="refused"):
        inflight.drain()
    inflight.drain()  # nothing in flight any more: nothing raised twice
    inflight.close()
    assert sys.getswitchinterval() == before


def test_close_waits_for_the_job_and_does_not_raise() -> None:
    finished: list[bool] = []

    def slow_failure() -> None:
        time.sleep(0.02)
        finished.append(True)
        raise RuntimeError("ignored: the caller is already failing")

    inflight = InFlight()
    inflight.submit(slow_failure)
    inflight.close()
    assert finished == [True]
