"""Alert rows: one per fingerprint, upserted from detection, queried with keyset pagination.

Functions take a session and never commit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Container, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from monitor.alerts import Alert, AlertState, Evidence, Mode, Severity
from monitor.events import format_timestamp
from monitor.store.pages import fetch_page, matching
from monitor.store.schema import AlertRow, EventRow

EVIDENCE_ROWS = 3
"""Sample event rows attached to an alert's Slack message."""

CHUNK = 500
"""Most values in one `IN (…)` list."""

_ROW_FIELDS = ("action", "repository", "tag", "actor", "remote_ip", "user_agent")


@dataclasses.dataclass(frozen=True, slots=True)
class Upserted:
    """What `upsert_alert` did: `created` for a fingerprint never stored, `refired` for one
    that was resolved and fires again. `alert` is the row as stored."""

    alert: Alert
    created: bool
    refired: bool


_SNAPSHOT = (
    "fingerprint", "rule", "severity", "mode", "subject", "summary", "evidence",
    "first_seen_at", "last_seen_at", "count", "state", "resolved_at",
)  # fmt: skip


def _stored(row: AlertRow | SimpleNamespace) -> Alert:
    return Alert(
        id=row.id,
        fingerprint=row.fingerprint,
        rule=row.rule,
        severity=Severity(row.severity),
        mode=Mode(row.mode),
        subject={str(k): str(v) for k, v in orjson.loads(row.subject).items()},
        summary=row.summary,
        evidence=Evidence(event_ids=tuple(str(e) for e in orjson.loads(row.evidence))),
        first_seen_at=row.first_seen_at,
        last_seen_at=row.last_seen_at,
        count=row.count,
        state=AlertState(row.state),
        resolved_at=row.resolved_at,
    )


def upsert_alert(session: Session, found: Alert, *, hits: int) -> Upserted:
    """Store detection's alert under its fingerprint; a stored one gains `hits` and a later
    last seen.

    `hits` is how many occurrences the alert adds (the incident's count grew by that much).
    A resolved alert that fires again becomes firing; its first seen stays.
    """
    row = session.scalars(
        select(AlertRow).where(AlertRow.fingerprint == found.fingerprint).with_for_update()
    ).one_or_none()
    if row is None:
        row = _new_row(found, hits)
        session.add(row)
        session.flush()
        return Upserted(_stored(row), created=True, refired=False)
    refired = _fire_again(row, found, hits)
    session.flush()
    return Upserted(_stored(row), created=False, refired=refired)


def _new_row(alert: Alert, hits: int) -> AlertRow:
    """The row of an alert never stored: firing, counting its hits (at least one)."""
    return AlertRow(
        fingerprint=alert.fingerprint,
        rule=alert.rule,
        severity=alert.severity.value,
        mode=alert.mode.value,
        subject=orjson.dumps(dict(alert.subject)).decode(),
        summary=alert.summary,
        evidence=orjson.dumps(list(alert.evidence.event_ids)).decode(),
        first_seen_at=alert.first_seen_at,
        last_seen_at=alert.last_seen_at,
        count=max(hits, 1),
        state=AlertState.FIRING.value,
        resolved_at=None,
    )


def _fire_again(row: AlertRow, alert: Alert, hits: int) -> bool:
    """A stored alert seen again: it takes the new text, gains `hits` and a later last seen,
    and is firing; True when it had been resolved."""
    refired = row.state == AlertState.RESOLVED.value
    row.severity = alert.severity.value
    row.mode = alert.mode.value
    row.subject = orjson.dumps(dict(alert.subject)).decode()
    row.summary = alert.summary
    row.evidence = orjson.dumps(list(alert.evidence.event_ids)).decode()
    row.last_seen_at = max(row.last_seen_at, alert.last_seen_at)
    row.count = row.count + max(hits, 0)
    row.state = AlertState.FIRING.value
    row.resolved_at = None
    return refired


def _chunks(values: Sequence[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), CHUNK):
        yield list(values[start : start + CHUNK])


def upsert_alerts(session: Session, found: Sequence[tuple[Alert, int]]) -> list[Upserted]:
    """`upsert_alert` for many (alert, hits) at once, in order: the stored rows are read a few
    hundred fingerprints per query and written in one flush."""
    rows: dict[str, AlertRow] = {}
    for chunk in _chunks(list(dict.fromkeys(a.fingerprint for a, _ in found))):
        for row in session.scalars(
            select(AlertRow).where(AlertRow.fingerprint.in_(chunk)).with_for_update()
        ):
            rows[row.fingerprint] = row
    # Each answer is the row as it stood after its own alert (the same fingerprint can come
    # twice); ids of new rows are known after the one flush at the end.
    pending: list[tuple[AlertRow, dict[str, Any], bool, bool]] = []

    for alert, hits in found:
        stored = rows.get(alert.fingerprint)
        if stored is None:
            row = rows[alert.fingerprint] = _new_row(alert, hits)
            session.add(row)
            pending.append((row, {n: getattr(row, n) for n in _SNAPSHOT}, True, False))
        else:
            refired = _fire_again(stored, alert, hits)
            pending.append((stored, {n: getattr(stored, n) for n in _SNAPSHOT}, False, refired))
    session.flush()
    return [
        Upserted(_stored(SimpleNamespace(id=row.id, **values)), created=created, refired=refired)
        for row, values, created, refired in pending
    ]


