"""Reconcile the registry's log with its notifications: rebuild the events that never arrived.

Requests read from the log wait `reconcile.settle_seconds` (the registry may still be retrying
them); then every one whose notifications are still missing gets them rebuilt from its log line,
stored through the writer like any event (source `log`, `reconstructed`), and a Slack message
says how many were lost (through the alert outbox, never lost itself).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import datetime, timedelta

import structlog
from sqlalchemy.orm import Session

from monitor.alerting.outbox import Kind
from monitor.alerts import Alert, Evidence, Severity
from monitor.clock import Clock
from monitor.events import Event
from monitor.observability.metrics import Metrics
from monitor.pipeline.scheduler import Job
from monitor.store.engine import SessionFactory
from monitor.store.outbox import enqueue
from monitor.store.requestlog import plan_reconcile, settle
from monitor.store.writer import StoreWriter

RULE = "notifications_lost"
log = structlog.get_logger("monitor.pipeline.reconcile")


@dataclasses.dataclass
class ReconcileOutcome:
    """What a pass examined, found delivered, and rebuilt (or would rebuild, in a dry run)."""

    examined: int = 0
    matched: int = 0
    requests_reconstructed: int = 0
    events: list[Event] = dataclasses.field(default_factory=list)
    stored: int = 0

    def to_dict(self) -> dict[str, object]:
        return {
            "examined": self.examined,
            "matched": self.matched,
            "requests_reconstructed": self.requests_reconstructed,
            "events": len(self.events),
            "stored": self.stored,
        }


def lost_alert(events: list[Event], *, now: datetime) -> Alert:
    """The Slack message for notifications the registry lost and the log filled in."""
    by_action = Counter(e.action.value for e in events)
    first = min(e.occurred_at for e in events)
    last = max(e.occurred_at for e in events)
    parts = ", ".join(f"{count} {action}" for action, count in sorted(by_action.items()))
    return Alert(
        rule=RULE,
        severity=Severity.WARNING,
        fingerprint=f"{RULE}:{now.isoformat()}",
        subject={"events": str(len(events))},
        summary=(
            f"The registry lost {len(events)} notifications ({parts}) between "
            f"{first.isoformat()} and {last.isoformat()}; they were rebuilt from its log"
        ),
        evidence=Evidence(),
        first_seen_at=now,
        last_seen_at=now,
    )


def reconcile_events(
    session_factory: SessionFactory,
    writer: StoreWriter,
    *,
    now: datetime,
    settle_seconds: float,
    since: datetime | None = None,
    until: datetime | None = None,
    dry_run: bool = False,
    pending_only: bool = True,
    metrics: Metrics | None = None,
    notify: bool = True,
) -> ReconcileOutcome:
    """One pass over the requests settled by `now` (in [since, until) when given), in batches.

    `pending_only=False` also re-examines settled requests (a backfill over stored log data);
    a dry run plans without writing anything.
    """
    settled_before = now - timedelta(seconds=settle_seconds)
    outcome = ReconcileOutcome()
    after = None
    while True:
        with session_factory() as session:
            plan = plan_reconcile(
                session,
                settled_before=settled_before,
                since=since,
                until=until,
                pending_only=pending_only,
                after=after,
            )
        if plan.examined == 0:
            break
        after = plan.last
        outcome.examined += plan.examined
        outcome.matched += plan.matched
        outcome.requests_reconstructed += plan.examined - plan.matched
        outcome.events.extend(plan.events)
        if dry_run:
            continue

        def save(session: Session, states: dict[str, tuple[str, int]] = plan.states) -> None:
            settle(session, states, now=now)

        result = writer.submit(plan.events, (), also=save).result()
        outcome.stored += len(result.inserted)
        if metrics is not None and result.inserted:
            metrics.events_reconstructed.inc(len(result.inserted))
    outcome.requests_reconstructed = len({e.request_id for e in outcome.events})
    if outcome.stored and notify and not dry_run:
        stored = outcome.events
        writer.transact(lambda s: enqueue(s, Kind.NEW, lost_alert(stored, now=now), now=now))
    if outcome.examined:
        log.info("reconciled registry log with notifications", **outcome.to_dict())
    return outcome


JOB = "reconcile-events"


def reconcile_job(
    session_factory: SessionFactory,
    writer: StoreWriter,
    *,
    clock: Clock,
    settle_seconds: float,
    interval_seconds: float,
    metrics: Metrics | None = None,
) -> Job:
    """`reconcile_events` over the pending requests every `interval_seconds` (the first one
    interval after start), on one replica at a time: the lease is held for most of the
    interval and left to lapse."""

    def run() -> None:
        reconcile_events(
            session_factory, writer, now=clock(), settle_seconds=settle_seconds, metrics=metrics
        )

    return Job(
        JOB,
        run,
        interval=interval_seconds,
        lease=timedelta(seconds=max(interval_seconds * 0.9, 1.0)),
        errors="reconcile",
        first_after_interval=True,
    )
