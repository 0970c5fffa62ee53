"""InFlight: jobs in order beside the caller, batches landed in order, errors back in the caller's thread."""

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

    def job() -> None:
        release.wait()

    with InFlight() as inflight:
        inflight.submit(job)
        assert not release.is_set()  # we got here while the job still waits
        release.set()
        inflight.drain()


def test_a_failed_job_raises_at_the_next_drain_and_nothing_after_it_runs() -> None:
    done: list[str] = []
    started: list[str] = []
    release = threading.Event()

    def fail() -> None:
        release.wait()
        raise RuntimeError("lost")

    with InFlight() as inflight:
        inflight.submit(fail, lambda: done.append("fail"))
        inflight.submit(lambda: started.append("next"))  # queued behind the failing job
        release.set()
        with pytest.raises(RuntimeError, match="lost"):
            inflight.drain()
    assert done == []
    assert started == []


def test_an_error_already_seen_is_raised_by_the_next_submit() -> None:
    inflight = InFlight()
    inflight.submit(_raise)
    with pytest.raises(RuntimeError, match="refused"):
        _submit_until_raised(inflight)
    inflight.close()


def _submit_until_raised(inflight: InFlight) -> None:
    """Submit until a submit raises (the I/O thread has recorded the error by then)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        inflight.submit(lambda: None)
        time.sleep(0.01)


def _raise() -> None:
    raise RuntimeError("refused")


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


class _Landing:
    """A batch 'sent' by a job: records when it is landed or abandoned."""

    def __init__(self, name: str, events: list[str], fail: bool = False) -> None:
        self.name, self.events, self.fail = name, events, fail

    def land(self) -> None:
        self.events.append(f"land {self.name}")
        if self.fail:
            raise RuntimeError(f"{self.name} refused")

    def abandon(self) -> None:
        self.events.append(f"abandon {self.name}")


def test_batches_are_sent_ahead_and_landed_in_order_when_the_window_is_full() -> None:
    events: list[str] = []
    done: list[str] = []

    def job(name: str) -> _Landing:
        events.append(f"send {name}")
        return _Landing(name, events)

    with InFlight(depth=3) as inflight:
        for name in "abcde":
            inflight.submit(lambda name=name: job(name), lambda name=name: done.append(name))  # type: ignore[misc]
        inflight.drain()
    # a, b, c go out before a is read; then each send makes room by landing the oldest
    assert events[:4] == ["send a", "send b", "send c", "land a"]
    assert [e for e in events if e.startswith("land")] == ["land a", "land b", "land c", "land d", "land e"]
    assert done == list("abcde")  # acknowledged in order, in the caller's thread, by the drain


def test_drain_lands_what_is_in_flight_without_more_jobs() -> None:
    events: list[str] = []
    with InFlight(depth=8) as inflight:
        inflight.submit(lambda: _Landing("a", events))
        inflight.drain()
        assert events == ["land a"]


def test_the_byte_budget_bounds_what_is_in_flight() -> None:
    events: list[str] = []
    in_flight: list[int] = []
    outstanding: list[str] = []

    def job(name: str) -> _Landing:
        outstanding.append(name)
        in_flight.append(len(outstanding))
        return _LandingThat(name, events, outstanding)

    with InFlight(depth=8, max_bytes=100) as inflight:
        for name in "abcdef":
            inflight.submit(lambda name=name: job(name), nbytes=40)  # type: ignore[misc]
        inflight.drain()
    assert max(in_flight) == 2  # 3 x 40 bytes would pass the budget of 100


class _LandingThat(_Landing):
    def __init__(self, name: str, events: list[str], outstanding: list[str]) -> None:
        super().__init__(name, events)
        self.outstanding = outstanding

    def land(self) -> None:
        super().land()
        self.outstanding.remove(self.name)


def test_a_failed_landing_abandons_the_rest_and_raises_once() -> None:
    events: list[str] = []
    with InFlight(depth=4) as inflight:
        inflight.submit(lambda: _Landing("a", events, fail=True))
        inflight.submit(lambda: _Landing("b", events))
        with pytest.raises(RuntimeError, match="a refused"):
            inflight.drain()
        inflight.drain()  # raised once
    assert "land a" in events
    assert "land b" not in events
    assert "abandon b" in events
