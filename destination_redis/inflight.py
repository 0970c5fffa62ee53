"""One batch in flight: Redis stores batch n while the loader reads and packs batch n+1.

A flushed batch is a job (a callable that writes it and waits for its replies). Jobs run on one
I/O thread, one at a time and in order, so ids, counters and retries behave exactly as if they
ran inline; `submit` first waits for the job before. The loader calls `drain` before it releases
a STATE, completes a stream or ends: a STATE still follows the acknowledgement of every record
before it. A job's error is raised by the next `submit` or `drain`, in the loader's thread.

Why a thread helps under the GIL: the job spends most of its time in send/recv, which release
the GIL, while the loader's parsing needs it. The interpreter's switch interval is lowered while
a job runs, so a reply that arrived is read within ~1 ms instead of up to 5 ms.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType

Job = Callable[[], object]
Done = Callable[[], None]

# Seconds the running thread keeps the GIL before another may take it (CPython's default: 5 ms).
SWITCH_INTERVAL_S = 0.001


class InFlight:
    """At most one job running beside the caller; errors come back to the caller."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="redis-io")
        self._running: Future[object] | None = None
        self._done: Done | None = None
        self._interval = sys.getswitchinterval()

    def submit(self, job: Job, done: Done | None = None) -> None:
        """Start `job` once the job before it has finished (its error is raised here). `done`
        runs in the caller's thread once the job has succeeded (at the next submit or drain)."""
        self.drain()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self._running, self._done = self._pool.submit(job), done

    def drain(self) -> None:
        """Wait for the job in flight; raise its error, if it failed, else run its `done`."""
        running, self._running = self._running, None
        done, self._done = self._done, None
        if running is not None:
            try:
                running.result()
            finally:
                sys.setswitchinterval(self._interval)
            if done is not None:
                done()

    def close(self) -> None:
        """Wait for the job in flight without raising (the caller is already failing), stop the thread."""
        running, self._running = self._running, None
        self._done = None
        if running is not None:
            running.exception()
            sys.setswitchinterval(self._interval)
        self._pool.shutdown(wait=True)

    def __enter__(self) -> InFlight:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
