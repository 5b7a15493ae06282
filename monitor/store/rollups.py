"""Daily roll-ups and the newest event per source, both kept as events are inserted.

`count_inserted` runs in the transaction that inserts events: it adds them to `event_rollups`
(events per UTC day, repository, action and client class) and raises the newest `occurred_at`
of their source in `event_sources`. Reports and scrapes then read these small rows instead of
aggregating raw events, and the counts survive the expiry of raw events unchanged. Functions
take a session and never commit.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import Counter
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from monitor.events import Event
from monitor.store.dialect import dialect_of, upsert
from monitor.store.pages import after_key
from monitor.store.schema import EventRollupRow, EventSourceRow


@dataclasses.dataclass(frozen=True, slots=True)
class DailyCount:
    day: date
    repository: str
    action: str
    client: str
    count: int

    @property
    def key(self) -> RollupKey:
        return (self.day, self.repository, self.action, self.client)

    def to_dict(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "repository": self.repository or None,
            "action": self.action,
            "client": self.client,
            "count": self.count,
        }


RollupKey = tuple[date, str, str, str]


def rollup_key(event: Event) -> RollupKey:
    """The roll-up an event counts in: its UTC day, repository ('' for none), action, client."""
    return (
        event.occurred_at.date(),
        event.repository or "",
        event.action.value,
        event.client.value,
    )


@functools.cache
def _statements(dialect: str) -> tuple[Any, Any]:
    """The roll-up and newest-per-source upserts, built once per dialect (intake runs them
    in every commit)."""
    table: Any = EventRollupRow.__table__
    stmt = upsert(dialect, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.day, table.c.repository, table.c.action, table.c.client],
        set_={"count": table.c.count + stmt.excluded.count},
    )
    sources: Any = EventSourceRow.__table__
    newer = upsert(dialect, sources)
    greatest = func.greatest if dialect == "postgresql" else func.max
    newer = newer.on_conflict_do_update(
        index_elements=[sources.c.source],
        set_={
            "newest_occurred_at": greatest(
                sources.c.newest_occurred_at, newer.excluded.newest_occurred_at
            )
        },
    )
    return stmt, newer


def count_inserted(session: Session, events: Iterable[Event]) -> None:
    """Add newly inserted events to the daily roll-ups and to the newest event per source."""
    per_key: Counter[RollupKey] = Counter()
    newest: dict[str, datetime] = {}
    for event in events:
        per_key[rollup_key(event)] += 1
        source = event.source.value
        if source not in newest or event.occurred_at > newest[source]:
            newest[source] = event.occurred_at
    if not per_key:
        return
    stmt, newer = _statements(dialect_of(session))
    # Sorted, so concurrent writers (replicas on PostgreSQL) lock rows in the same order.
    rows = [
        {"day": d, "repository": r, "action": a, "client": c, "count": n}
        for (d, r, a, c), n in sorted(per_key.items())
    ]
    connection = session.connection()  # Core: table-level upserts, nothing for the ORM to do
    connection.execute(stmt, rows)
    connection.execute(
        newer,
        [{"source": s, "newest_occurred_at": at} for s, at in sorted(newest.items())],
    )


def forget_sources_before(session: Session, cut: datetime) -> None:
    """Drop sources whose newest event occurred before `cut` (all their events expired)."""
    session.execute(delete(EventSourceRow).where(EventSourceRow.newest_occurred_at < cut))


def newest_per_source(session: Session) -> dict[str, datetime]:
    """The newest `occurred_at` per source that has events (a handful of maintained rows)."""
    rows = session.execute(select(EventSourceRow.source, EventSourceRow.newest_occurred_at))
    return {str(source): newest for source, newest in rows}


def daily_counts(
    session: Session,
    *,
    since: date,
    until: date,
    repository: str | None = None,
    after: RollupKey | None = None,
    limit: int | None = None,
) -> list[DailyCount]:
    """Counts per day in [since, until), read from the roll-ups only, in (day, repository,
    action, client) order; with `after` only those whose key sorts after it, and at most
    `limit` of them (a keyset page on the primary key). Plain rows, not ORM objects: a page
    is built in a few milliseconds of Python."""
    row = EventRollupRow.__table__.c
    key = (row.day, row.repository, row.action, row.client)
    query = select(*key, row.count).where(row.day >= since, row.day < until)
    if repository is not None:
        query = query.where(row.repository == repository)
    if after is not None:
        query = query.where(after_key(key, after))
    if limit is not None:
        query = query.limit(limit)
    query = query.order_by(*key)
    return [DailyCount(*r) for r in session.execute(query)]
