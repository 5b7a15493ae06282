"""The job table: every long-running loop and scheduled job that `serve` runs, in one place.

    job                schedule (settings)                  lease
    heartbeat          every notifications.heartbeat_seconds  -  (each replica records itself)
    detect             every detect.interval_seconds          -  (the detector row is locked;
                                                                at once while behind; in the
                                                                applier's process when apart)
    deliver            every alerting.interval_seconds        -  (rows taken FOR UPDATE SKIP LOCKED)
    follow-logs        every logs.poll_seconds                -  (in the applier's process
                                                                when apart)
    expire-events      cron retention.schedule                -  (idempotent; batches through
                                                                the writer, ends when serve
                                                                stops; on SQLite in the
                                                                applier's process when
                                                                apart)
    cleanup-reconcile  cron cleanup.reconcile_schedule        cleanup.lock_seconds
    cleanup-plan       cron cleanup.plan_schedule             cleanup.lock_seconds  (planned in a
                                                                process of its own)
    cleanup-apply      cron cleanup.apply_schedule            cleanup.lock_seconds
    registry-audit     every audit.interval_seconds           0.9 x the interval
    reconcile-events   every reconcile.interval_seconds       0.9 x the interval (at least 1 s;
                       (the first one interval after start)     in the applier's process when
                                                                apart)

A row is there only when its settings ask for it (Slack for `deliver`, `logs.paths` for
`follow-logs`, and so on). `monitor.pipeline.scheduler` runs the table.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import structlog

from monitor.audit.model import check_ids
from monitor.audit.probe import LiveProbe
from monitor.observability.collectors import TAG_GAUGES_SECONDS
from monitor.pipeline.applier import BATCH_BODIES
from monitor.pipeline.audit import audit_job, sources_from
from monitor.pipeline.cleanup_jobs import cleanup_job, wanted_cleanup_jobs
from monitor.pipeline.cleanup_summary import outbox_sender
from monitor.pipeline.delivery import deliver_and_wait
from monitor.pipeline.detection import detection_job
from monitor.pipeline.housekeeping import expire_job, heartbeat
from monitor.pipeline.log_ingest import FollowJob, LineLimits, follow_logs_job, following
from monitor.pipeline.reconcile import reconcile_job, registry_tag_digest
from monitor.pipeline.scheduler import Job
from monitor.runtime import Services

log = structlog.get_logger("monitor.pipeline.jobs")


def job_table(services: Services, *, stopping: threading.Event) -> tuple[Job, ...]:
    """The jobs `serve` runs with these services; `stopping` is the runner's stop signal."""
    settings = services.settings
    rows = [
        Job(
            "heartbeat",
            lambda: _heartbeat(services),
            interval=settings.notifications.heartbeat_seconds,
            errors="heartbeat",
        ),
    ]
    if services.tag_gauges is not None:
        rows.append(
            Job(
                "tag-gauges",
                services.tag_gauges.refresh,
                interval=TAG_GAUGES_SECONDS,
                errors="scrape",
            )
        )
    if not services.applier.runs("detect"):  # else the applier's process runs it
        rows.append(
            detection_job(
                settings.detect,
                session_factory=services.session_factory,
                detector=services.detector,
                clock=services.clock,
                metrics=services.metrics,
                transact=services.writer.transact,
            )
        )
    if services.notifier is None:
        log.warning("no Slack configured: alerts are stored and counted, not sent")
    else:
        rows.append(
            Job(
                "deliver",
                lambda: deliver_and_wait(services),
                interval=settings.alerting.interval_seconds,
                errors="deliver",
            )
        )
    apart = services.applier.runs("follow-logs")
    follow = None if apart else build_follow_job(services, stopping=stopping)
    if follow is not None:  # else the applier's process follows the files
        rows.append(follow_logs_job(follow, poll_seconds=settings.logs.poll_seconds))
    if settings.retention.schedule.strip() and not services.applier.runs("expire-events"):
        rows.append(
            expire_job(
                services.writer.transact,
                settings.retention,
                clock=services.clock,
                stopping=stopping,
                intake_behind=lambda: services.inbox.backlog() > BATCH_BODIES,
            )
        )
    rows.extend(
        cleanup_job(
            kind,
            session_factory=services.session_factory,
            settings=settings.cleanup,
            clock=services.clock,
            metrics=services.metrics,
            send_summary=outbox_sender(services.session_factory, services.clock),
            database=settings.database,
        )
        for kind in wanted_cleanup_jobs(settings.cleanup)
    )
    audit = settings.audit
    if audit.registry_config is not None or audit.url is not None:
        rows.append(
            audit_job(
                services.session_factory,
                sources=sources_from(audit, settings.logs, settings.cleanup),
                probe=LiveProbe(timeout=audit.timeout_seconds),
                clock=services.clock,
                interval_seconds=audit.interval_seconds,
                accepted=check_ids(audit.accept, key="audit.accept"),
            )
        )
    reconcile = settings.reconcile
    if reconcile.interval_seconds > 0 and not services.applier.runs("reconcile-events"):
        rows.append(
            reconcile_job(
                services.session_factory,
                services.writer,
                clock=services.clock,
                settle_seconds=reconcile.settle_seconds,
                interval_seconds=reconcile.interval_seconds,
                metrics=services.metrics,
                open_lookup=registry_tag_digest(settings.cleanup),
            )
        )
    return tuple(rows)


def build_follow_job(
    services: Services,
    globs: Sequence[str] | None = None,
    *,
    stopping: threading.Event | None = None,
) -> FollowJob | None:
    """The follower of `logs.paths` (or `globs`), checkpointed in the store; None without paths."""
    paths = services.settings.logs.paths if globs is None else list(globs)
    if not paths:
        return None
    return following(
        paths,
        start_at_end=services.settings.logs.start_at_end,
        session_factory=services.session_factory,
        writer=services.writer,
        metrics=services.metrics,
        limits=LineLimits.of(services.settings.input, services.clock),
        stopping=stopping,
    )


def _heartbeat(services: Services) -> None:
    heartbeat(
        services.session_factory,
        replica=services.replica,
        now=services.clock(),
        interval=services.settings.notifications.heartbeat_seconds,
    )
