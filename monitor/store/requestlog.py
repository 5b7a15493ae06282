"""Request records read from registry logs, matched by request id against notifications.

Functions take a session and never commit. Recording a request is one insert that ignores a
request already kept (replaying a log adds nothing). The reconcile pass reads requests still
`pending` once they are older than the settle time, looks up the events stored for each request
id (an index), and plans the events no notification delivered.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from monitor.events import Action, Event, TargetKind
from monitor.ingest.requestlog import RegistryStart, RequestRecord, missing_events
from monitor.store.events import stored_event
from monitor.store.pages import fetch_page
from monitor.store.schema import EventRow, LogRequestRow, RegistryInstanceRow, TagStateRow

PENDING, MATCHED, RECONSTRUCTED = "pending", "matched", "reconstructed"
RECONCILE_BATCH = 500


@functools.cache
def _insert_ignore(dialect: str, table: Any, key: str) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing(index_elements=[table.c[key]])


def _table(row: Any) -> Table:
    table = row.__table__
    assert isinstance(table, Table)
    return table


def record_requests(session: Session, records: Sequence[RequestRecord]) -> None:
    """Keep `records` as pending (a request id already kept is left as it is)."""
    if not records:
        return
    stmt = _insert_ignore(session.get_bind().dialect.name, _table(LogRequestRow), "request_id")
    values = {}
    for r in records:
        values[r.request_id] = {
            "request_id": r.request_id,
            "state": PENDING,
            "occurred_at": r.occurred_at,
            "action": r.action.value,
            "target_kind": r.target_kind.value,
            "repository": r.repository,
            "tag": r.tag,
            "digest": r.digest,
            "from_repository": r.from_repository,
            "actor": r.actor,
            "remote_ip": r.remote_ip,
            "user_agent": r.user_agent,
            "http_method": r.http_method,
            "http_status": r.http_status,
            "request_uri": r.request_uri,
            "instance": r.instance,
            "reconstructed_events": 0,
        }
    session.execute(stmt, list(values.values()))


def record_starts(session: Session, starts: Sequence[RegistryStart]) -> None:
    """Keep the registry starts seen (an instance id already kept is left as it is)."""
    if not starts:
        return
    stmt = _insert_ignore(session.get_bind().dialect.name, _table(RegistryInstanceRow), "instance")
    session.execute(
        stmt,
        [
            {"instance": s.instance, "started_at": s.started_at, "version": s.version}
            for s in {s.instance: s for s in starts}.values()
        ],
    )


def list_registry_starts(
    session: Session, *, limit: int, cursor: str | None = None
) -> tuple[list[RegistryStart], str | None]:
    """The registry starts recorded, newest first, a page of `limit` after `cursor`."""
    row = RegistryInstanceRow
    rows, next_cursor = fetch_page(
        session, select(row), time=row.started_at, key=row.instance, limit=limit, cursor=cursor
    )
    starts = [RegistryStart(r.instance, r.started_at, r.version) for r in rows]
    return starts, next_cursor


def registry_start_summary(session: Session) -> tuple[int, datetime | None]:
    """How many registry starts are recorded, and when the newest was (a table with one row
    per registry process)."""
    row = RegistryInstanceRow
    count, newest = session.execute(select(func.count(), func.max(row.started_at))).one()
    return int(count or 0), newest


def _record(row: LogRequestRow) -> RequestRecord:
    return RequestRecord(
        request_id=row.request_id,
        occurred_at=row.occurred_at,
        action=Action(row.action),
        target_kind=TargetKind(row.target_kind),
        repository=row.repository,
        http_method=row.http_method,
        http_status=row.http_status,
        tag=row.tag,
        digest=row.digest,
        from_repository=row.from_repository,
        actor=row.actor,
        remote_ip=row.remote_ip,
        user_agent=row.user_agent,
        request_uri=row.request_uri,
        instance=row.instance,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class ReconcilePlan:
    """What one reconcile batch found: the events to add and the new state of each request."""

    events: list[Event]
    states: dict[str, tuple[str, int]]  # request id → (state, events reconstructed)
    examined: int
    last: tuple[datetime, str] | None  # where the next batch starts

    @property
    def matched(self) -> int:
        return sum(1 for state, _ in self.states.values() if state == MATCHED)


def _tags_on_digest(session: Session, record: RequestRecord) -> list[str]:
    """The tags a delete by digest removed: those whose last push or pull (with a digest)
    before the delete named this digest, with no tag delete after it. Read from the
    repository's stored events before the delete (an index on repository and time); a tag
    those events do not mention (its history expired with the raw events) is taken from the
    per-tag state: on this digest, first seen before the delete, not pushed again since, and
    not deleted before it."""
    row = EventRow
    query = (
        select(row.tag, row.action, row.digest)
        .where(
            row.repository == record.repository,
            row.occurred_at <= record.occurred_at,
            row.tag.is_not(None),
            or_(row.request_id.is_(None), row.request_id != record.request_id),
            or_(
                and_(
                    row.action.in_((Action.PUSH.value, Action.PULL.value)),
                    row.target_kind == TargetKind.MANIFEST.value,
                    row.digest.is_not(None),
                ),
                and_(row.action == Action.DELETE.value, row.target_kind == TargetKind.TAG.value),
            ),
        )
        .order_by(row.occurred_at, row.id)
    )
    on: dict[str, str | None] = {}
    for tag, action, digest in session.execute(query):
        if tag is not None:
            on[tag] = None if action == Action.DELETE.value else digest
    tags = {tag for tag, digest in on.items() if digest == record.digest}
    state = TagStateRow
    kept = select(state.tag).where(
        state.repository == record.repository,
        state.digest == record.digest,
        state.first_seen_at <= record.occurred_at,
        or_(state.last_pushed_at.is_(None), state.last_pushed_at <= record.occurred_at),
        or_(state.deleted_at.is_(None), state.deleted_at >= record.occurred_at),
    )
    tags.update(tag for tag in session.scalars(kept) if tag not in on)
    return sorted(tags)


def _digest_of_tag(session: Session, record: RequestRecord) -> str | None:
    """The digest the tag a request pulled was on, from the newest stored event before it that
    tells: a push by tag (None when it was rebuilt from the log, which names no digest), a pull
    by tag naming a digest, or the tag's delete (None). None when nothing tells."""
    row = EventRow
    query = (
        select(row.action, row.digest)
        .where(
            row.repository == record.repository,
            row.tag == record.tag,
            row.occurred_at <= record.occurred_at,
            or_(row.request_id.is_(None), row.request_id != record.request_id),
            or_(
                and_(row.action == Action.PUSH.value, row.target_kind == TargetKind.MANIFEST.value),
                and_(
                    row.action == Action.PULL.value,
                    row.target_kind == TargetKind.MANIFEST.value,
                    row.digest.is_not(None),
                ),
                and_(row.action == Action.DELETE.value, row.target_kind == TargetKind.TAG.value),
            ),
        )
        .order_by(row.occurred_at.desc(), row.id.desc())
        .limit(1)
    )
    newest = session.execute(query).first()
    if newest is None or newest.action == Action.DELETE.value:
        return None
    digest: str | None = newest.digest
    return digest


