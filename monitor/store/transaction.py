"""One unit of work in a transaction of its own, run again when PostgreSQL broke it off to
settle a conflict with another writer.

PostgreSQL ends one of two transactions that wait on each other's rows (deadlock, SQLSTATE
40P01) or that cannot both be serialised (40001), and asks the client to run it again. The
applier folds events into the tag state in the order they happened while reconciliation writes
a repository's tags in name order, so the two can wait on each other. The writer thread retries
its own batches (monitor.store.writer); every other writer runs its units through
`in_transaction`. A unit must touch nothing but the session: it may run more than once, and
only its last run commits. SQLite has one writer at a time and never reports either.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from monitor.store.engine import SessionFactory
from monitor.store.failures import is_conflict

T = TypeVar("T")

ATTEMPTS = 5
"""Runs of one unit before the conflict is reported: PostgreSQL waits `deadlock_timeout` (1 s by
default) before it breaks a deadlock, so five runs cover seconds of contention."""


def in_transaction(
    session_factory: SessionFactory,
    work: Callable[[Session], T],
    *,
    attempts: int = ATTEMPTS,
    pause: Callable[[float], None] = time.sleep,
    jitter: Callable[[], float] = random.random,
) -> T:
    """`work(session)` in a transaction that commits; run again (after a short, growing, random
    pause, so the two writers do not meet again in step) when the database broke it off for a
    conflict, up to `attempts` runs. Any other failure, or the last conflict, is raised."""
    attempt = 1
    while True:
        try:
            with session_factory() as session, session.begin():
                return work(session)
        except DBAPIError as exc:
            if attempt >= attempts or not is_conflict(exc):
                raise
        pause((0.02 + 0.08 * jitter()) * attempt)
        attempt += 1
