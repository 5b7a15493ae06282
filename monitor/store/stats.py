"""Small aggregate queries behind the store-derived gauges. Functions take a session."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from monitor.store.cleanup_tables import CleanupJournalRow, CleanupPlanRow, RegistryTagRow
from monitor.store.rollups import newest_per_source
from monitor.store.schema import TagStateRow


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


def tag_counts(
    session: Session, *, now: datetime, unused_days: Sequence[int]
) -> tuple[int, dict[int, int]]:
    """`live_tags` and `unused_tags` for each of `unused_days`, counted in one pass over the
    tag state instead of one per figure."""
    last_used = func.coalesce(TagStateRow.last_pulled_at, TagStateRow.first_seen_at)
    columns = [func.count()] + [
        func.coalesce(func.sum(case((last_used < now - timedelta(days=days), 1), else_=0)), 0)
        for days in unused_days
    ]
    row = session.execute(
        select(*columns).select_from(TagStateRow).where(TagStateRow.deleted_at.is_(None))
    ).one()
    return int(row[0]), {days: int(n) for days, n in zip(unused_days, row[1:], strict=True)}


def newest_events(session: Session) -> dict[str, datetime]:
    """The newest `occurred_at` per source that has events (maintained rows, not a scan)."""
    return newest_per_source(session)


def _aware(value: Any) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(moment, datetime)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def newest_plan_counts(session: Session) -> dict[str, int]:
    """Tags per decision in the newest stored cleanup plan; empty without a plan."""
    row = session.execute(
        select(
            CleanupPlanRow.delete_count,
            CleanupPlanRow.keep_count,
            CleanupPlanRow.protected_count,
            CleanupPlanRow.unknown_count,
        )
        .order_by(CleanupPlanRow.created_at.desc(), CleanupPlanRow.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return {}
    return dict(zip(("delete", "keep", "protected", "unknown"), map(int, row), strict=True))


def cleanup_successes(session: Session) -> dict[str, datetime]:
    """When each kind of cleanup run last succeeded, as the store records it: the newest plan
    (`plan`), the newest applied plan (`apply`), the last catalog reconciliation
    (`reconcile`), the newest restored manifest (`restore`). Kinds never run are left out."""
    found = {
        "plan": session.scalar(select(func.max(CleanupPlanRow.created_at))),
        "apply": session.scalar(
            select(func.max(CleanupPlanRow.applied_at)).where(CleanupPlanRow.state == "applied")
        ),
        "reconcile": session.scalar(select(func.max(RegistryTagRow.seen_at))),
        "restore": session.scalar(
            select(func.max(CleanupJournalRow.at)).where(CleanupJournalRow.outcome == "restored")
        ),
    }
    return {kind: at for kind, value in found.items() if (at := _aware(value)) is not None}
