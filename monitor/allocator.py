"""The C allocator tuned for a service that reads large bodies now and then and lives for months.

glibc's malloc, left alone, costs memory here twice:

- each thread that allocates under contention may get an arena of its own, and keeps it
  (worker threads parse log batches, the writer and readers have theirs): at most 2 arenas;
- a block of 128 KiB or more is mapped on its own and unmapped when freed, but freeing one
  raises that threshold to its size (up to 32 MiB): after the first large body, bodies of
  that size come from the heap, whose free space fragments and is kept. A fixed threshold
  keeps every large body's memory returned to the system as soon as it is freed
  (measured with `bench.hostile`: `serve`'s peak under attack 105 → 78 MiB PSS).

And memory freed inside the heap stays with the process: glibc returns only the free space at
its top. `FreeMemoryRelease` gives the free pages back (`malloc_trim`) at most once a second,
called by the child processes after their work (a read answered, a batch applied): what a read
or a pass allocates in the C heap is freed in small pieces between live blocks, and those
pages stayed with the process at its high-water mark.

Values set in the environment (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`) are left as given.
Another C library (musl, macOS) is left alone.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Callable, Mapping

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameters (malloc.h)
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 128 * 1024
ARENA_MAX = 2
RELEASE_INTERVAL_SECONDS = 1.0


def tune_allocator(environ: Mapping[str, str] = os.environ) -> bool:
    """Caps malloc's arenas and fixes its mapping threshold (see above); call it early, before
    threads start. True when the C library took the settings (or the environment gave them)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    took = True
    if "MALLOC_ARENA_MAX" not in environ:
        took = mallopt(M_ARENA_MAX, ARENA_MAX) == 1 and took
    if "MALLOC_MMAP_THRESHOLD_" not in environ:
        took = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1 and took
    return took


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    return trim


class FreeMemoryRelease:
    """Returns the heap's free pages to the system, at most once every `interval` seconds
    (glibc's `malloc_trim(0)`, which walks the heap once without the GIL: 1.8-3.8 ms for a
    heap like `serve`'s with 16 MB freed in pieces). With another C library `release` does
    nothing."""

    def __init__(
        self,
        interval: float = RELEASE_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._trim = _malloc_trim()
        self._interval = interval
        self._clock = clock
        self._next = float("-inf")

    @property
    def available(self) -> bool:
        return self._trim is not None

    def release(self) -> bool:
        """True when it released (it was due and the C library can); False otherwise."""
        now = self._clock()
        if self._trim is None or now < self._next:
            return False
        self._next = now + self._interval
        self._trim(0)
        return True
