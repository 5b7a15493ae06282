"""Per-tag state: digest, first seen, last pushed, last pulled, pull counts, deletion.

Updates are monotonic in event time, so events applied out of order (the registry retries,
several replicas commit concurrently) leave the same state as events applied in order.
Functions take a session and never commit.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from monitor.events import Action, Event, TargetKind, format_timestamp
from monitor.store.columns import UTCDateTime, raw_time, utc_time
from monitor.store.dialect import dialect_of, upsert
from monitor.store.pages import after_key
from monitor.store.schema import TagPullRow, TagStateRow


def _later(column: Any, value: Any) -> ColumnElement[Any]:
    """The later of a nullable column and a value."""
    return case((or_(column.is_(None), column < value), value), else_=column)


def _earlier(column: Any, value: Any) -> ColumnElement[Any]:
    return case((or_(column.is_(None), column > value), value), else_=column)


class _Statements:
    """Every write statement, built once per dialect so only parameters change per event."""

    def __init__(self, dialect: str) -> None:
        state: Any = TagStateRow.__table__
        pulls: Any = TagPullRow.__table__
        c = state.c
        t = bindparam("t", type_=UTCDateTime())

        push = upsert(dialect, state).values(
            repository=bindparam("p_repository"),
            tag=bindparam("p_tag"),
            digest=bindparam("p_digest"),
            media_type=bindparam("p_media_type"),
            first_seen_at=t,
            last_pushed_at=t,
            last_pushed_by=bindparam("p_actor"),
            pull_count=0,
        )
        newer = or_(c.last_pushed_at.is_(None), c.last_pushed_at <= t)
        # A push rebuilt from the registry's log has no digest (the log does not name what a
        # tag was pushed to): the tag keeps the digest it had until a notification tells.
        named = and_(newer, push.excluded.digest.is_not(None))
        self.push = push.on_conflict_do_update(
            index_elements=[c.repository, c.tag],
            set_={
                "digest": case((named, push.excluded.digest), else_=c.digest),
                "media_type": case((named, push.excluded.media_type), else_=c.media_type),
                "last_pushed_by": case(
                    (newer, push.excluded.last_pushed_by), else_=c.last_pushed_by
                ),
                "last_pushed_at": _later(c.last_pushed_at, t),
                "first_seen_at": _earlier(c.first_seen_at, t),
                "deleted_at": case(
                    (and_(c.deleted_at.is_not(None), c.deleted_at <= t), None),
                    else_=c.deleted_at,
                ),
            },
        )

        pull_tag = upsert(dialect, state).values(
            repository=bindparam("p_repository"),
            tag=bindparam("p_tag"),
            digest=bindparam("p_digest"),
            media_type=bindparam("p_media_type"),
            first_seen_at=t,
            last_pulled_at=t,
            pull_count=1,
        )
        self.pull_tag = pull_tag.on_conflict_do_update(
            index_elements=[c.repository, c.tag],
            set_={
                "last_pulled_at": _later(c.last_pulled_at, t),
                "pull_count": c.pull_count + 1,
                "first_seen_at": _earlier(c.first_seen_at, t),
                "digest": case((c.digest.is_(None), pull_tag.excluded.digest), else_=c.digest),
            },
        )

        live_on_digest = and_(
            c.repository == bindparam("p_repository"),
            c.digest == bindparam("p_digest"),
            c.deleted_at.is_(None),
        )
        self.tags_on_digest = select(c.tag).where(live_on_digest)
        self.pull_digest = (
            update(state)
            .where(live_on_digest)
            .values(last_pulled_at=_later(c.last_pulled_at, t), pull_count=c.pull_count + 1)
        )

        credit = upsert(dialect, pulls).values(
            repository=bindparam("p_repository"),
            tag=bindparam("p_tag"),
            http_method=bindparam("p_method"),
            client=bindparam("p_client"),
            last_pulled_at=t,
            pull_count=1,
        )
        p = pulls.c
        self.credit = credit.on_conflict_do_update(
            index_elements=[p.repository, p.tag, p.http_method, p.client],
            set_={"last_pulled_at": _later(p.last_pulled_at, t), "pull_count": p.pull_count + 1},
        )

        not_repushed = or_(c.last_pushed_at.is_(None), c.last_pushed_at <= t)
        delete_tag = upsert(dialect, state).values(
            repository=bindparam("p_repository"),
            tag=bindparam("p_tag"),
            digest=bindparam("p_digest"),
            first_seen_at=t,
            pull_count=0,
            deleted_at=t,
        )
        self.delete_tag = delete_tag.on_conflict_do_update(
            index_elements=[c.repository, c.tag],
            set_={
                "deleted_at": case(
                    (and_(c.deleted_at.is_(None), not_repushed), t), else_=c.deleted_at
                )
            },
        )
        self.delete_digest = update(state).where(live_on_digest, not_repushed).values(deleted_at=t)
        self.fill_push = (
            update(state)
            .where(
                c.repository == bindparam("p_repository"),
                c.tag == bindparam("p_tag"),
                c.last_pushed_at == t,
            )
            .values(
                digest=bindparam("p_digest"),
                media_type=func.coalesce(bindparam("p_media_type"), c.media_type),
                last_pushed_by=func.coalesce(c.last_pushed_by, bindparam("p_actor")),
            )
        )


@functools.cache
def _statements(dialect: str) -> _Statements:
    return _Statements(dialect)


def apply_events(session: Session, events: Iterable[Event]) -> None:
    """Fold new (never seen before) events into the tag state.

    Consecutive pulls by tag, and consecutive pushes by tag, go to the store together, one
    call a statement (psycopg sends them in one round trip; each row is still its own
    statement, so two pulls of one tag count twice): their statements reach the tag state in
    the events' order, and every other event's statements keep their place around them."""
    statements = _statements(dialect_of(session))
    # Core on the session's connection: these are table-level statements, the ORM adds nothing.
    connection = session.connection()
    pulls: list[Event] = []
    pushes: list[Event] = []
    for event in events:
        if event.repository is None:
            continue
        manifest = event.target_kind is TargetKind.MANIFEST
        if event.action is Action.PULL and manifest and event.tag:
            _record_tag_pushes(connection, statements, pushes)
            pushes = []
            pulls.append(event)
            continue
        pushed = event.action is Action.PUSH and manifest and bool(event.tag)
        pulled_by_digest = event.action is Action.PULL and manifest  # by tag: taken above
        if not (pushed or pulled_by_digest or event.action is Action.DELETE):
            continue
        _record_tag_pulls(connection, statements, pulls)
        pulls = []
        if pushed:
            pushes.append(event)
            continue
        _record_tag_pushes(connection, statements, pushes)
        pushes = []
        if pulled_by_digest:
            _record_digest_pull(connection, statements, event)
        else:
            _record_delete(connection, statements, event)
    _record_tag_pulls(connection, statements, pulls)
    _record_tag_pushes(connection, statements, pushes)


def fill_rebuilt_push(session: Session, rebuilt: Event, notified: Event) -> None:
    """A notification arrived for a push by tag that was rebuilt from the log: the tag takes
    the digest (and media type, and user) it names, if that push is still the tag's latest."""
    if not (
        rebuilt.action is Action.PUSH
        and rebuilt.target_kind is TargetKind.MANIFEST
        and rebuilt.tag
        and rebuilt.repository
        and notified.digest
    ):
        return
    session.execute(
        _statements(dialect_of(session)).fill_push,
        {
            "p_repository": rebuilt.repository,
            "p_tag": rebuilt.tag,
            "p_digest": notified.digest,
            "p_media_type": notified.media_type,
            "p_actor": notified.actor,
            "t": rebuilt.occurred_at,
        },
    )


