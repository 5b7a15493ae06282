"""Small aggregate queries behind the store-derived gauges. Functions take a session."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from monitor.store.schema import EventRow, TagStateRow


def live_tags(session: Session) -> int:
    """Tags not deleted."""
    query = select(func.count()).select_from(TagStateRow).where(TagStateRow.deleted_at.is_(None))
    return int(session.scalar(query) or 0)


def unused_tags(session: Session, *, now: datetime, days: int) -> int:
    """Live tags not pulled for more than `days` days (never pulled: since first seen)."""
    last_used = func.coalesce(TagStateRow.last_pulled_at, TagStateRow.first_seen_at)
    query = (
        select(func.count())
        .select_from(TagStateRow)
        .where(TagStateRow.deleted_at.is_(None), last_used < now - timedelta(days=days))
    )
    return int(session.scalar(query) or 0)


def newest_events(session: Session) -> dict[str, datetime]:
    """The newest `occurred_at` per source that has events."""
    query = select(EventRow.source, func.max(EventRow.occurred_at)).group_by(EventRow.source)
    out: dict[str, datetime] = {}
    for source, newest in session.execute(query):
        if newest is None:
            continue
        if isinstance(newest, str):
            newest = datetime.fromisoformat(newest)
        out[str(source)] = newest
    return out
