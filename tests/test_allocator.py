"""The C allocator returns a large body's memory as soon as it is freed, every time, and the
child processes give the heap's free pages back after their work."""

from __future__ import annotations

import os
import subprocess
import sys

from monitor.allocator import FreeMemoryRelease

PROBE = """
import ctypes, sys
from monitor.allocator import tune_allocator

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = MallInfo2
if sys.argv[1] == "tuned":
    assert tune_allocator({})
first = bytearray(4 << 20)  # a large body, read and freed
del first
second = bytearray(1 << 20)  # the next one
print(mallinfo2().hblkhd >= len(second))
"""


def mapped_on_its_own(mode: str) -> bool:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, mode], env=environ, capture_output=True, text=True, check=True
    )
    return result.stdout.strip() == "True"


class TestLargeBlocks:
    def test_each_large_body_is_mapped_on_its_own_once_tuned(self) -> None:
        """After a 4 MiB body was freed, a 1 MiB one is still mapped on its own (and so
        returned to the system when freed), where glibc's default would take it from the heap,
        whose free space it keeps."""
        assert (False, True) == (mapped_on_its_own("default"), mapped_on_its_own("tuned"))


FRAGMENTED = """
import sys
from monitor.allocator import FreeMemoryRelease, tune_allocator

def resident_kib():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4

tune_allocator({})
blocks = [bytes(4000) + bytes([i % 256]) for i in range(20_000)]  # ~80 MB from the heap
keep = blocks[-1]  # a live block at the top: glibc cannot shrink the heap by itself
del blocks
before = resident_kib()
if sys.argv[1] == "release":
    assert FreeMemoryRelease().release()
print(before - resident_kib())
"""


def returned_kib(mode: str) -> int:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    result = subprocess.run(
        [sys.executable, "-c", FRAGMENTED, mode],
        env=environ, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(result.stdout.strip())


class TestFreeMemoryRelease:
    def test_free_pages_inside_the_heap_go_back_to_the_system(self) -> None:
        """80 MB of small blocks freed below a live one stay resident until released."""
        assert returned_kib("keep") < 1024
        assert returned_kib("release") > 60_000

    def test_releases_at_most_once_per_interval(self) -> None:
        now = [100.0]
        release = FreeMemoryRelease(interval=1.0, clock=lambda: now[0])
        assert release.available
        assert release.release()
        now[0] = 100.9
        assert not release.release()
        now[0] = 101.0
        assert release.release()
        assert not release.release()
