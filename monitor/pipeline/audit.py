"""The scheduled audit: gather, check, store the run, and queue a Slack message for every
check that changed to fail since the previous run (through the alert outbox, never lost)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta

import structlog
from sqlalchemy.exc import SQLAlchemyError

from monitor.alerting.outbox import Kind
from monitor.alerts import Alert, Evidence, Severity
from monitor.audit.checks import evaluate
from monitor.audit.checks_tls import certificate_expiry
from monitor.audit.facts import Activity
from monitor.audit.gather import ActivityReader, Sources, gather
from monitor.audit.model import CheckResult, Status, accept
from monitor.audit.probe import Probe
from monitor.clock import Clock
from monitor.errors import StoreUnavailable
from monitor.pipeline.scheduler import Job
from monitor.settings import AuditSettings, CleanupSettings, LogsSettings
from monitor.store.accounts import last_successes, listening_since
from monitor.store.audit import AuditRun, latest_audit, record_audit
from monitor.store.engine import SessionFactory
from monitor.store.outbox import enqueue

RULE = "registry_audit"
JOB = "registry-audit"
log = structlog.get_logger("monitor.pipeline.audit")


def sources_from(audit: AuditSettings, logs: LogsSettings, cleanup: CleanupSettings) -> Sources:
    """Where the scheduled audit looks, from the settings."""
    return Sources(
        registry_config=audit.registry_config,
        htpasswd=audit.htpasswd,
        url=audit.url,
        registry_logs=tuple(logs.paths),
        stale_days=audit.stale_days,
        cleanup_configured=cleanup.policies_file is not None,
    )


def store_activity(session_factory: SessionFactory) -> ActivityReader:
    """Account activity read from the store; StoreUnavailable when it cannot answer."""

    def read(users: Sequence[str], now: datetime) -> Activity:
        try:
            with session_factory() as session:
                return Activity(last_successes(session, users), listening_since(session))
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"cannot read account activity: {type(exc).__name__}") from exc

    return read


def audit_alert(result: CheckResult, *, run_id: int, now: datetime) -> Alert:
    """The Slack message for a check that changed to fail."""
    text = f"Registry audit: {result.id} fails: {result.detail}"
    if result.remedy:
        text += f". Change: {result.remedy}"
    return Alert(
        rule=RULE,
        severity=Severity.CRITICAL,
        fingerprint=f"{RULE}:{result.id}:{run_id}",
        subject={"check": result.id},
        summary=text,
        evidence=Evidence(),
        first_seen_at=now,
        last_seen_at=now,
    )


def newly_failed(previous: AuditRun | None, results: Sequence[CheckResult]) -> list[CheckResult]:
    """The failing checks that did not fail in `previous` (all failing ones without it)."""
    before = {} if previous is None else {r.id: r.status for r in previous.results}
    return [r for r in results if r.status is Status.FAIL and before.get(r.id) is not Status.FAIL]


@dataclasses.dataclass(frozen=True)
class AuditOutcome:
    run: AuditRun
    notified: tuple[str, ...]


def audit_once(
    session_factory: SessionFactory,
    *,
    sources: Sources,
    probe: Probe,
    now: datetime,
    accepted: Sequence[str] = (),
) -> AuditOutcome:
    """One audit: checks (accepted failures as warnings), stored run, and a queued message per
    check newly failing."""
    facts = gather(sources, probe=probe, now=now, activity=store_activity(session_factory))
    results = accept(evaluate(facts, now), accepted)
    with session_factory() as session, session.begin():
        previous = latest_audit(session)
        run = record_audit(
            session, results=results, checked_at=now, cert_not_after=certificate_expiry(facts)
        )
        changed = newly_failed(previous, results)
        for result in changed:
            enqueue(session, Kind.NEW, audit_alert(result, run_id=run.id, now=now), now=now)
    log.info(
        "audit finished",
        failed=run.failed,
        notified=[r.id for r in changed],
        checks=len(results),
    )
    return AuditOutcome(run=run, notified=tuple(r.id for r in changed))


def audit_job(
    session_factory: SessionFactory,
    *,
    sources: Sources,
    probe: Probe,
    clock: Clock,
    interval_seconds: float,
    accepted: Sequence[str] = (),
) -> Job:
    """`audit_once` every `interval_seconds` (first at start) on one replica per interval: the
    lease is held for most of the interval and left to lapse."""

    def run() -> None:
        audit_once(session_factory, sources=sources, probe=probe, now=clock(), accepted=accepted)

    return Job(
        JOB,
        run,
        interval=interval_seconds,
        lease=timedelta(seconds=interval_seconds * 0.9),
        errors="audit",
    )
