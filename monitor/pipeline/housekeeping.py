"""The housekeeping jobs: the intake heartbeat and the expiry of raw events. Plain, idempotent
functions with explicit arguments; the job table (monitor.pipeline.jobs) schedules them."""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

import structlog
from sqlalchemy.orm import Session

from monitor.store.coverage import record_heartbeat
from monitor.store.engine import SessionFactory
from monitor.store.events import EXPIRE_BATCH, ExpiryKey, expire_event_batch
from monitor.store.requestlog import expire_requests

K = TypeVar("K")
T = TypeVar("T")


class Transact(Protocol):
    """Runs `work` in a transaction and returns its result (`StoreWriter.transact`, or
    `transaction_runner` where no writer runs)."""

    def __call__(self, work: Callable[[Session], T], /) -> T: ...


log = structlog.get_logger("monitor.pipeline.housekeeping")


def heartbeat(
    session_factory: SessionFactory, *, replica: str, now: datetime, interval: float
) -> None:
    """Record that this replica is up and can commit (intake coverage)."""
    with session_factory() as session, session.begin():
        record_heartbeat(
            session,
            replica=replica,
            source="notification",
            now=now,
            max_gap=timedelta(seconds=interval * 2.5),
        )


def transaction_runner(session_factory: SessionFactory) -> Transact:
    """Run work in a transaction of its own (where no writer thread runs, e.g. the CLI)."""

    def run(work: Callable[[Session], T], /) -> T:
        with session_factory() as session, session.begin():
            return work(session)

    return run


YIELD_BACKLOG = 1_000
"""Bodies waiting in the intake inbox above which expiry waits before its next batch: a few
seconds of the applier's work, far below `notifications.inbox_max`."""
YIELD_SECONDS = 60.0
"""Longest expiry waits before one batch, so that it still advances under sustained intake."""
_STEP = 0.25


def _not_stopping(seconds: float) -> bool:
    time.sleep(seconds)
    return False


@dataclasses.dataclass(frozen=True, slots=True)
class IntakeFirst:
    """How expiry gives way to intake. The intake inbox is applied by another process (or
    thread), whose transactions contend with expiry's for the store (SQLite's one write lock; a
    server's disk and WAL): before each batch, while more than `backlog_max` bodies wait in the
    inbox, expiry waits, at most `max_seconds`. `wait(seconds)` sleeps and says whether the
    service is stopping, which ends the expiry between two batches (the next run resumes it)."""

    backlog: Callable[[], int] = lambda: 0
    wait: Callable[[float], bool] = _not_stopping
    backlog_max: int = YIELD_BACKLOG
    max_seconds: float = YIELD_SECONDS

    def before_batch(self) -> tuple[float, bool]:
        """Waits while intake is behind: (seconds waited, whether to stop)."""
        waited = 0.0
        while waited < self.max_seconds and self.backlog() > self.backlog_max:
            if self.wait(_STEP):
                return waited, True
            waited += _STEP
        return waited, False

    def rest(self, seconds: float) -> bool:
        """Rests `seconds`; whether to stop."""
        return self.wait(seconds) if seconds > 0 else False


@dataclasses.dataclass(slots=True)
class _Progress:
    removed: int = 0
    waited: float = 0.0
    stopped: bool = False


def expire(
    transact: Transact,
    *,
    now: datetime,
    days: int,
    batch: int = EXPIRE_BATCH,
    intake: IntakeFirst | None = None,
) -> int:
    """Delete raw events older than `days`, `batch` at a time, each batch in a transaction of
    its own (per-tag state and roll-ups stay). `serve` passes `StoreWriter.transact` and its
    inbox's backlog (`intake`): a batch waits while intake is behind, and after each batch the
    job rests as long as the batch took, so expiry never has more than half of the store's
    write time. Returns how many events it removed (all that were due, unless it stopped)."""
    intake = intake if intake is not None else IntakeFirst()
    cut = now - timedelta(days=days)

    def events(after: ExpiryKey | None, session: Session) -> tuple[int, ExpiryKey | None]:
        return expire_event_batch(session, older_than=cut, limit=batch, after=after)

    def requests(
        after: dict[str, datetime] | None, session: Session
    ) -> tuple[int, dict[str, datetime] | None]:
        return expire_requests(session, older_than=cut, limit=batch, after=after)

    removed = _in_batches(transact, events, batch=batch, intake=intake, rest=True)
    records = _Progress(stopped=removed.stopped)
    if not removed.stopped:
        records = _in_batches(transact, requests, batch=batch, intake=intake, rest=False)
    log.info(
        "events expired" if not records.stopped else "expiry stopped, to resume at its next run",
        removed=removed.removed,
        days=days,
        requests=records.removed,
        gave_way_to_intake_seconds=removed.waited + records.waited,
    )
    return removed.removed


def _in_batches(
    transact: Transact,
    one_batch: Callable[[K | None, Session], tuple[int, K | None]],
    *,
    batch: int,
    intake: IntakeFirst,
    rest: bool,
) -> _Progress:
    """Run `one_batch` in transactions of their own until one removes fewer than `batch`; each
    starts from the key the last committed one returned (a retried transaction runs again from
    the same key), after waiting while intake is behind. With `rest`, the job pauses as long as
    each batch took."""
    progress = _Progress()
    key: K | None = None
    while True:
        waited, progress.stopped = intake.before_batch()
        progress.waited += waited
        if progress.stopped:
            return progress
        started = time.monotonic()
        # `key` changes only once the transaction has committed: a retry starts from it again.
        done, key = transact(functools.partial(one_batch, key))
        progress.removed += done
        if done < batch:
            return progress
        if rest and intake.rest(min(time.monotonic() - started, 1.0)):
            progress.stopped = True
            return progress
