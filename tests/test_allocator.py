"""The C allocator returns a large body's memory as soon as it is freed, every time."""

from __future__ import annotations

import os
import subprocess
import sys

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
