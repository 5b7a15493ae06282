"""Benchmark: how long the `registry-monitor` console script takes to start and answer.

    python -m bench.cli_startup [--runs N] [--before DIR]

Times the installed console script (the one in the running interpreter's bin directory) as a
user meets it, each run a new process: `--help`, and `events` on a migrated, empty SQLite
store. Baseline: the same interpreter starting and doing nothing (`python -c pass`), so the
ratio survives a loaded machine. With `--before DIR` (a source tree holding another version's
`monitor/`, e.g. from `git archive REV monitor`), that version runs as `python -m monitor`
in the same rounds. The commands take turns, round after round, so each sees the same load.
Then one run of each with `PYTHONPROFILEIMPORTTIME=1` shows what was imported: the total
import time and whether the heavy libraries were loaded. Prints a markdown table.
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
# runs `monitor` from $BENCH_BEFORE: the editable install's finder is taken off the import path
BEFORE = (
    "import os, runpy, sys; "
    "sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in str(f)]; "
    "sys.path.insert(0, os.environ['BENCH_BEFORE']); "
    "runpy.run_module('monitor', run_name='__main__')"
)
HEAVY = ("sqlalchemy", "alembic", "starlette", "uvicorn", "slack_sdk", "apscheduler", "httpx")


def wall(argv: Sequence[str], env: dict[str, str]) -> float:
    """Wall time of one fresh process running `argv`, in seconds."""
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


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
    parser.add_argument("--before", type=Path, help="source tree of the version to compare with")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "REGISTRY_MONITOR_DATABASE_URL": f"sqlite:///{tmp}/bench.db",
        }
        subprocess.run(
            [str(SCRIPT), "db", "upgrade"], env=env, check=True, stdout=subprocess.DEVNULL
        )
        commands: dict[str, tuple[list[str], dict[str, str]]] = {
            "python -c pass (baseline)": ([sys.executable, "-c", "pass"], env),
            "registry-monitor --help": ([str(SCRIPT), "--help"], env),
            "registry-monitor events": ([str(SCRIPT), "events"], env),
        }
        if args.before is not None:
            old = {**env, "BENCH_BEFORE": str(args.before.resolve())}
            module = [sys.executable, "-c", BEFORE]
            commands["before: --help (python -m monitor)"] = ([*module, "--help"], old)
            commands["before: events (python -m monitor)"] = ([*module, "events"], old)
        times: dict[str, list[float]] = {label: [] for label in commands}
        for _ in range(args.runs):
            for label, (argv, command_env) in commands.items():
                times[label].append(wall(argv, command_env))
        rows = []
        baseline = 0.0
        for label, (argv, command_env) in commands.items():
            median = statistics.median(times[label])
            baseline = baseline or median
            seconds, names = imports(argv, command_env)
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
