"""The stream's id counter `K`: reserves a batch's ids with one INCRBY, safe to retry.

INCRBY is not idempotent: if the server ran it but the reply was lost with the connection, a
plain resend would reserve a second range, skipping a batch's worth of ids and leaving the
counter ahead of the records. The counter knows the value it expects (read once, then the last
id of each reservation), so after a lost connection a GET tells whether its INCRBY ran.
"""

from __future__ import annotations

from typing import Any

from destination_redis.topology.router import Router


class IdCounter:
    """Hands out contiguous ids from the counter at `key`, one range per reservation."""

    def __init__(self, key: bytes, router: Router) -> None:
        self.key = key
        self.router = router
        # The counter's value as last seen: read lazily, so a legacy overwrite's DEL of the
        # counter (StreamWriter.start, before any flush) is read as 0.
        self._known: int | None = None
        # (number of the last reservation, the first id after it): written by the I/O thread,
        # read by the loader's thread to guess where the next batch starts (see `guess`).
        self._last: tuple[int, int] = (0, 0)

    def guess(self, number: int) -> int | None:
        """The first id reservation `number` will get, if reservation `number - 1` has run.

        Lets a writer pack batch n+1 on the loader's thread while batch n is in flight (its
        reservation is the first thing its job does). Only a guess: the job compares it with
        what `reserve` returns and packs again where they differ (another writer moved the
        counter), so ids are never wrong, at worst packed twice.
        """
        done, next_id = self._last
        return next_id if done > 0 and done == number - 1 else None

    def reserve(self, count: int, number: int = 0) -> int:
        """Reserve `count` ids (count >= 1); returns the first, the range is [first, first + count).
        `number` numbers the reservations of one sync (1, 2, ...) for `guess`; 0: not counted."""
        if self._known is None:
            (value,) = self.router.run([(b"GET", self.key)])
            if value is not None and not value.lstrip(b"-").isdigit():
                # Not a counter: INCRBY gets the server's refusal, which names the key.
                self.router.run([(b"INCRBY", self.key, count)])
            self._known = int(value or 0)
        expected = self._known + count

        def applied() -> list[Any] | None:
            (now,) = self.router.run([(b"GET", self.key)])
            if int(now or 0) == expected:
                return [expected]  # our INCRBY ran; only its reply was lost
            # The counter still reads the known value: our INCRBY did not run, resend it. Any other
            # value means another writer moved the counter meanwhile: resend too. Our INCRBY may
            # then have run as well, which skips ids (a gap), but a resend never hands out an id
            # twice. (A concurrent writer that moved it by exactly `count` while ours did not run
            # is indistinguishable; concurrent syncs of one stream are not supported anyway.)
            return None

        (last_id,) = self.router.run([(b"INCRBY", self.key, count)], applied=applied)
        # A reply other than `expected` means another writer moved the counter concurrently: the
        # range the server handed out is still ours alone.
        self._known = int(last_id)
        self._last = (number, self._known + 1)
        return self._known - count + 1
