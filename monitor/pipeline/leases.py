"""Running a job under a store lease, so that one replica runs each firing.

The lease is a row (monitor.store.locks) taken before the work, renewed every `ttl / 3` while
it runs, and afterwards left to lapse at `hold_until` (or at once).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

import structlog

from monitor.clock import Clock
from monitor.store.engine import SessionFactory
from monitor.store.locks import acquire_lock, release_lock, renew_lock

log = structlog.get_logger("monitor.pipeline.leases")
T = TypeVar("T")


class _Renewer:
    """Renews a lease every `ttl / 3` until stopped."""

    def __init__(
        self, session_factory: SessionFactory, name: str, holder: str, ttl: timedelta, clock: Clock
    ) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=self._run, args=(session_factory, name, holder, ttl, clock), daemon=True
        )

    def _run(
        self, session_factory: SessionFactory, name: str, holder: str, ttl: timedelta, clock: Clock
    ) -> None:
        while not self.stop.wait(ttl.total_seconds() / 3):
            try:
                with session_factory() as session, session.begin():
                    if not renew_lock(session, name=name, holder=holder, now=clock(), ttl=ttl):
                        return
            except Exception as exc:
                log.warning("lease renewal failed", job=name, error=type(exc).__name__)


def run_locked(
    session_factory: SessionFactory,
    *,
    name: str,
    holder: str,
    clock: Clock,
    ttl: timedelta,
    work: Callable[[], T],
    hold_until: datetime | None = None,
) -> tuple[bool, T | None]:
    """Run `work` if this replica gets the lease `name`: (ran, result).

    The lease is renewed while `work` runs; afterwards it lapses at `hold_until` (e.g. just
    before the job's next fire time, so a replica whose clock fires late does not run the same
    slot again) or at once.
    """
    with session_factory() as session, session.begin():
        got = acquire_lock(session, name=name, holder=holder, now=clock(), ttl=ttl)
    if not got:
        log.info("job skipped: another replica holds it", job=name)
        return False, None
    renewer = _Renewer(session_factory, name, holder, ttl, clock)
    renewer.thread.start()
    try:
        result = work()
    finally:
        renewer.stop.set()
        renewer.thread.join(timeout=10)
        now = clock()
        with session_factory() as session, session.begin():
            until = hold_until if hold_until is not None and hold_until > now else now
            release_lock(session, name=name, holder=holder, until=until)
    return True, result
