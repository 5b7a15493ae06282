"""`serve`'s scheduled cleanup plan in a process of its own: a fresh interpreter
(`python -m monitor.pipeline.plan_child`, niceness 10) reads a `PlanRequest` on its stdin,
plans and stores the plan with `make_plan`, and writes a `PlanDone` on its stdout.

In `serve`'s own process a plan of 517,836 actions on the 10M-event store took one core for
13 s beside the event loop answering intake (the GIL handed back and forth every 0.5 ms),
and left `serve` at 148-157 MiB RSS (69 before) for good: the heap a plan grows is not given
back. Apart, the plan's CPU runs below intake's and its memory ends with its process. It plans
in this one process (`make_plan`'s `processes` 1): the machine's other core answers the
registry.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import subprocess
import sys
from datetime import datetime, timedelta

from monitor.children import NICENESS
from monitor.pipeline.plan_processes import PlanningError
from monitor.settings import CleanupSettings, DatabaseSettings

TIME_LIMIT_SECONDS = 3600.0
"""A plan's process still running after this long is killed and the run fails: a plan of
517,836 actions on the 10M-event store takes 15-25 s this way."""
STDERR_KEPT = 2000
"""The end of a failed plan process's error output kept in the error raised."""


@dataclasses.dataclass(frozen=True, slots=True)
class PlanRequest:
    """What the plan's process needs: the store, the cleanup settings and the plan's time."""

    database: DatabaseSettings
    cleanup: CleanupSettings
    now: datetime


@dataclasses.dataclass(frozen=True, slots=True)
class PlanDone:
    """The plan stored: its id and counts, the plan it was compared with, and the process
    that made it."""

    plan_id: str
    counts: dict[str, int]
    previous_id: str | None
    pid: int


def plan_apart(request: PlanRequest) -> PlanDone:
    """Plans in a fresh interpreter and waits for it (at most `TIME_LIMIT_SECONDS`);
    PlanningError when it fails (with the end of its error output)."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "monitor.pipeline.plan_child"],
            input=pickle.dumps(request),
            capture_output=True,
            check=False,
            timeout=TIME_LIMIT_SECONDS,
        )
    except subprocess.TimeoutExpired as exc:  # run() has killed it
        raise PlanningError(f"the plan's process ran over {TIME_LIMIT_SECONDS:g} s") from exc
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace")[-STDERR_KEPT:].strip()
        raise PlanningError(f"the plan's process failed (exit {done.returncode}): {tail}")
    try:
        # written by the process just started, on its own stdout
        result = pickle.loads(done.stdout)  # noqa: S301
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise PlanningError("the plan's process gave no result") from exc
    if not isinstance(result, PlanDone):
        raise PlanningError("the plan's process gave no result")
    return result


def main() -> None:  # pragma: no cover - runs in the plan's process (tests run it as one)
    from monitor.pipeline.cleanup import load_policy_set, make_plan
    from monitor.store.engine import make_engine, make_session_factory

    os.nice(NICENESS)
    # The result alone on stdout: whatever else is printed (a log line) goes with the errors.
    result_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    request = pickle.load(sys.stdin.buffer)  # noqa: S301 (from the process that started this one)
    if not isinstance(request, PlanRequest):
        raise SystemExit("monitor.pipeline.plan_child: no plan request on stdin")
    engine = make_engine(request.database)
    try:
        outcome = make_plan(
            make_session_factory(engine),
            policies=load_policy_set(request.cleanup),
            now=request.now,
            gap_tolerance=timedelta(seconds=request.cleanup.coverage_gap_tolerance_seconds),
            plans_keep=request.cleanup.plans_keep,
        )
    finally:
        engine.dispose()
    summary = outcome.summary
    done = PlanDone(summary.id, dict(summary.counts), outcome.previous_id, os.getpid())
    with result_out:
        result_out.write(pickle.dumps(done))


if __name__ == "__main__":  # pragma: no cover
    # run as the module proper, not as __main__: its classes are what the pickles name
    from monitor.pipeline import plan_child

    plan_child.main()
