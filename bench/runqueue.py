"""How long a process waited for a core: what a slow answer owes to the CPU, not the disk.

The kernel keeps, for each thread, the time it ran on a core and the time it was runnable
but waited in a run queue (`/proc/<pid>/task/<tid>/schedstat`). `core_wait(pid)` reads both,
summed over the process's threads, before and after a block, so a benchmark row can show how
many milliseconds of each second `serve` spent waiting for a core beside the processes that
share the machine with it (its own children, PostgreSQL's backends, the load generator).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Iterator


@dataclasses.dataclass(frozen=True)
class CoreWait:
    on_core_ms_per_s: float
    waiting_ms_per_s: float

    def brief(self) -> str:
        """`on a core / waiting` in ms a second, for a table cell."""
        return f"{self.on_core_ms_per_s:.0f} / {self.waiting_ms_per_s:.0f}"


def schedstat_ns(pid: int) -> tuple[int, int]:
    """Nanoseconds `pid`'s threads (those alive now) ran on a core and waited for one."""
    ran = waited = 0
    with contextlib.suppress(FileNotFoundError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError):
                with open(f"/proc/{pid}/task/{tid}/schedstat") as handle:
                    fields = handle.read().split()
                ran += int(fields[0])
                waited += int(fields[1])
    return ran, waited


@contextlib.contextmanager
def core_wait(pid: int) -> Iterator[list[CoreWait]]:
    """Measures `pid` over the block; the list then holds its `CoreWait`. Threads that ended
    within the block are not counted (`serve`'s own live as long as it does)."""
    ran0, waited0 = schedstat_ns(pid)
    started = time.monotonic()
    out: list[CoreWait] = []
    try:
        yield out
    finally:
        ran1, waited1 = schedstat_ns(pid)
        seconds = max(time.monotonic() - started, 1e-9)
        out.append(
            CoreWait(
                on_core_ms_per_s=max(ran1 - ran0, 0) / 1e6 / seconds,
                waiting_ms_per_s=max(waited1 - waited0, 0) / 1e6 / seconds,
            )
        )
