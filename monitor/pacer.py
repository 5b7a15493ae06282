"""A background process leaving its core to the answers at short intervals.

An answer to the registry passes through several tasks that sleep and wake in turn: `serve`,
the PostgreSQL backend that commits its body to the inbox, the disk's completion, the client.
Each wake-up needs a core. Linux's scheduler (EEVDF, 6.6 and later) may queue a task it wakes
behind the one running on that core and leave it there until that one sleeps or the next tick
(4 ms at 250 Hz), even while the other core idles: a task that ran more than its share before
it slept is not eligible to run first, and one woken where it still counts as queued is not
moved to an idle core. Niceness does not prevent it, nor does `SCHED_IDLE`. A process that
holds a core for milliseconds of Python at a time, as the intake applier does while it parses
a batch, builds its statements and judges events, then sets the answers' slowest percentile:
on two cores with PostgreSQL beside it, the inbox's backend waited up to 3.7 ms behind the
applier's threads while the other core idled (`perf sched timehist`; BENCHMARKS.md).

`Pacer` bounds those stretches without touching the work: while answers flow (`answering()`,
called when `serve` says bodies were appended), a thread of the process asks for the
interpreter's lock every `every` seconds. The thread running Python code hands it over within
the switch interval (`sys.setswitchinterval`, set to `every` as well) and waits for it, off its
core, until the pacer has taken it and let it go: whatever the kernel queued behind it runs
then. The work goes on between turns, a few microseconds later. While no answer flows (a
catch-up after an outage, a detection pass on a quiet registry) the pacer sleeps and the
process runs its work in the stretches it likes.
"""

from __future__ import annotations

import sys
import threading
import time

EVERY_SECONDS = 0.0005
"""How often the pacer asks for the lock while answers flow, and the process's switch
interval: a stretch of the process's Python then lasts about a millisecond at most (the
sleep, the timer's slack, the switch interval)."""

HOLD_SECONDS = 1.0
"""How long after the last `answering()` the pacer keeps its turns."""


class Pacer:
    """`start()` once; `answering()` whenever answers flow (cheap: any thread, any rate);
    `stop()` at the end. `turns` counts the times it took the interpreter's lock."""

    def __init__(self, *, every: float = EVERY_SECONDS, hold: float = HOLD_SECONDS) -> None:
        self._every = every
        self._hold = hold
        self._until = 0.0
        self._flowing = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.turns = 0

    def start(self) -> None:
        if self._thread is None:
            sys.setswitchinterval(self._every)
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="pacer", daemon=True)
            self._thread.start()

    def answering(self) -> None:
        self._until = time.monotonic() + self._hold
        self._flowing.set()

    def stop(self, timeout: float = 1.0) -> None:
        if self._thread is not None:
            self._stopping.set()
            self._flowing.set()
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            if time.monotonic() >= self._until:
                self._flowing.clear()
                if time.monotonic() >= self._until:  # no `answering()` since the check
                    self._flowing.wait()
                continue
            # Sleeping lets go of the lock; waking, the thread waits for it: the thread that
            # holds it hands it over within the switch interval and waits off its core.
            time.sleep(self._every)
            self.turns += 1
