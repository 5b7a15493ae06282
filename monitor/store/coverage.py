"""Intake coverage: the intervals during which the monitor was up and could commit.

A replica records a heartbeat every few seconds; a heartbeat within `max_gap` of the previous
one extends the current interval, a later one starts a new interval. Restarts and store
outages therefore show up as gaps. Functions take a session and never commit.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from monitor.store.schema import CoverageRow

Interval = tuple[datetime, datetime]


def record_heartbeat(
    session: Session, *, replica: str, source: str, now: datetime, max_gap: timedelta
) -> None:
    latest = session.scalars(
        select(CoverageRow)
        .where(CoverageRow.replica == replica, CoverageRow.source == source)
        .order_by(CoverageRow.last_seen_at.desc())
        .limit(1)
    ).first()
    if latest is not None and now - latest.last_seen_at <= max_gap:
        if now > latest.last_seen_at:
            latest.last_seen_at = now
        return
    session.add(CoverageRow(replica=replica, source=source, started_at=now, last_seen_at=now))


LOG = "log"


def extend_log_coverage(session: Session, *, key: str, since: datetime, until: datetime) -> None:
    """Log stream `key` was read without a gap from `since` to `until` (log time): extend its
    interval (a stream's batches follow each other), or start one."""
    latest = session.scalars(
        select(CoverageRow)
        .where(CoverageRow.replica == key, CoverageRow.source == LOG)
        .order_by(CoverageRow.last_seen_at.desc())
        .limit(1)
    ).first()
    if latest is None:
        session.add(CoverageRow(replica=key, source=LOG, started_at=since, last_seen_at=until))
        return
    latest.started_at = min(latest.started_at, since)
    latest.last_seen_at = max(latest.last_seen_at, until)


def covered_intervals(
    session: Session, *, source: str, since: datetime, until: datetime
) -> list[Interval]:
    """Merged intervals of coverage by any replica that overlap [since, until], clipped to it."""
    rows = session.execute(
        select(CoverageRow.started_at, CoverageRow.last_seen_at)
        .where(
            CoverageRow.source == source,
            CoverageRow.last_seen_at >= since,
            CoverageRow.started_at <= until,
        )
        .order_by(CoverageRow.started_at)
    ).all()
    return merge_intervals([(max(a, since), min(b, until)) for a, b in rows])


def merge_intervals(intervals: list[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def gaps(intervals: list[Interval], *, since: datetime, until: datetime) -> list[Interval]:
    """The parts of [since, until] not covered by the (merged) intervals."""
    out: list[Interval] = []
    cursor = since
    for start, end in merge_intervals(intervals):
        if start > cursor:
            out.append((cursor, min(start, until)))
        cursor = max(cursor, end)
        if cursor >= until:
            break
    if cursor < until:
        out.append((cursor, until))
    return out