def _credit(event: Event, tag: str) -> dict[str, Any]:
    """The parameters crediting `tag` with the pull `event` (by method and client)."""
    return {
        "p_repository": event.repository,
        "p_tag": tag,
        "p_method": (event.http_method or "GET")[:8],
        "p_client": event.client.value,
        "t": event.occurred_at,
    }


def _record_tag_pushes(
    connection: Connection, statements: _Statements, pushes: list[Event]
) -> None:
    """Pushes by tag: each moves its tag to its digest if it is the tag's latest push."""
    rows = [
        {"p_repository": e.repository, "p_tag": e.tag, "p_digest": e.digest,
         "p_media_type": e.media_type, "p_actor": e.actor, "t": e.occurred_at}
        for e in pushes
    ]  # fmt: skip
    if rows:
        connection.execute(statements.push, rows)


def _record_tag_pulls(connection: Connection, statements: _Statements, pulls: list[Event]) -> None:
    """Pulls by tag: each names its tag, and a tag never seen pushed is learned from it."""
    if not pulls:
        return
    connection.execute(
        statements.pull_tag,
        [
            {
                "p_repository": event.repository,
                "p_tag": event.tag,
                "p_digest": event.digest,
                "p_media_type": event.media_type,
                "t": event.occurred_at,
            }
            for event in pulls
        ],
    )
    connection.execute(statements.credit, [_credit(event, str(event.tag)) for event in pulls])


