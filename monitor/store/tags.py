"""Per-tag state: digest, first seen, last pushed, last pulled, pull counts, deletion.

Updates are monotonic in event time, so events applied out of order (the registry retries,
several replicas commit concurrently) leave the same state as events applied in order.
Functions take a session and never commit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from monitor.events import Action, Event, TargetKind
from monitor.store.schema import TagPullRow, TagStateRow


def _insert(session: Session, table: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _later(column: Any, value: Any) -> ColumnElement[Any]:
    """The later of a nullable column and a value."""
    return case((or_(column.is_(None), column < value), value), else_=column)


def _earlier(column: Any, value: Any) -> ColumnElement[Any]:
    return case((or_(column.is_(None), column > value), value), else_=column)


def apply_events(session: Session, events: Iterable[Event]) -> None:
    """Fold new (never seen before) events into the tag state."""
    for event in events:
        if event.repository is None:
            continue
        if event.action is Action.PUSH and event.target_kind is TargetKind.MANIFEST and event.tag:
            _record_push(session, event)
        elif event.action is Action.PULL and event.target_kind is TargetKind.MANIFEST:
            _record_pull(session, event)
        elif event.action is Action.DELETE:
            _record_delete(session, event)


def _record_push(session: Session, event: Event) -> None:
    t = event.occurred_at
    table = TagStateRow.__table__
    stmt = _insert(session, table).values(
        repository=event.repository,
        tag=event.tag,
        digest=event.digest,
        media_type=event.media_type,
        first_seen_at=t,
        last_pushed_at=t,
        last_pushed_by=event.actor,
        pull_count=0,
    )
    current = table.c
    newer = or_(current.last_pushed_at.is_(None), current.last_pushed_at <= t)
    stmt = stmt.on_conflict_do_update(
        index_elements=[current.repository, current.tag],
        set_={
            "digest": case((newer, stmt.excluded.digest), else_=current.digest),
            "media_type": case((newer, stmt.excluded.media_type), else_=current.media_type),
            "last_pushed_by": case(
                (newer, stmt.excluded.last_pushed_by), else_=current.last_pushed_by
            ),
            "last_pushed_at": _later(current.last_pushed_at, t),
            "first_seen_at": _earlier(current.first_seen_at, t),
            "deleted_at": case(
                (and_(current.deleted_at.is_not(None), current.deleted_at <= t), None),
                else_=current.deleted_at,
            ),
        },
    )
    session.execute(stmt)


def _credit_pull(session: Session, repository: str, tag: str, event: Event) -> None:
    t = event.occurred_at
    table = TagPullRow.__table__
    stmt = _insert(session, table).values(
        repository=repository,
        tag=tag,
        http_method=(event.http_method or "GET")[:8],
        client=event.client.value,
        last_pulled_at=t,
        pull_count=1,
    )
    c = table.c
    stmt = stmt.on_conflict_do_update(
        index_elements=[c.repository, c.tag, c.http_method, c.client],
        set_={"last_pulled_at": _later(c.last_pulled_at, t), "pull_count": c.pull_count + 1},
    )
    session.execute(stmt)


def _record_pull(session: Session, event: Event) -> None:
    t = event.occurred_at
    c = TagStateRow.__table__.c
    tags: Sequence[str]
    if event.tag:
        # A pull by tag names the tag; a tag we never saw pushed is learned from it.
        table = TagStateRow.__table__
        stmt = _insert(session, table).values(
            repository=event.repository,
            tag=event.tag,
            digest=event.digest,
            media_type=event.media_type,
            first_seen_at=t,
            last_pulled_at=t,
            pull_count=1,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[c.repository, c.tag],
            set_={
                "last_pulled_at": _later(c.last_pulled_at, t),
                "pull_count": c.pull_count + 1,
                "first_seen_at": _earlier(c.first_seen_at, t),
                "digest": case((c.digest.is_(None), stmt.excluded.digest), else_=c.digest),
            },
        )
        session.execute(stmt)
        tags = [event.tag]
    else:
        # A pull by digest credits every tag currently on that digest.
        live = and_(
            c.repository == event.repository, c.digest == event.digest, c.deleted_at.is_(None)
        )
        tags = list(session.scalars(select(TagStateRow.tag).where(live)))
        if not tags:
            return
        session.execute(
            update(TagStateRow)
            .where(live)
            .values(last_pulled_at=_later(c.last_pulled_at, t), pull_count=c.pull_count + 1)
        )
    for tag in tags:
        _credit_pull(session, event.repository or "", tag, event)


def _record_delete(session: Session, event: Event) -> None:
    t = event.occurred_at
    c = TagStateRow.__table__.c
    not_repushed = or_(c.last_pushed_at.is_(None), c.last_pushed_at <= t)
    if event.tag:
        table = TagStateRow.__table__
        stmt = _insert(session, table).values(
            repository=event.repository,
            tag=event.tag,
            digest=event.digest,
            first_seen_at=t,
            pull_count=0,
            deleted_at=t,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[c.repository, c.tag],
            set_={
                "deleted_at": case(
                    (and_(c.deleted_at.is_(None), not_repushed), t), else_=c.deleted_at
                )
            },
        )
        session.execute(stmt)
    elif event.digest and event.target_kind is TargetKind.MANIFEST:
        session.execute(
            update(TagStateRow)
            .where(
                c.repository == event.repository,
                c.digest == event.digest,
                c.deleted_at.is_(None),
                not_repushed,
            )
            .values(deleted_at=t)
        )


@dataclasses.dataclass(frozen=True, slots=True)
class TagState:
    repository: str
    tag: str
    digest: str | None
    media_type: str | None
    first_seen_at: datetime
    last_pushed_at: datetime | None
    last_pushed_by: str | None
    last_pulled_at: datetime | None
    pull_count: int
    deleted_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, datetime):
                value = value.isoformat().replace("+00:00", "Z")
            out[field.name] = value
        return out


def _state(row: TagStateRow) -> TagState:
    return TagState(
        repository=row.repository,
        tag=row.tag,
        digest=row.digest,
        media_type=row.media_type,
        first_seen_at=row.first_seen_at,
        last_pushed_at=row.last_pushed_at,
        last_pushed_by=row.last_pushed_by,
        last_pulled_at=row.last_pulled_at,
        pull_count=row.pull_count,
        deleted_at=row.deleted_at,
    )


def list_tags(
    session: Session, *, repository: str | None = None, include_deleted: bool = True
) -> list[TagState]:
    """Tag states, ordered by repository then tag."""
    query = select(TagStateRow).order_by(TagStateRow.repository, TagStateRow.tag)
    if repository is not None:
        query = query.where(TagStateRow.repository == repository)
    if not include_deleted:
        query = query.where(TagStateRow.deleted_at.is_(None))
    return [_state(row) for row in session.scalars(query)]


@dataclasses.dataclass(frozen=True, slots=True)
class TagPulls:
    repository: str
    tag: str
    http_method: str
    client: str
    last_pulled_at: datetime
    pull_count: int


def list_tag_pulls(session: Session, *, repository: str | None = None) -> list[TagPulls]:
    query = select(TagPullRow).order_by(TagPullRow.repository, TagPullRow.tag)
    if repository is not None:
        query = query.where(TagPullRow.repository == repository)
    return [
        TagPulls(r.repository, r.tag, r.http_method, r.client, r.last_pulled_at, r.pull_count)
        for r in session.scalars(query)
    ]
