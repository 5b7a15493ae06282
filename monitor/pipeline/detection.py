"""The live detection pass: stored events → detector → alerts and outbox rows.

A pass reads the detector's saved state and the events after its cursor (only those received at
least `settle` ago, so a lower id still committing is not skipped) and runs `Detector.process`
outside any write transaction, so judging a large batch never holds the store's write lock
(SQLite has one for the whole file, which intake needs for every commit). It then writes the
outcome in one short transaction: it locks the detector's row and, only if the cursor and state
are still the ones it read (no other replica ran a pass meanwhile), saves the new state and cursor
with the alerts and the outbox rows they cause; otherwise it writes nothing.

A restart therefore resumes with the same open windows. Shadow alerts are stored but never
queued for Slack. A firing alert resolves once its incident has ended and nothing was seen for
the rule's window and cooldown (`quiet_period`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from monitor.alerting.outbox import Kind
from monitor.alerts import Alert, AlertState, Mode
from monitor.detect.engine import Detector
from monitor.detect.state import DetectorState, state_from_json, state_to_json
from monitor.observability.metrics import Metrics
from monitor.store.alerts import evidence_rows, resolve_alert, upsert_alert
from monitor.store.detector_state import (
    DEFAULT_DETECTOR,
    events_after,
    lock_detector,
    read_detector,
    save_detector,
)
from monitor.store.engine import SessionFactory
from monitor.store.outbox import enqueue
from monitor.store.schema import AlertRow

DETECTOR_NAME = DEFAULT_DETECTOR
BATCH_MAX = 1000


@dataclasses.dataclass(frozen=True, slots=True)
class DetectionReport:
    """What one pass did."""

    processed: int
    cursor: int
    newest_occurred_at: datetime | None
    raised: tuple[Alert, ...]
    repeated: tuple[Alert, ...]
    resolved: tuple[Alert, ...]
    queued: int


def quiet_period(detector: Detector, rule: str) -> timedelta:
    """How long a rule must stay silent before its alert resolves: max(window, cooldown)."""
    config = detector.config.rules.get(rule)
    if config is None:
        return timedelta(0)
    return max(config.window, config.cooldown)


def _hits(found: Alert, before: DetectorState) -> int:
    """Occurrences detection's alert adds to its stored alert."""
    incident = before.incidents.get(found.fingerprint)
    if found.repeat and incident is not None:
        return max(found.count - incident.count, 0)
    return found.count


def _queue(session: Session, kind: Kind, stored: Alert, now: datetime) -> None:
    rows = evidence_rows(session, stored.evidence.event_ids)
    enqueue(session, kind, stored.with_rows(rows), now=now)


def _resolve_quiet(
    session: Session, detector: Detector, state: DetectorState, at: datetime
) -> list[Alert]:
    resolved: list[Alert] = []
    for fingerprint, rule, last_seen_at in session.execute(
        select(AlertRow.fingerprint, AlertRow.rule, AlertRow.last_seen_at).where(
            AlertRow.state == AlertState.FIRING.value
        )
    ):
        if fingerprint in state.incidents or last_seen_at + quiet_period(detector, rule) > at:
            continue
        done = resolve_alert(session, fingerprint, at=at)
        if done is not None:
            resolved.append(done)
    return resolved


def detect_pass(
    session_factory: SessionFactory,
    detector: Detector,
    *,
    now: datetime,
    settle: timedelta,
    batch_max: int = BATCH_MAX,
    name: str = DETECTOR_NAME,
    transact: Callable[[Callable[[Session], DetectionReport]], DetectionReport] | None = None,
) -> DetectionReport:
    """One detection pass at `now`. The outcome is written by `transact` when given (serve
    passes the intake writer's, so the short write takes turns with notifications), else in a
    transaction of its own."""
    with session_factory() as session:
        saved = read_detector(session, name, now=now)
        stored = events_after(session, saved.cursor, received_before=now - settle, limit=batch_max)
    before = state_from_json(saved.state) if saved.state else DetectorState()
    events = [s.event for s in stored]
    at = min(now, max(e.occurred_at for e in events)) if events else now
    found_alerts, after = detector.process(events, before, at)
    after_json = state_to_json(after)

    def write(session: Session) -> DetectionReport:
        current = lock_detector(session, name, now=now)
        if (current.cursor, current.state) != (saved.cursor, saved.state):
            return DetectionReport(0, current.cursor, None, (), (), (), 0)
        raised: list[Alert] = []
        repeated: list[Alert] = []
        queued = 0
        for found in found_alerts:
            upserted = upsert_alert(session, found, hits=_hits(found, before))
            fresh = upserted.created or upserted.refired
            (raised if fresh else repeated).append(upserted.alert)
            if found.mode is Mode.SHADOW:
                continue
            _queue(session, Kind.NEW if fresh else Kind.REPEAT, upserted.alert, now)
            queued += 1
        resolved = _resolve_quiet(session, detector, after, at)
        for alert in resolved:
            if alert.mode is not Mode.SHADOW:
                _queue(session, Kind.RESOLVE, alert, now)
                queued += 1
        cursor = stored[-1].id if stored else saved.cursor
        save_detector(session, name, state=after_json, cursor=cursor, now=now)
        return DetectionReport(
            processed=len(stored),
            cursor=cursor,
            newest_occurred_at=max((s.event.occurred_at for s in stored), default=None),
            raised=tuple(raised),
            repeated=tuple(repeated),
            resolved=tuple(resolved),
            queued=queued,
        )

    if transact is not None:
        return transact(write)
    with session_factory() as session, session.begin():
        return write(session)


def record_detection(metrics: Metrics, report: DetectionReport, now: datetime) -> None:
    """Count raised alerts and set the detection lag."""
    for alert in report.raised:
        metrics.alerts.labels(
            rule=alert.rule, severity=alert.severity.value, mode=alert.mode.value
        ).inc()
    if report.newest_occurred_at is not None:
        metrics.detect_lag.set(max((now - report.newest_occurred_at).total_seconds(), 0.0))
