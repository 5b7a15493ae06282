"""The scheduled cleanup jobs: reconcile, plan, and (only when configured) apply.

Each is a row of the job table with its cron schedule from the settings and a lease named
after its job id (held `cleanup.lock_seconds`, renewed while it runs), so several replicas on
one PostgreSQL run each firing once. Runs are counted in `registry_monitor_cleanup_runs_total`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import structlog

from monitor.cleanup.apply import apply_options
from monitor.cleanup.reconcile import reconcile
from monitor.clock import Clock
from monitor.observability.metrics import Metrics
from monitor.pipeline.cleanup import (
    SummarySender,
    apply_plan,
    open_registry,
)
from monitor.pipeline.plan_child import PlanRequest, plan_apart
from monitor.pipeline.scheduler import Job
from monitor.settings import CleanupSettings, DatabaseSettings
from monitor.store.cleanup_plans import PlanState, latest_summary
from monitor.store.engine import SessionFactory

log = structlog.get_logger("monitor.cleanup")

JOB_IDS = {"reconcile": "cleanup-reconcile", "plan": "cleanup-plan", "apply": "cleanup-apply"}


def _plan(database: DatabaseSettings, settings: CleanupSettings, clock: Clock) -> str:
    done = plan_apart(PlanRequest(database, settings, clock()))
    log.info("cleanup planned", plan_id=done.plan_id, process=done.pid, **done.counts)
    return done.plan_id


def _apply(
    session_factory: SessionFactory,
    settings: CleanupSettings,
    clock: Clock,
    metrics: Metrics,
    send_summary: SummarySender | None,
) -> str | None:
    if not settings.apply_on_schedule:
        log.info("cleanup apply skipped: apply_on_schedule is off (dry run)")
        return None
    now = clock()
    with session_factory() as session:
        summary = latest_summary(session)
    if summary is None:
        return None
    if summary.state is not PlanState.PLANNED:
        log.info("cleanup apply skipped: newest plan not pending", plan_id=summary.id)
        return None
    if now - summary.created_at > timedelta(hours=settings.plan_max_age_hours):
        log.info("cleanup apply skipped: newest plan too old", plan_id=summary.id)
        return None
    with open_registry(settings) as client:
        apply_plan(
            session_factory,
            client,
            summary.id,
            clock=clock,
            options=apply_options(settings),
            metrics=metrics,
            send_summary=send_summary,
        )
    return summary.id


def _reconcile(session_factory: SessionFactory, settings: CleanupSettings, clock: Clock) -> int:
    with open_registry(settings) as client:
        result = reconcile(session_factory, client, clock=clock)
    log.info(
        "registry reconciled",
        repositories=result.repositories,
        tags=result.tags,
        learned=len(result.learned),
        moved=len(result.moved),
        vanished=result.vanished,
        manifests_fetched=result.manifests_fetched,
    )
    return result.tags


def cleanup_job(
    kind: str,
    *,
    session_factory: SessionFactory,
    settings: CleanupSettings,
    clock: Clock,
    metrics: Metrics,
    database: DatabaseSettings,
    send_summary: SummarySender | None = None,
) -> Job:
    """The cleanup job `kind` (reconcile, plan, apply) as a row of the job table. The plan is
    made in a process of its own (monitor.pipeline.plan_child) on the store of `database`."""
    work: Callable[[], object]
    if kind == "plan":
        work = lambda: _plan(database, settings, clock)  # noqa: E731
    elif kind == "apply":
        work = lambda: _apply(session_factory, settings, clock, metrics, send_summary)  # noqa: E731
    elif kind == "reconcile":
        work = lambda: _reconcile(session_factory, settings, clock)  # noqa: E731
    else:
        raise ValueError(f"unknown cleanup job {kind!r}")

    def run() -> None:
        try:
            work()
        except Exception:
            metrics.cleanup_runs.labels(kind=kind, result="error").inc()
            raise
        metrics.cleanup_runs.labels(kind=kind, result="ok").inc()

    schedules = {
        "reconcile": settings.reconcile_schedule,
        "plan": settings.plan_schedule,
        "apply": settings.apply_schedule,
    }
    return Job(
        JOB_IDS[kind],
        run,
        cron=schedules[kind],
        lease=timedelta(seconds=settings.lock_seconds),
    )


def wanted_cleanup_jobs(settings: CleanupSettings) -> list[str]:
    """The kinds of cleanup job the settings ask for: reconcile with a registry URL, plan with
    policies, apply with both and `apply_on_schedule`; never one with an empty schedule."""
    wanted = {
        "reconcile": (settings.registry_url is not None, settings.reconcile_schedule),
        "plan": (settings.policies_file is not None, settings.plan_schedule),
        "apply": (
            settings.apply_on_schedule
            and settings.registry_url is not None
            and settings.policies_file is not None,
            settings.apply_schedule,
        ),
    }
    return [kind for kind, (enabled, cron) in wanted.items() if enabled and cron.strip()]
