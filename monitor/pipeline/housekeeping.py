"""The housekeeping jobs: the intake heartbeat and the expiry of raw events. Plain, idempotent
functions with explicit arguments; the job table (monitor.pipeline.jobs) schedules them."""

from __future__ import annotations

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


def expire(transact: Transact, *, now: datetime, days: int, batch: int = EXPIRE_BATCH) -> int:
    """Delete raw events older than `days`, `batch` at a time, each batch in a transaction of
    its own (per-tag state and roll-ups stay). `serve` passes `StoreWriter.transact`, so a batch
    runs only when no notification waits; after each batch the job rests as long as the batch
    took, so expiry never has more than half of the store's write time."""
    cut = now - timedelta(days=days)

    def events(after: ExpiryKey | None, session: Session) -> tuple[int, ExpiryKey | None]:
        return expire_event_batch(session, older_than=cut, limit=batch, after=after)

    def requests(
        after: dict[str, datetime] | None, session: Session
    ) -> tuple[int, dict[str, datetime] | None]:
        return expire_requests(session, older_than=cut, limit=batch, after=after)

    removed = _in_batches(transact, events, batch=batch, rest=True)
    records = _in_batches(transact, requests, batch=batch, rest=False)
    log.info("events expired", removed=removed, days=days, requests=records)
    return removed


def _in_batches(
    transact: Transact,
    one_batch: Callable[[K | None, Session], tuple[int, K | None]],
    *,
    batch: int,
    rest: bool,
) -> int:
    """Run `one_batch` in transactions of their own until one removes fewer than `batch`; each
    starts from the key the last committed one returned (a retried transaction runs again from
    the same key). With `rest`, the job pauses as long as each batch took."""
    removed = 0
    key: K | None = None
    while True:
        started = time.monotonic()
        # `key` changes only once the transaction has committed: a retry starts from it again.
        done, key = transact(functools.partial(one_batch, key))
        removed += done
        if done < batch:
            return removed
        if rest:
            time.sleep(min(time.monotonic() - started, 1.0))
