"""Egress rate over the last couple of seconds: for the heartbeat's load and the egress cap."""

from __future__ import annotations

import time


class RateMeter:
    """Bytes per second over a sliding window of whole-second buckets."""

    def __init__(self, window_s: int = 2, clock=time.monotonic) -> None:
        self._window = window_s
        self._clock = clock
        self._buckets = [0] * (window_s + 1)
        self._stamps = [-1] * (window_s + 1)

    def add(self, nbytes: int) -> None:
        second = int(self._clock())
        slot = second % len(self._buckets)
        if self._stamps[slot] != second:
            self._stamps[slot] = second
            self._buckets[slot] = 0
        self._buckets[slot] += nbytes

    def bits_per_second(self) -> int:
        now = self._clock()
        second = int(now)
        # Complete seconds in the window plus the part of the current one that has passed.
        total = sum(
            b
            for b, stamp in zip(self._buckets, self._stamps, strict=True)
            if second - self._window <= stamp <= second
        )
        elapsed = self._window + (now - second)
        return int(total * 8 / elapsed)
