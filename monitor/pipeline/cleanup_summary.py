"""A cleanup apply's summary goes to Slack through the alert outbox, so it is never lost."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from monitor.alerting.outbox import Kind
from monitor.alerts import Alert, Evidence, Severity
from monitor.clock import Clock
from monitor.store.engine import SessionFactory
from monitor.store.outbox import enqueue

RULE = "cleanup_applied"


def summary_alert(text: str, *, now: datetime) -> Alert:
    """An informational message carrying the apply summary; its own fingerprint each time."""
    return Alert(
        rule=RULE,
        severity=Severity.INFO,
        fingerprint=f"{RULE}:{uuid.uuid4().hex}",
        subject={},
        summary=text,
        evidence=Evidence(),
        first_seen_at=now,
        last_seen_at=now,
    )


def outbox_sender(session_factory: SessionFactory, clock: Clock) -> Callable[[str], None]:
    """A `send_summary` for `apply_plan` (pipeline.cleanup): queues the text for delivery."""

    def send(text: str) -> None:
        now = clock()
        with session_factory() as session, session.begin():
            enqueue(session, Kind.NEW, summary_alert(text, now=now), now=now)

    return send
