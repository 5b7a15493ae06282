"""Plain, idempotent job functions with explicit arguments; the scheduler calls them."""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog

from monitor.store.coverage import record_heartbeat
from monitor.store.engine import SessionFactory
from monitor.store.events import expire_events

log = structlog.get_logger("monitor.jobs")


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


def expire(session_factory: SessionFactory, *, now: datetime, days: int) -> int:
    """Delete raw events older than `days`; per-tag state stays."""
    with session_factory() as session, session.begin():
        removed = expire_events(session, older_than=now - timedelta(days=days))
    log.info("events expired", removed=removed, days=days)
    return removed
