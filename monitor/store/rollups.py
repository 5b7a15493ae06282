"""Daily roll-ups: events counted per UTC day, repository, action and client class.

Raw events expire (`retention.events_days`); before they are deleted their counts are folded
into `event_rollups`, so long-term activity per repository survives. `daily_counts` answers
from both: roll-ups for expired days, the events themselves for the rest. Functions take a
session and never commit.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Date, cast, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from monitor.store.schema import EventRollupRow, EventRow


@dataclasses.dataclass(frozen=True, slots=True)
class DailyCount:
    day: date
    repository: str
    action: str
    client: str
    count: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "repository": self.repository or None,
            "action": self.action,
            "client": self.client,
            "count": self.count,
        }


def _utc_day(session: Session) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.timezone("UTC", EventRow.occurred_at), Date)
    return func.date(EventRow.occurred_at)  # SQLite keeps naive UTC text


def _aggregate(
    session: Session, *, since: datetime | None, until: datetime, repository: str | None
) -> list[DailyCount]:
    day = _utc_day(session).label("day")
    repo = func.coalesce(EventRow.repository, "").label("repository")
    query = select(day, repo, EventRow.action, EventRow.client, func.count()).where(
        EventRow.occurred_at < until
    )
    if since is not None:
        query = query.where(EventRow.occurred_at >= since)
    if repository is not None:
        query = query.where(EventRow.repository == repository)
    query = query.group_by(day, repo, EventRow.action, EventRow.client)
    out = []
    for day_value, repository_value, action, client, count in session.execute(query):
        if isinstance(day_value, str):
            day_value = date.fromisoformat(day_value)
        out.append(DailyCount(day_value, repository_value, action, client, int(count)))
    return out


def roll_up(session: Session, *, before: datetime) -> int:
    """Add the counts of events that occurred before `before` to the roll-ups; returns rows."""
    counts = _aggregate(session, since=None, until=before, repository=None)
    if not counts:
        return 0
    table: Any = EventRollupRow.__table__
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.day, table.c.repository, table.c.action, table.c.client],
        set_={"count": table.c.count + stmt.excluded.count},
    )
    session.execute(stmt, [dataclasses.asdict(c) for c in counts])
    return len(counts)


def daily_counts(
    session: Session,
    *,
    since: date,
    until: date,
    repository: str | None = None,
) -> list[DailyCount]:
    """Counts per day in [since, until), from roll-ups and from events not yet expired."""
    merged: dict[tuple[date, str, str, str], int] = defaultdict(int)
    query = select(EventRollupRow).where(EventRollupRow.day >= since, EventRollupRow.day < until)
    if repository is not None:
        query = query.where(EventRollupRow.repository == repository)
    for row in session.scalars(query):
        merged[(row.day, row.repository, row.action, row.client)] += row.count
    start = datetime(since.year, since.month, since.day, tzinfo=UTC)
    end = datetime(until.year, until.month, until.day, tzinfo=UTC)
    for count in _aggregate(session, since=start, until=end, repository=repository):
        merged[(count.day, count.repository, count.action, count.client)] += count.count
    return [DailyCount(*key, value) for key, value in sorted(merged.items())]
