"""The file system's own sync latency: what a durable commit costs before any database work.

    python -m bench.syncprobe [--seconds S] [--dir DIR]

A thread overwrites 1 KiB in place in a 1 MiB file and `fdatasync`s it every 10 ms, as the
SQLite inbox's write-ahead log is written once it started over (no block allocated, so no
journal commit of the file system is needed: a data write and the device's cache flush), and
records how long each sync took. `bench.scale readers` runs it beside every window, in the
store's directory, so a slow intake answer can be set against the device's slow syncs at the
same time; alone it measures the machine at rest. Prints syncs, p50, p99, p99.9, max and how
many took over 20, 50 and 100 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from bench.quantiles import quantiles
from bench.scalestore import DATA_DIR

INTERVAL_SECONDS = 0.01
FILE_BYTES = 1024 * 1024
WRITE = 1024
PAGE = 4096


@dataclasses.dataclass(frozen=True)
class SyncLatency:
    syncs: int
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    over_20: int
    over_50: int
    over_100: int

    @classmethod
    def of(cls, latencies_ms: list[float]) -> SyncLatency:
        p50, p99, p999, most = quantiles(latencies_ms or [0.0], [0.5, 0.99, 0.999, 1.0])
        return cls(
            syncs=len(latencies_ms),
            p50_ms=p50,
            p99_ms=p99,
            p999_ms=p999,
            max_ms=most,
            over_20=sum(x > 20 for x in latencies_ms),
            over_50=sum(x > 50 for x in latencies_ms),
            over_100=sum(x > 100 for x in latencies_ms),
        )

    def brief(self) -> str:
        """`max ms (over 100 ms)`, for a table cell."""
        return f"{self.max_ms:.1f} ({self.over_100})"

    def line(self) -> str:
        return (
            f"{self.syncs:,} syncs: p50 {self.p50_ms:.2f} ms, p99 {self.p99_ms:.2f}, "
            f"p99.9 {self.p999_ms:.1f}, max {self.max_ms:.1f}; over 20 / 50 / 100 ms: "
            f"{self.over_20} / {self.over_50} / {self.over_100}"
        )


@contextlib.contextmanager
def sync_probe(directory: Path) -> Iterator[list[SyncLatency]]:
    """Syncs a small file in `directory` every 10 ms until the block ends; the list then
    holds the summary."""
    stop = threading.Event()
    latencies: list[float] = []
    with tempfile.NamedTemporaryFile(dir=directory, prefix="syncprobe-") as handle:
        fd = handle.fileno()
        os.write(fd, b"\0" * FILE_BYTES)
        os.fsync(fd)
        data = os.urandom(WRITE)

        def run() -> None:
            offset = 0
            while not stop.is_set():
                os.pwrite(fd, data, offset)
                offset = (offset + PAGE) % FILE_BYTES
                started = time.perf_counter()
                os.fdatasync(fd)
                latencies.append((time.perf_counter() - started) * 1000)
                stop.wait(INTERVAL_SECONDS)

        thread = threading.Thread(target=run, name="sync-probe", daemon=True)
        thread.start()
        out: list[SyncLatency] = []
        try:
            yield out
        finally:
            stop.set()
            thread.join(timeout=30)
            out.append(SyncLatency.of(latencies))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--dir", type=Path, default=DATA_DIR)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    with sync_probe(args.dir) as result:
        time.sleep(args.seconds)
    print(f"{args.dir}, {args.seconds:g} s: {result[0].line()}")


if __name__ == "__main__":
    main()
