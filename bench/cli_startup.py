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
import resource
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


def timed(argv: Sequence[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one fresh process running `argv`, in seconds.

    CPU time is what the process itself spent: it moves much less than wall time when other
    work shares the machine, so it is the closer estimate of an idle machine's wall time.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return elapsed, cpu


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
        walls: dict[str, list[float]] = {label: [] for label in commands}
        cpus: dict[str, list[float]] = {label: [] for label in commands}
        for _ in range(args.runs):
            for label, (argv, command_env) in commands.items():
                elapsed, cpu = timed(argv, command_env)
                walls[label].append(elapsed)
                cpus[label].append(cpu)
        rows = []
        baseline = 0.0
        for label, (argv, command_env) in commands.items():
            median = statistics.median(walls[label])
            baseline = baseline or median
            seconds, names = imports(argv, command_env)
            heavy = ", ".join(h for h in HEAVY if h in names) or "none"
            cpu = statistics.median(cpus[label])
            rows.append((label, median, median / baseline, cpu, seconds, heavy))
    load = os.getloadavg()[0]
    print(f"{args.runs} runs each, medians; load average {load:.1f}\n")
    print("| command | wall s | wall / baseline | CPU s | imports s | heavy libraries imported |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for label, median, ratio, cpu, seconds, heavy in rows:
        print(f"| {label} | {median:.3f} | {ratio:.1f}x | {cpu:.3f} | {seconds:.3f} | {heavy} |")


if __name__ == "__main__":
    main()
