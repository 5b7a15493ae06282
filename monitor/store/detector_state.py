"""The persisted detector: its state as JSON (a core document in its row, and parts in
`detector_parts`) and the cursor (last `events.id` processed).

`lock_detector` takes the row for the rest of the transaction (SELECT … FOR UPDATE on
PostgreSQL; SQLite serialises writers from the first write), so one detection pass runs at a
time across replicas. Functions take a session and never commit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from monitor.store.columns import raw_time, utc_time
from monitor.store.dialect import dialect_of, upsert
from monitor.store.events import EVENTS, StoredEvent
from monitor.store.judged import JUDGED_COLUMNS, judged_event
from monitor.store.schema import DetectorPartRow, DetectorStateRow, EventRow

DEFAULT_DETECTOR = "default"
PARTS_A_STATEMENT = 256
"""Parts written or deleted by one statement (SQLite takes at most 32,766 parameters)."""


@dataclasses.dataclass(frozen=True, slots=True)
class SavedDetector:
    state: str | None
    cursor: int
    updated_at: datetime


def read_detector(session: Session, name: str, *, now: datetime) -> SavedDetector:
    """The saved state of detector `name` without locking it (empty when missing)."""
    row = session.get(DetectorStateRow, name)
    if row is None:
        return SavedDetector(state=None, cursor=0, updated_at=now)
    return SavedDetector(state=row.state, cursor=row.cursor, updated_at=row.updated_at)


def _create_missing(session: Session, name: str, *, now: datetime) -> None:
    """Detector `name`'s row, created empty unless it exists."""
    session.execute(
        upsert(dialect_of(session), DetectorStateRow)
        .values(name=name, state=None, cursor=0, updated_at=now)
        .on_conflict_do_nothing(index_elements=[DetectorStateRow.name])
    )


def lock_detector(session: Session, name: str, *, now: datetime) -> SavedDetector:
    """The saved state of detector `name` (created empty when missing), locked until commit."""
    _create_missing(session, name, now=now)
    row = session.scalars(
        select(DetectorStateRow)
        .where(DetectorStateRow.name == name)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    return SavedDetector(state=row.state, cursor=row.cursor, updated_at=row.updated_at)


def detector_position(session: Session, name: str) -> tuple[int, datetime] | None:
    """Detector `name`'s cursor and when it was last saved, without reading its state (None
    when missing)."""
    row = session.execute(
        select(DetectorStateRow.cursor, DetectorStateRow.updated_at).where(
            DetectorStateRow.name == name
        )
    ).first()
    return None if row is None else (row[0], row[1])


def lock_detector_position(session: Session, name: str, *, now: datetime) -> tuple[int, datetime]:
    """`lock_detector` without reading the state: the cursor and when it was last saved."""
    _create_missing(session, name, now=now)
    row = session.execute(
        select(DetectorStateRow.cursor, DetectorStateRow.updated_at)
        .where(DetectorStateRow.name == name)
        .with_for_update()
    ).one()
    return row[0], row[1]


def save_detector(session: Session, name: str, *, state: str, cursor: int, now: datetime) -> None:
    """Saves detector `name`, whose row `lock_detector` or `lock_detector_position` holds in
    this transaction, without reading back the state it replaces (megabytes on a busy
    registry)."""
    session.execute(
        update(DetectorStateRow)
        .where(DetectorStateRow.name == name)
        .values(state=state, cursor=cursor, updated_at=now)
    )


def read_parts(session: Session, name: str) -> dict[str, str]:
    """The parts of detector `name`'s state, by key."""
    rows = session.execute(
        select(DetectorPartRow.part, DetectorPartRow.body).where(DetectorPartRow.name == name)
    )
    return {part: body for part, body in rows}


def save_parts(
    session: Session, name: str, *, changed: Mapping[str, str], removed: Collection[str]
) -> None:
    """Writes the `changed` parts of detector `name`'s state (key → body) and deletes the
    `removed` ones, in the transaction that holds its row."""
    items = list(changed.items())
    for start in range(0, len(items), PARTS_A_STATEMENT):
        statement = upsert(dialect_of(session), DetectorPartRow).values(
            [
                {"name": name, "part": part, "body": body}
                for part, body in items[start : start + PARTS_A_STATEMENT]
            ]
        )
        session.execute(
            statement.on_conflict_do_update(
                index_elements=[DetectorPartRow.name, DetectorPartRow.part],
                set_={"body": statement.excluded.body},
            )
        )
    keys = list(removed)
    for start in range(0, len(keys), PARTS_A_STATEMENT):
        session.execute(
            delete(DetectorPartRow).where(
                DetectorPartRow.name == name,
                DetectorPartRow.part.in_(keys[start : start + PARTS_A_STATEMENT]),
            )
        )


def events_after(
    session: Session, cursor: int, *, received_before: datetime, limit: int
) -> list[StoredEvent]:
    """Events with id > `cursor`, ascending, stopping before the first one received after
    `received_before` (a newer row may still be committing below it), at most `limit`.

    Only the fields detection reads (`EVENT_FIELDS`) are loaded; the others keep their
    defaults."""
    key = EVENTS.c.id
    rows = session.execute(
        select(key, raw_time(EVENTS.c.received_at), *JUDGED_COLUMNS)
        .where(key > cursor)
        .order_by(key.asc())
        .limit(limit)
    ).all()  # fetched at once: row by row costs more than the batch's memory
    out: list[StoredEvent] = []
    for row_id, raw_received_at, *values in rows:
        received_at = utc_time(raw_received_at)
        if received_at > received_before:
            break
        out.append(StoredEvent(row_id, judged_event(values), received_at))
    return out


def oldest_unjudged(session: Session, name: str = DEFAULT_DETECTOR) -> datetime | None:
    """When the oldest event the detector has not processed yet was received (None when it is
    caught up): its cursor row and one primary-key lookup, whatever the store's size."""
    cursor = session.scalar(select(DetectorStateRow.cursor).where(DetectorStateRow.name == name))
    return session.scalar(
        select(EventRow.received_at)
        .where(EventRow.id > (cursor or 0))
        .order_by(EventRow.id.asc())
        .limit(1)
    )
