"""The housekeeping jobs: the intake heartbeat and the expiry of raw events. Plain, idempotent
functions with explicit arguments; the job table (monitor.pipeline.jobs) schedules them."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from sqlalchemy.orm import Session

from monitor.store.coverage import record_heartbeat
from monitor.store.engine import SessionFactory
from monitor.store.events import EXPIRE_BATCH, expire_events
from monitor.store.requestlog import expire_requests

Transact = Callable[[Callable[[Session], int]], int]

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

    def run(work: Callable[[Session], int]) -> int:
        with session_factory() as session, session.begin():
            return work(session)

    return run


def expire(transact: Transact, *, now: datetime, days: int, batch: int = EXPIRE_BATCH) -> int:
    """Delete raw events older than `days`, `batch` at a time, each batch in a transaction of
    its own (per-tag state and roll-ups stay). `serve` passes `StoreWriter.transact`, so a batch
    runs only when no notification waits; after each batch the job rests as long as the batch
    took, so expiry never has more than half of the store's write time."""
    cut = now - timedelta(days=days)
    removed = 0
    while True:
        started = time.monotonic()
        done = transact(lambda s: expire_events(s, older_than=cut, limit=batch))
        removed += done
        if done < batch:
            break
        time.sleep(min(time.monotonic() - started, 1.0))
    requests = 0
    while True:
        done = transact(lambda s: expire_requests(s, older_than=cut, limit=batch))
        requests += done
        if done < batch:
            break
    log.info("events expired", removed=removed, days=days, requests=requests)
    return removed
