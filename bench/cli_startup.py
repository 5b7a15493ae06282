"""Benchmark: how long the `registry-monitor` console script takes to start and answer.

    python -m bench.cli_startup [--runs N]

Times the installed console script (the one in the running interpreter's bin directory) as a
user meets it, each run a new process: `--help`, and `events` on a migrated, empty SQLite
store. Baseline: the same interpreter starting and doing nothing (`python -c pass`), so the
ratio survives a loaded machine. Then one run of each with `PYTHONPROFILEIMPORTTIME=1` shows
what was imported: the total import time and whether the heavy libraries were loaded.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

BIN = Path(sys.executable).parent
SCRIPT = BIN / "registry-monitor"
HEAVY = ("sqlalchemy", "alembic", "starlette", "uvicorn", "slack_sdk", "apscheduler", "httpx")


def wall(argv: Sequence[str], env: dict[str, str], runs: int) -> list[float]:
    """Wall time of `runs` fresh processes running `argv`, in seconds."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return times


def imports(argv: Sequence[str], env: dict[str, str]) -> tuple[float, set[str]]:
    """Total import time (s) of one run, and which top-level packages it imported."""
    done = subprocess.run(
        argv,
        env={**env, "PYTHONPROFILEIMPORTTIME": "1"},
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    total = 0
    names = set()
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.removeprefix("import time:").split("|")
        if not name[1:].startswith(" "):  # top level: not imported by another module
            total += int(cumulative)
        names.add(name.strip().split(".")[0])
    return total / 1e6, names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="processes per command (median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "REGISTRY_MONITOR_DATABASE_URL": f"sqlite:///{tmp}/bench.db",
        }
        subprocess.run(
            [str(SCRIPT), "db", "upgrade"], env=env, check=True, stdout=subprocess.DEVNULL
        )
        commands = {
            "python -c pass (baseline)": [sys.executable, "-c", "pass"],
            "registry-monitor --help": [str(SCRIPT), "--help"],
            "registry-monitor events": [str(SCRIPT), "events"],
        }
        rows = []
        baseline = 0.0
        for label, argv in commands.items():
            median = statistics.median(wall(argv, env, args.runs))
            baseline = baseline or median
            seconds, names = imports(argv, env)
            heavy = ", ".join(h for h in HEAVY if h in names) or "none"
            rows.append((label, median, median / baseline, seconds, heavy))
    load = os.getloadavg()[0]
    print(f"{args.runs} runs each, median wall time; load average {load:.1f}\n")
    print("| command | wall s | / baseline | imports s | heavy libraries imported |")
    print("| --- | ---: | ---: | ---: | --- |")
    for label, median, ratio, seconds, heavy in rows:
        print(f"| {label} | {median:.3f} | {ratio:.1f}x | {seconds:.3f} | {heavy} |")


if __name__ == "__main__":
    main()