def _record_digest_pull(connection: Connection, statements: _Statements, event: Event) -> None:
    """A pull by digest credits every tag currently on that digest."""
    params = {"p_repository": event.repository, "p_digest": event.digest, "t": event.occurred_at}
    tags = list(connection.execute(statements.tags_on_digest, params).scalars())
    if not tags:
        return
    connection.execute(statements.pull_digest, params)
    connection.execute(statements.credit, [_credit(event, tag) for tag in tags])


def _record_delete(connection: Connection, statements: _Statements, event: Event) -> None:
    params = {
        "p_repository": event.repository,
        "p_tag": event.tag,
        "p_digest": event.digest,
        "t": event.occurred_at,
    }
    if event.tag:
        connection.execute(statements.delete_tag, params)
    elif event.digest and event.target_kind is TargetKind.MANIFEST:
        connection.execute(statements.delete_digest, params)


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
        return {
            "repository": self.repository,
            "tag": self.tag,
            "digest": self.digest,
            "media_type": self.media_type,
            "first_seen_at": format_timestamp(self.first_seen_at),
            "last_pushed_at": _format(self.last_pushed_at),
            "last_pushed_by": self.last_pushed_by,
            "last_pulled_at": _format(self.last_pulled_at),
            "pull_count": self.pull_count,
            "deleted_at": _format(self.deleted_at),
        }


def _format(value: datetime | None) -> str | None:
    return None if value is None else format_timestamp(value)


_STATE = TagStateRow.__table__.c
_STATE_COLUMNS = (
    _STATE.repository, _STATE.tag, _STATE.digest, _STATE.media_type,
    raw_time(_STATE.first_seen_at), raw_time(_STATE.last_pushed_at), _STATE.last_pushed_by,
    raw_time(_STATE.last_pulled_at), _STATE.pull_count, raw_time(_STATE.deleted_at),
)  # fmt: skip


def _time(value: Any) -> datetime | None:
    return None if value is None else utc_time(value)


def _tag_state(row: Sequence[Any]) -> TagState:
    repository, tag, digest, media_type, first_seen, pushed, by, pulled, pulls, deleted = row
    return TagState(
        repository, tag, digest, media_type, utc_time(first_seen), _time(pushed), by,
        _time(pulled), pulls, _time(deleted),
    )  # fmt: skip


def list_tags(
    session: Session,
    *,
    repository: str | None = None,
    include_deleted: bool = True,
    after: tuple[str, str] | None = None,
    limit: int | None = None,
) -> list[TagState]:
    """Tag states ordered by repository then tag; with `after` (a (repository, tag) key) only
    those that sort after it, and at most `limit` (a keyset page on the primary key).

    Read as plain rows with the times converted once (`raw_time`), not as ORM objects: a page
    of a thousand tags is built in a few milliseconds of Python (the GIL intake needs)."""
    query = select(*_STATE_COLUMNS).order_by(_STATE.repository, _STATE.tag)
    if repository is not None:
        query = query.where(_STATE.repository == repository)
    if not include_deleted:
        query = query.where(_STATE.deleted_at.is_(None))
    if after is not None:
        query = query.where(after_key((_STATE.repository, _STATE.tag), after))
    if limit is not None:
        query = query.limit(limit)
    return [_tag_state(row) for row in session.execute(query)]


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
