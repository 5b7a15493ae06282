"""Planning on several cores: the store's repositories cut into ranges of about as many rows
(`split_points`), every range after the first planned by a process forked from this one while
this one plans the first, the parts joined in name order into the one stored plan a single
process would make (the same decisions, actions, plan id and bytes freed; only where its chunks
end differs).

A forked process shares this one's hash seed, so the keys of what a plan frees (Freed) compare
across them. Forking is done only while this process runs no other thread (a copy would inherit
the locks those hold). `cleanup plan` at the console uses the cores; `serve`'s scheduled plan
(monitor.pipeline.plan_child) plans in one process, leaving the others to intake. Each process
reads its range in a transaction of its own, started as it forks: on PostgreSQL (READ
COMMITTED) each of a plan's reads saw the store as it was when that read began in any case.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import pickle
import signal
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import BinaryIO

from monitor.cleanup.freed import FreedKeys
from monitor.cleanup.model import Interval
from monitor.cleanup.planner import Planner
from monitor.cleanup.policy import Policy
from monitor.cleanup.stored_plan import PlanPart, PlanWriter
from monitor.store.engine import SessionFactory
from monitor.store.planner_input import stream_repositories

SPLIT_MIN_ROWS = 50_000
"""Fewer live tags and manifests than this are planned in one process: forking and joining
would cost more than the second core gives back."""


class PlanningError(RuntimeError):
    """A planning process failed or ended without its part."""


@dataclasses.dataclass(frozen=True, slots=True)
class RangePlan:
    """What a forked process planned: its part of the stored plan and of what the plan frees."""

    part: PlanPart
    freed: FreedKeys


@dataclasses.dataclass(frozen=True, slots=True)
class PlanRange:
    """The repositories from `start` (included) to `stop` (excluded); None is open."""

    start: str | None
    stop: str | None


def ranges(points: Sequence[str]) -> list[PlanRange]:
    """The ranges `points` (from `split_points`) cut the repositories into, in order."""
    bounds: list[str | None] = [None, *points, None]
    return [PlanRange(a, b) for a, b in itertools.pairwise(bounds)]


def can_fork() -> bool:
    """Whether this process may fork planners: it runs no other thread."""
    return threading.active_count() == 1 and hasattr(os, "fork")


@dataclasses.dataclass(frozen=True, slots=True)
class RangePlanner:
    """Plans one range in a session of its own: what a forked process runs."""

    session_factory: SessionFactory
    policies: tuple[Policy, ...]
    coverage: list[Interval]
    now: datetime
    gap_tolerance: timedelta

    def __call__(self, span: PlanRange) -> RangePlan:
        # The pool's connections are the parent's: left to it, never used or closed here.
        self.session_factory.kw["bind"].dispose(close=False)
        planner = Planner(self.policies, self.coverage, self.now, gap_tolerance=self.gap_tolerance)
        writer = PlanWriter(self.now, part=True)
        with self.session_factory() as session, session.begin():
            repositories = stream_repositories(
                session, start=span.start, stop=span.stop, read_ahead=False
            )
            for part in planner.each(repositories):
                writer.add(part.name, part.decisions, part.actions)
        return RangePlan(writer.part(), planner.freed.export())


class Forked:
    """A process forked to run one call, and the pipe its pickled result comes back on."""

    def __init__(self, run: Callable[[], RangePlan]) -> None:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child: runs, writes, exits; never returns
            os.close(read_end)
            code = 1
            try:
                with os.fdopen(write_end, "wb") as out:
                    try:
                        result: tuple[str, object] = ("done", run())
                    except BaseException as exc:  # handed to the parent, which raises it
                        result = ("failed", f"{type(exc).__name__}: {exc}")
                    pickle.dump(result, out, protocol=pickle.HIGHEST_PROTOCOL)
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        self.pid = pid
        self._pipe: BinaryIO | None = os.fdopen(read_end, "rb")

    def result(self) -> RangePlan:
        """The child's result, once it has written it and ended; PlanningError otherwise."""
        pipe, self._pipe = self._pipe, None
        if pipe is None:
            raise PlanningError("a planning process's result was taken already")
        with pipe:
            try:
                # written by this process's own fork, on a pipe no one else holds
                kind, value = pickle.load(pipe)  # noqa: S301
            except (EOFError, pickle.UnpicklingError, ValueError) as exc:
                status = self._wait()
                raise PlanningError(
                    f"a planning process ended without its part (wait status {status})"
                ) from exc
        self._wait()
        if kind != "done" or not isinstance(value, RangePlan):
            raise PlanningError(f"a planning process failed: {value}")
        return value

    def _wait(self) -> int:
        with contextlib.suppress(ChildProcessError):
            return os.waitpid(self.pid, 0)[1]
        return 0

    def stop(self) -> None:
        """Ends the child if its result was not taken (the plan failed here meanwhile)."""
        if self._pipe is None:
            return
        self._pipe.close()
        self._pipe = None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self._wait()