def plan_reconcile(
    session: Session,
    *,
    settled_before: datetime,
    since: datetime | None = None,
    until: datetime | None = None,
    pending_only: bool = True,
    after: tuple[datetime, str] | None = None,
    limit: int = RECONCILE_BATCH,
) -> ReconcilePlan:
    """Plan one batch: requests before `settled_before` (and in [since, until)), oldest first.

    `pending_only=False` examines settled requests too (a backfill); what a notification or an
    earlier pass already stored is never planned again.
    """
    row = LogRequestRow
    query = select(row).where(row.occurred_at < settled_before)
    if pending_only:
        query = query.where(row.state == PENDING)
    if since is not None:
        query = query.where(row.occurred_at >= since)
    if until is not None:
        query = query.where(row.occurred_at < until)
    if after is not None:
        at, request_id = after
        query = query.where(
            or_(row.occurred_at > at, and_(row.occurred_at == at, row.request_id > request_id))
        )
    rows = list(session.scalars(query.order_by(row.occurred_at, row.request_id).limit(limit)))
    if not rows:
        return ReconcilePlan([], {}, 0, None)
    stored: dict[str, list[Event]] = {}
    for event_row in session.scalars(
        select(EventRow).where(EventRow.request_id.in_([r.request_id for r in rows]))
    ):
        stored.setdefault(event_row.request_id or "", []).append(stored_event(event_row).event)
    events: list[Event] = []
    states: dict[str, tuple[str, int]] = {}
    # tags this batch rebuilt a push or a delete of: what they are on is not known from here on
    moved: set[tuple[str | None, str | None]] = set()
    for r in rows:
        record = _record(r)
        tags: list[str] = []
        tag_digest: str | None = None
        if record.action is Action.DELETE and record.tag is None:
            tags = _tags_on_digest(session, record)
        elif (
            record.action is Action.PULL
            and record.target_kind is TargetKind.MANIFEST
            and record.tag is not None
            and (record.repository, record.tag) not in moved
        ):
            tag_digest = _digest_of_tag(session, record)
        missing = missing_events(
            record, stored.get(record.request_id, ()), tags_on_digest=tags, tag_digest=tag_digest
        )
        moved.update(
            (e.repository, e.tag) for e in missing if e.tag and e.action is not Action.PULL
        )
        events.extend(missing)
        if missing:
            states[r.request_id] = (RECONSTRUCTED, r.reconstructed_events + len(missing))
        elif r.state == PENDING:
            states[r.request_id] = (MATCHED, 0)
    last = rows[-1]
    return ReconcilePlan(events, states, len(rows), (last.occurred_at, last.request_id))