def resolve_quiet(
    session: Session,
    *,
    quiet: Mapping[str, timedelta],
    ongoing: Container[str],
    at: datetime,
) -> list[Alert]:
    """Resolve at `at` every firing alert whose rule has been quiet long enough: last seen at
    least `quiet[rule]` before `at` (0 for a rule not in `quiet`), with its fingerprint not
    among the `ongoing` incidents. One indexed read per rule; returned in id order."""
    firing = AlertRow.state == AlertState.FIRING.value
    candidates = select(AlertRow.id, AlertRow.fingerprint)
    queries = [
        candidates.where(AlertRow.rule == rule, firing, AlertRow.last_seen_at <= at - period)
        for rule, period in quiet.items()
    ]
    queries.append(
        candidates.where(AlertRow.rule.not_in(list(quiet)), firing, AlertRow.last_seen_at <= at)
    )
    ids = [
        row_id
        for query in queries
        for row_id, fingerprint in session.execute(query)
        if fingerprint not in ongoing
    ]
    rows = [
        row
        for chunk in _chunks(ids)
        for row in session.scalars(
            select(AlertRow).where(AlertRow.id.in_(chunk), firing).with_for_update()
        )
    ]
    for row in rows:
        row.state = AlertState.RESOLVED.value
        row.resolved_at = at
    session.flush()
    return [_stored(row) for row in sorted(rows, key=lambda r: r.id)]


def resolve_alert(session: Session, fingerprint: str, *, at: datetime) -> Alert | None:
    """Mark a firing alert resolved at `at`; None when it is not firing (or unknown)."""
    row = session.scalars(
        select(AlertRow).where(AlertRow.fingerprint == fingerprint).with_for_update()
    ).one_or_none()
    if row is None or row.state != AlertState.FIRING.value:
        return None
    row.state = AlertState.RESOLVED.value
    row.resolved_at = at
    session.flush()
    return _stored(row)


def evidence_rows(session: Session, event_ids: Sequence[str]) -> list[dict[str, str]]:
    """A few stored events among `event_ids`, as field -> value rows, oldest first."""
    return evidence_rows_many(session, [event_ids])[0]


def evidence_rows_many(
    session: Session, evidence: Sequence[Sequence[str]]
) -> list[list[dict[str, str]]]:
    """`evidence_rows` for each list of event ids, reading the events of all in a few queries."""
    columns = [getattr(EventRow, name) for name in _ROW_FIELDS]
    found: dict[str, tuple[datetime, int, dict[str, str]]] = {}
    for chunk in _chunks(list({i: None for ids in evidence for i in ids})):
        query = select(EventRow.event_id, EventRow.occurred_at, EventRow.id, *columns).where(
            EventRow.event_id.in_(chunk)
        )
        for event_id, occurred_at, row_id, *fields in session.execute(query):
            values = {"time": format_timestamp(occurred_at)}
            for name, value in zip(_ROW_FIELDS, fields, strict=True):
                if value is not None:
                    values[name] = str(value)
            found[event_id] = (occurred_at, row_id, values)
    out: list[list[dict[str, str]]] = []
    for ids in evidence:
        present = sorted((found[i] for i in set(ids) if i in found), key=lambda f: f[:2])
        out.append([values for _, _, values in present[:EVIDENCE_ROWS]])
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class AlertFilter:
    """What `GET /v1/alerts` and `registry-monitor alerts` filter on; None means any.

    `since`/`until` bound `last_seen_at` (until exclusive).
    """

    rule: str | None = None
    state: str | None = None
    severity: str | None = None
    mode: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def query_alerts(
    session: Session, *, where: AlertFilter, limit: int, cursor: str | None = None
) -> tuple[list[Alert], str | None]:
    """A page of alerts, most recently seen first, and the cursor of the next page."""
    row = AlertRow
    equal = ("rule", "state", "severity", "mode")
    query = matching(select(row), row, where, equal=equal, time=row.last_seen_at)
    rows, next_cursor = fetch_page(
        session, query, time=row.last_seen_at, key=row.id, limit=limit, cursor=cursor
    )
    return [_stored(r) for r in rows], next_cursor
