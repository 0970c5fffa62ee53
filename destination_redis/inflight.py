"""Batches in flight: Redis stores batches n, n-1, ... while the loader reads and packs batch n+1.

A flushed batch is a job (a callable that reserves its ids and sends it). Jobs run on one I/O
thread, one at a time and in order, so ids, counters and retries behave as if they ran inline. A
job may return a landing (router.Sent): the batch was sent and its replies are read later, so up
to `depth` batches are on the way at once; a far link then carries batch after batch instead of
waiting a round trip for each. Landings are landed in the order sent: the oldest first when the
window is full, or when the caller waits (for room, or in `drain`). A job that returns None has
already been acknowledged.

The loader calls `drain` before it releases a STATE, completes a stream or ends: every batch is
landed then, so a STATE still follows the acknowledgement of every record before it. A job's or
a landing's error is raised by the next `submit` or `drain`, in the loader's thread; what is still
in flight is then abandoned (its connections dropped), and nothing after it is sent.

Memory: at most `depth` batches and `max_bytes` of their data (at least one batch) are taken and
not yet acknowledged.

Why a thread helps under the GIL: the job spends most of its time in send/recv, which release
the GIL, while the loader's parsing needs it. The interpreter's switch interval is lowered while
jobs are in flight, so a reply that arrived is read within ~1 ms instead of up to 5 ms.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Protocol


class Landing(Protocol):
    """A batch sent and not yet acknowledged."""

    def land(self) -> None: ...  # read its replies, retry what needs it; raises a final error

    def abandon(self) -> None: ...  # the sync is failing: drop what is in flight


Job = Callable[[], Landing | None]
Done = Callable[[], None]

# Seconds the running thread keeps the GIL before another may take it (CPython's default: 5 ms).
SWITCH_INTERVAL_S = 0.001
DEPTH = 3  # batches taken and not yet acknowledged: enough to keep a 40 ms link busy
MAX_BYTES = 32 * 1024 * 1024  # their records' data


class InFlight:
    """Up to `depth` jobs beside the caller, in order; errors come back to the caller."""

    def __init__(self, depth: int = DEPTH, max_bytes: int = MAX_BYTES) -> None:
        self._depth = depth
        self._max_bytes = max_bytes
        self._cv = threading.Condition()
        self._queue: deque[tuple[Job, Done | None, int]] = deque()  # submitted, not yet run
        self._acknowledged: deque[Done | None] = deque()  # their `done`s, for the caller to run
        self._outstanding = 0  # jobs submitted and not yet acknowledged
        self._bytes = 0
        self._error: BaseException | None = None
        self._closing = False
        self._waiting = 0  # callers waiting for room or for the drain: land, do not wait for jobs
        self._interval = sys.getswitchinterval()
        self._thread = threading.Thread(target=self._work, name="redis-io", daemon=True)
        self._thread.start()

    def submit(self, job: Job, done: Done | None = None, nbytes: int = 0) -> None:
        """Queue `job` once the window has room (an earlier job's error is raised here). `done`
        runs in the caller's thread once the job's batch is acknowledged (at a later submit or
        drain)."""
        with self._cv:
            self._waiting += 1
            while self._error is None and self._outstanding and (
                self._outstanding >= self._depth or self._bytes + nbytes > self._max_bytes
            ):
                self._cv.notify_all()
                self._cv.wait()
            self._waiting -= 1
            if self._error is None:
                if not self._outstanding:
                    sys.setswitchinterval(SWITCH_INTERVAL_S)
                self._queue.append((job, done, nbytes))
                self._outstanding += 1
                self._bytes += nbytes
                self._cv.notify_all()
        self._report()

    def drain(self) -> None:
        """Wait until every job is acknowledged; raise the first error, else run their `done`s."""
        with self._cv:
            self._waiting += 1
            self._cv.notify_all()
            while self._outstanding and self._error is None:
                self._cv.wait()
            self._waiting -= 1
        self._report()

    def close(self) -> None:
        """Wait for what is in flight without raising (the caller is already failing), stop the thread."""
        with self._cv:
            self._waiting += 1
            self._cv.notify_all()
            while self._outstanding and self._error is None:
                self._cv.wait()
            self._waiting -= 1
            self._closing = True
            self._cv.notify_all()
        self._thread.join()
        sys.setswitchinterval(self._interval)

    def _report(self) -> None:
        """Raise the error once (then nothing is in flight any more); run the `done`s due."""
        with self._cv:
            error, self._error = self._error, None
            dones = list(self._acknowledged)
            self._acknowledged.clear()
            if error is not None or not self._outstanding:
                sys.setswitchinterval(self._interval)
        if error is not None:
            raise error
        for done in dones:
            if done is not None:
                done()

    def _work(self) -> None:
        """The I/O thread: run jobs in order, land their batches in order."""
        sent: deque[tuple[Landing, Done | None, int]] = deque()
        while True:
            with self._cv:
                while not self._queue and not (sent and self._waiting) and not self._closing:
                    self._cv.wait()
                if self._closing and not self._queue and not sent:
                    return
                item = self._queue.popleft() if self._queue else None
            try:
                if item is not None:
                    job, done, nbytes = item
                    landing = job()
                    if landing is None:
                        self._acknowledge(done, nbytes)
                    else:
                        sent.append((landing, done, nbytes))
                if sent and (item is None or len(sent) >= self._depth):
                    landing, done, nbytes = sent[0]
                    landing.land()
                    sent.popleft()
                    self._acknowledge(done, nbytes)
            except BaseException as exc:  # raised in the caller's thread instead
                for landing, _, _ in sent:
                    landing.abandon()
                sent.clear()
                with self._cv:
                    self._error = exc
                    self._queue.clear()
                    self._outstanding = self._bytes = 0
                    self._cv.notify_all()

    def _acknowledge(self, done: Done | None, nbytes: int) -> None:
        with self._cv:
            self._acknowledged.append(done)
            self._outstanding -= 1
            self._bytes -= nbytes
            self._cv.notify_all()

    def __enter__(self) -> InFlight:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