def settle(session: Session, states: dict[str, tuple[str, int]], *, now: datetime) -> None:
    """Write the states a plan decided."""
    row = LogRequestRow
    for request_id, (state, count) in states.items():
        session.execute(
            update(row)
            .where(row.request_id == request_id)
            .values(state=state, reconstructed_events=count, settled_at=now)
        )


def expire_requests(
    session: Session,
    *,
    older_than: datetime,
    limit: int = RECONCILE_BATCH,
    after: Mapping[str, datetime] | None = None,
) -> tuple[int, dict[str, datetime]]:
    """Delete up to `limit` request records older than `older_than` (the raw events' retention),
    oldest first within each state. Returns how many (fewer than `limit` means none is left)
    and, per state, the time the next batch starts from (pass it as `after`): as for events
    (monitor.store.events.expire_event_batch), a scan from the index's start would walk again
    every row earlier batches deleted until PostgreSQL vacuums them."""
    row = LogRequestRow
    reached = dict(after or {})
    ids: list[str] = []
    for state in (PENDING, MATCHED, RECONSTRUCTED):
        if len(ids) >= limit:
            break
        due = select(row.request_id, row.occurred_at).where(
            row.state == state, row.occurred_at < older_than
        )
        if state in reached:
            due = due.where(row.occurred_at >= reached[state])
        found = session.execute(due.order_by(row.occurred_at).limit(limit - len(ids))).all()
        if found:
            ids.extend(request_id for request_id, _ in found)
            reached[state] = found[-1][1]
    if ids:
        session.execute(delete(row).where(row.request_id.in_(ids)))
    return len(ids), reached


def oldest_pending(session: Session) -> datetime | None:
    """The time of the oldest request not reconciled yet (an index on state and time)."""
    row = LogRequestRow
    return session.scalar(
        select(row.occurred_at).where(row.state == PENDING).order_by(row.occurred_at).limit(1)
    )


def newest_tag_writes(
    session: Session, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """(repository, tag) → the request id of the newest logged push or delete naming that tag
    (pairs no logged request names are left out)."""
    row = LogRequestRow
    out: dict[tuple[str, str], str] = {}
    for repository, tag in sorted(set(keys)):
        newest = session.scalar(
            select(row.request_id)
            .where(
                row.repository == repository,
                row.tag == tag,
                row.action.in_((Action.PUSH.value, Action.DELETE.value)),
            )
            .order_by(row.occurred_at.desc(), row.request_id.desc())
            .limit(1)
        )
        if newest is not None:
            out[(repository, tag)] = newest
    return out
