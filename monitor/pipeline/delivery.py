"""The delivery pass: due outbox rows → Slack, one transaction per pass.

Rows are marked done in the same transaction that took them (locked on PostgreSQL), so a
row is sent by one replica only; a pass is kept short (`limit`) because a crash before the
commit would send its rows again.
"""

from __future__ import annotations

from datetime import datetime

import structlog

from monitor.alerting.notifier import Notifier
from monitor.alerting.outbox import DeliveryReport, RetryPolicy, deliver_due
from monitor.alerting.throttle import Budget
from monitor.observability.metrics import Metrics
from monitor.runtime import Services
from monitor.store.engine import SessionFactory
from monitor.store.outbox import SqlOutbox

PASS_LIMIT = 20
log = structlog.get_logger("monitor.pipeline.delivery")


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


def deliver_once(services: Services) -> datetime | None:
    """One delivery pass; returns when Slack accepts more after a 429 (else None)."""
    if services.notifier is None:
        return None
    report = deliver_pass(
        services.session_factory,
        services.notifier,
        now=services.clock(),
        budget=services.budget,
        policy=services.retry,
    )
    record_delivery(services.metrics, report)
    for error in report.errors:
        log.warning("alert delivery failed", error=error[:300])
    return report.not_before


def deliver_and_wait(services: Services) -> float | None:
    """One run of the `deliver` job: a pass, then the wait a Slack 429 asks for (else None)."""
    not_before = deliver_once(services)
    if not_before is None:
        return None
    interval = services.settings.alerting.interval_seconds
    return max(interval, (not_before - services.clock()).total_seconds())
