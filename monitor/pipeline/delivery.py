"""The delivery pass: due outbox rows → Slack, one transaction per pass.

Rows are marked done in the same transaction that took them (locked on PostgreSQL), so a
row is sent by one replica only; a pass is kept short (`limit`) because a crash before the
commit would send its rows again.
"""

from __future__ import annotations

from datetime import datetime

from monitor.alerting.notifier import Notifier
from monitor.alerting.outbox import DeliveryReport, RetryPolicy, deliver_due
from monitor.alerting.throttle import Budget
from monitor.observability.metrics import Metrics
from monitor.store.engine import SessionFactory
from monitor.store.outbox import SqlOutbox

PASS_LIMIT = 20


def deliver_pass(
    session_factory: SessionFactory,
    notifier: Notifier,
    *,
    now: datetime,
    budget: Budget | None = None,
    policy: RetryPolicy | None = None,
    limit: int = PASS_LIMIT,
) -> DeliveryReport:
    """One `deliver_due` pass over the SQL outbox at `now`, committed at its end."""
    with session_factory() as session, session.begin():
        return deliver_due(
            SqlOutbox(session), notifier, now, budget=budget, policy=policy, limit=limit
        )


def record_delivery(metrics: Metrics, report: DeliveryReport) -> None:
    """Count what a pass did in `registry_monitor_alert_deliveries_total`."""
    deliveries = metrics.alert_deliveries
    deliveries.labels(result="delivered").inc(report.delivered)
    deliveries.labels(result="retried").inc(report.retried - report.rate_limited)
    deliveries.labels(result="rate_limited").inc(report.rate_limited)
    deliveries.labels(result="failed").inc(report.failed)
    deliveries.labels(result="suppressed").inc(report.suppressed)
