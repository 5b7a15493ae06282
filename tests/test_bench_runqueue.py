"""The benchmarks' run-queue reading: a process's time on a core and waiting for one."""

from __future__ import annotations

import os
import threading
import time

from bench.runqueue import core_wait, schedstat_ns


def spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_a_busy_process_shows_its_time_on_a_core() -> None:
    """50 ms of CPU within the block shows as time on a core, per second of the block."""
    started = time.monotonic()
    with core_wait(os.getpid()) as measured:
        spin(0.05)
    elapsed = time.monotonic() - started
    (wait,) = measured
    assert wait.on_core_ms_per_s * elapsed >= 45
    assert wait.waiting_ms_per_s >= 0


def test_every_thread_of_the_process_counts() -> None:
    """A second thread's CPU is part of the process's time on a core."""
    spun, release = threading.Event(), threading.Event()

    def work() -> None:
        spin(0.05)
        spun.set()
        release.wait(10)  # alive while read: an ended thread's time is no longer listed

    before, _ = schedstat_ns(os.getpid())
    worker = threading.Thread(target=work)
    worker.start()
    spin(0.05)
    assert spun.wait(10)
    after, _ = schedstat_ns(os.getpid())
    release.set()
    worker.join()
    assert after - before >= 90_000_000


def test_a_process_that_is_gone_reads_as_nothing() -> None:
    assert (0, 0) == schedstat_ns(2**22 + 7)  # above the kernel's largest pid
