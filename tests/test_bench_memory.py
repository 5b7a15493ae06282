"""How the benchmarks read a server family's memory (Linux `/proc`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from bench.scaleload import members, pss_kib, rollup_kib


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    """A child process that holds 32 MiB of its own until it is killed."""
    with subprocess.Popen(
        [sys.executable, "-c", "import sys; b = bytearray(32 << 20); sys.stdin.read()"],
        stdin=subprocess.PIPE,
    ) as process:
        yield process
        process.kill()


def test_rollup_gives_each_size_in_kib_by_name() -> None:
    sizes = rollup_kib(os.getpid())

    assert sizes["Pss"] > 0
    assert sizes["Rss"] >= sizes["Pss"]
    assert all(isinstance(value, int) for value in sizes.values())


def test_a_process_that_ended_has_no_rollup() -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()

    with pytest.raises(OSError):
        rollup_kib(process.pid)


def test_the_family_counts_each_process_once_with_its_role(
    child: subprocess.Popen[bytes],
) -> None:
    deadline = time.monotonic() + 30
    while rollup_kib(child.pid)["Rss"] < 32 << 10 and time.monotonic() < deadline:
        time.sleep(0.05)

    family = members(os.getpid())
    by_pid = {member.pid: member for member in family}

    assert by_pid[os.getpid()].role == "serve"
    assert by_pid[child.pid].pss_kib >= 32 << 10  # the bytearray is its own
    assert pss_kib(os.getpid()) >= pss_kib(os.getpid(), alone=True) + (32 << 10) - 1024
