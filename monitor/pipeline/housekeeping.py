"""The housekeeping jobs: the intake heartbeat and the expiry of raw events. Plain, idempotent
functions with explicit arguments; the job table (monitor.pipeline.jobs) schedules them, and
the applier's process (monitor.pipeline.applier_child) runs `expire_job` when apart."""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

import structlog
from sqlalchemy.orm import Session

from monitor.clock import Clock
from monitor.pipeline.scheduler import Job
from monitor.settings.sections import RetentionSettings
from monitor.store.coverage import record_heartbeat
from monitor.store.engine import SessionFactory
from monitor.store.events import EXPIRE_BATCH, ExpiryKey, expire_event_batch
from monitor.store.requestlog import expire_requests
from monitor.store.transaction import in_transaction

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
    """Run work in a transaction of its own (where no writer thread runs, e.g. the CLI), again
    when PostgreSQL broke it off for a conflicting writer (monitor.store.transaction)."""

    def run(work: Callable[[Session], T], /) -> T:
        return in_transaction(session_factory, work)

    return run


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False


@dataclasses.dataclass(slots=True)
class _Progress:
    removed: int = 0
    stopped: bool = False


def expire(
    transact: Transact,
    *,
    now: datetime,
    days: int,
    batch: int = EXPIRE_BATCH,
    rest: Callable[[float], bool] = _sleep,
) -> int:
    """Delete raw events older than `days`, `batch` at a time, each batch in a transaction of
    its own (per-tag state and roll-ups stay). After each batch the job rests as long as the
    batch took, so expiry never has more than half of the store's write time. `rest(seconds)`
    sleeps and says whether the service is stopping (`serve` passes its stop event's `wait`),
    which ends the expiry between two batches; the next run resumes it. Returns how many events
    it removed."""
    cut = now - timedelta(days=days)

    def events(after: ExpiryKey | None, session: Session) -> tuple[int, ExpiryKey | None]:
        return expire_event_batch(session, older_than=cut, limit=batch, after=after)

    def requests(
        after: dict[str, datetime] | None, session: Session
    ) -> tuple[int, dict[str, datetime] | None]:
        return expire_requests(session, older_than=cut, limit=batch, after=after)

    removed = _in_batches(transact, events, batch=batch, rest=rest)
    if removed.stopped:
        log.info("expiry stopped, to resume at its next run", removed=removed.removed, days=days)
        return removed.removed
    records = _in_batches(transact, requests, batch=batch, rest=None)
    log.info("events expired", removed=removed.removed, days=days, requests=records.removed)
    return removed.removed


GIVE_WAY_SECONDS = 10.0
"""After a batch, expiry waits at most this long more while intake's applier is behind: the
batches share the store's writes with the applier, and an inbox that fills answers the
registry `503`. Expiry still removes a batch every 10 s or so under a flood of notifications."""


def rest_giving_way(
    stopping: threading.Event,
    intake_behind: Callable[[], bool] | None,
    *,
    most: float = GIVE_WAY_SECONDS,
    poll: float = 0.05,
) -> Callable[[float], bool]:
    """`expire`'s rest: the batch's own time, then, while `intake_behind()` says more
    notifications wait than the applier takes at once, up to `most` seconds more (looked at
    every `poll`). True when `stopping` was set meanwhile."""

    def rest(seconds: float) -> bool:
        if stopping.wait(seconds):
            return True
        if intake_behind is None:
            return False
        deadline = time.monotonic() + most
        while intake_behind() and time.monotonic() < deadline:
            if stopping.wait(poll):
                return True
        return False

    return rest


def expire_job(
    transact: Transact,
    retention: RetentionSettings,
    *,
    clock: Clock,
    stopping: threading.Event,
    intake_behind: Callable[[], bool] | None = None,
) -> Job:
    """The `expire-events` job: `expire` at the times of `retention.schedule`, through
    `transact` (the writer of the process that runs it), giving way to intake while
    `intake_behind()` (`rest_giving_way`), ending between two batches once `stopping` is
    set."""
    rest = rest_giving_way(stopping, intake_behind)

    def run() -> None:
        expire(transact, now=clock(), days=retention.events_days, rest=rest)

    return Job("expire-events", run, cron=retention.schedule)


def _in_batches(
    transact: Transact,
    one_batch: Callable[[K | None, Session], tuple[int, K | None]],
    *,
    batch: int,
    rest: Callable[[float], bool] | None,
) -> _Progress:
    """Run `one_batch` in transactions of their own until one removes fewer than `batch`; each
    starts from the key the last committed one returned (a retried transaction runs again from
    the same key). With `rest`, the job pauses as long as each batch took, and stops when
    `rest` says so."""
    progress = _Progress()
    key: K | None = None
    while True:
        started = time.monotonic()
        # `key` changes only once the transaction has committed: a retry starts from it again.
        done, key = transact(functools.partial(one_batch, key))
        progress.removed += done
        if done < batch:
            return progress
        if rest is not None and rest(min(time.monotonic() - started, 1.0)):
            progress.stopped = True
            return progress
