"""Log lines repeated per request, held to one per key and interval.

A registry that is refused (a wrong token, a full inbox, a store outage) sends again at once,
and a line per attempt would flood the log: 520,057 `notification refused` lines in 9 minutes
while the inbox was full (BENCHMARKS.md). The counters (`registry_monitor_intake_requests_total`
by code) keep every attempt; the log keeps one line per key every `interval` seconds, with the
number of lines held back since the one before.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class LogRate:
    """At most one line per key every `interval` seconds. Keys are few and fixed (error codes)."""

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def admit(self, key: str) -> int | None:
        """None (and one more held back) when a line for `key` went out less than `interval`
        ago; otherwise the number of lines held back since the last one, for the line to say."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0)

    def held(self, key: str) -> int:
        """Lines for `key` held back since the last one that went out."""
        return self._held.get(key, 0)
