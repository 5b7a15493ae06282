"""Event rows: idempotent insert, filtered queries with keyset pagination, expiry in batches.

Functions take a session and never commit.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Row, Table, and_, bindparam, delete, or_, select
from sqlalchemy.orm import Session

from monitor.events import Action, Client, Event, Source, TargetKind, format_timestamp
from monitor.ingest.requestlog import event_match_key
from monitor.store.dialect import in_list_chunks
from monitor.store.event_insert import event_row, insert_new_rows
from monitor.store.pages import SCAN_ROWS, fetch_page, fetch_scanned_page, matching
from monitor.store.rollups import count_inserted, forget_sources_before
from monitor.store.schema import EventRow
from monitor.store.tags import fill_rebuilt_push


def insert_events(
    session: Session,
    events: Sequence[Event],
    *,
    received_at: datetime,
    received: Mapping[str, datetime] | None = None,
) -> list[Event]:
    """Insert the events not stored yet; return exactly those (deduplicated on `event_id`).

    Each is stored as received at `received_at`, or at `received[event_id]` when given (the
    time intake accepted the body the event came in)."""
    unique: dict[str, Event] = {}
    for event in events:
        unique.setdefault(event.event_id, event)
    if not unique:
        return []
    for merged in merge_late_notifications(session, list(unique.values())):
        del unique[merged]
    if not unique:
        return []
    if received:
        rows = [event_row(e, received.get(e.event_id, received_at)) for e in unique.values()]
    else:
        rows = [event_row(e, received_at) for e in unique.values()]
    inserted = insert_new_rows(session, rows)
    out = [e for e in unique.values() if e.event_id in inserted]
    count_inserted(session, out)
    return out


@functools.cache
def _rebuilt_probe(size: int) -> Any:
    """Whether any of `size` request ids has a rebuilt event: one indexed lookup, built once
    per size (see `in_list_size`)."""
    table = EventRow.__table__
    assert isinstance(table, Table)
    return (
        select(table.c.id)
        .where(
            table.c.request_id.in_([bindparam(f"r{n}") for n in range(size)]),
            table.c.reconstructed.is_(True),
        )
        .limit(1)
    )


def merge_late_notifications(session: Session, events: Sequence[Event]) -> list[str]:
    """Fold notifications whose event was already rebuilt from the log into that event.

    The rebuilt row takes the notification's `event_id` (so a re-delivery is a duplicate) and
    what only the notification knows (media type, size, digest, references, instance). Returns
    the event ids merged. One indexed lookup by request id for the whole batch; the rebuilt
    rows are only loaded when there is one (rarely: most notifications arrive).
    """
    wanted = {
        e.request_id: e
        for e in events
        if e.source is Source.NOTIFICATION and e.request_id is not None
    }
    if not wanted:
        return []
    connection = session.connection()
    if not any(
        connection.execute(_rebuilt_probe(size), params).first() is not None
        for size, params in in_list_chunks("r", list(wanted))
    ):
        return []
    rows = list(
        session.scalars(
            select(EventRow).where(
                EventRow.request_id.in_(list(wanted)), EventRow.reconstructed.is_(True)
            )
        )
    )
    if not rows:
        return []
    taken = {row.event_id for row in rows}
    open_rows = {(row.request_id, event_match_key(_event(row).event)): row for row in rows}
    merged: list[str] = []
    for event in events:
        if event.source is not Source.NOTIFICATION or event.event_id in taken:
            continue
        row = open_rows.get((event.request_id, event_match_key(event)))
        if row is None or not row.event_id.startswith("log:"):
            continue
        fill_rebuilt_push(session, _event(row).event, event)
        row.event_id = event.event_id
        row.media_type = row.media_type or event.media_type
        row.size = row.size if row.size is not None else event.size
        row.digest = event.digest or row.digest  # the notification knows; a rebuilt pull guessed
        row.actor = row.actor or event.actor
        row.instance = row.instance or event.instance
        if event.references and not row.references:
            row.references = orjson.dumps(list(event.references)).decode()
        taken.add(event.event_id)
        merged.append(event.event_id)
    session.flush()
    return merged


@dataclasses.dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int
    event: Event
    received_at: datetime

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id}
        out.update(self.event.to_dict())
        out["received_at"] = format_timestamp(self.received_at)
        return out


def _event(row: EventRow | Row[Any]) -> StoredEvent:
    return StoredEvent(
        id=row.id,
        received_at=row.received_at,
        event=Event(
            event_id=row.event_id,
            source=Source(row.source),
            action=Action(row.action),
            occurred_at=row.occurred_at,
            target_kind=TargetKind(row.target_kind) if row.target_kind else None,
            repository=row.repository,
            tag=row.tag,
            digest=row.digest,
            media_type=row.media_type,
            size=row.size,
            from_repository=row.from_repository,
            actor=row.actor,
            remote_ip=row.remote_ip,
            user_agent=row.user_agent,
            http_method=row.http_method,
            http_status=row.http_status,
            request_id=row.request_id,
            request_uri=row.request_uri,
            client=Client(row.client),
            route=row.route,
            instance=row.instance,
            references=tuple(orjson.loads(row.references)) if row.references else (),
            detail=row.detail,
            reconstructed=row.reconstructed,
        ),
    )


EVENTS = EventRow.__table__
assert isinstance(EVENTS, Table)


def stored_event(row: EventRow | Row[Any]) -> StoredEvent:
    """The stored event of one `events` row (an ORM object or a row of its columns)."""
    return _event(row)


@dataclasses.dataclass(frozen=True, slots=True)
class EventFilter:
    """What `GET /v1/events` and `registry-monitor events` filter on; None means any."""

    action: str | None = None
    repository: str | None = None
    tag: str | None = None
    actor: str | None = None
    remote_ip: str | None = None
    source: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    reconstructed: bool | None = None


_EQUAL = ("action", "repository", "tag", "actor", "remote_ip", "source", "reconstructed")
_INDEXED = ("actor", "remote_ip", "repository", "action")
"""Filters an index serves (each leads one with `occurred_at`), the likeliest narrowest first."""


def query_events(
    session: Session,
    *,
    where: EventFilter,
    limit: int,
    cursor: str | None = None,
    ascending: bool = False,
    scan_rows: int = SCAN_ROWS,
) -> tuple[list[StoredEvent], str | None]:
    """A page of events, newest first (or oldest first), and the cursor of the next page.

    The filters one index serves (the first of `_INDEXED` given, and the time range) select the
    rows; any other filter is checked on at most `scan_rows` of them, so a page whose filter
    matches rarely ends early (monitor.store.pages.SCAN_ROWS) instead of walking the table."""
    row = EventRow
    given = [name for name in _EQUAL if getattr(where, name) is not None]
    lead = next((name for name in _INDEXED if name in given), None)
    rest = [name for name in given if name != lead]
    if not rest:
        query = matching(select(row), row, where, equal=_EQUAL, time=row.occurred_at)
        rows, next_cursor = fetch_page(
            session,
            query,
            time=row.occurred_at,
            key=row.id,
            limit=limit,
            cursor=cursor,
            ascending=ascending,
        )
        return [_event(r) for r in rows], next_cursor
    wanted = tuple(getattr(where, name) for name in rest)
    window = matching(
        select(row.id, row.occurred_at, *(getattr(row, name) for name in rest)),
        row,
        where,
        equal=() if lead is None else (lead,),
        time=row.occurred_at,
    )
    ids, next_cursor = fetch_scanned_page(
        session,
        window,
        lambda values: tuple(values[2:]) == wanted,
        time=row.occurred_at,
        key=row.id,
        limit=limit,
        cursor=cursor,
        ascending=ascending,
        scan_rows=scan_rows,
    )
    found = {r.id: r for r in session.scalars(select(row).where(row.id.in_(ids)))} if ids else {}
    return [_event(found[i]) for i in ids if i in found], next_cursor


EXPIRE_BATCH = 500

ExpiryKey = tuple[datetime, int]  # (occurred_at, id) of the newest event a batch deleted


def expire_events(session: Session, *, older_than: datetime, limit: int = EXPIRE_BATCH) -> int:
    """Delete up to `limit` of the oldest raw events that occurred before `older_than`; tag
    state and the daily roll-ups (counted at insert) are kept. Returns the number deleted:
    fewer than `limit` means none is left."""
    return expire_event_batch(session, older_than=older_than, limit=limit)[0]


def expire_event_batch(
    session: Session,
    *,
    older_than: datetime,
    limit: int = EXPIRE_BATCH,
    after: ExpiryKey | None = None,
) -> tuple[int, ExpiryKey | None]:
    """One batch of expiry: up to `limit` of the oldest events before `older_than`, and only
    those whose (occurred_at, id) sorts after `after` (the key the previous batch returned).
    Returns the number deleted and the key to pass to the next batch.

    Each call is one short transaction's work on a keyset range of the (occurred_at, id)
    index. Starting after the previous batch matters on PostgreSQL: the rows a batch deletes
    stay in the index until vacuumed, and while other transactions' snapshots keep them
    visible, every scan from the index's start walks them again, so each batch would cost
    more than the last."""
    row = EventRow
    due = row.occurred_at < older_than
    if after is not None:
        at, last_id = after
        due = and_(due, row.occurred_at >= at, or_(row.occurred_at > at, row.id > last_id))
    boundary = session.execute(
        select(row.occurred_at, row.id)
        .where(due)
        .order_by(row.occurred_at, row.id)
        .offset(limit - 1)
        .limit(1)
    ).first()
    if boundary is not None:
        at, last_id = boundary
        due = and_(due, row.occurred_at <= at, or_(row.occurred_at < at, row.id <= last_id))
    forget_sources_before(session, older_than)
    result = session.execute(delete(row).where(due).execution_options(synchronize_session=False))
    removed = int(getattr(result, "rowcount", 0) or 0)
    return removed, (at, last_id) if boundary is not None else None
