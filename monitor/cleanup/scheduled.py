"""The scheduled cleanup jobs: reconcile, plan, and (only when configured) apply.

Each runs under a lease named after its job id, so several replicas on one PostgreSQL run
each firing once. `hold_until` keeps the lease until just before the next firing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from monitor.cleanup.apply import apply_options
from monitor.cleanup.reconcile import reconcile
from monitor.cleanup.runner import (
    SummarySender,
    apply_plan,
    load_policy_set,
    make_plan,
    open_registry,
    run_locked,
)
from monitor.clock import Clock
from monitor.observability.metrics import Metrics
from monitor.settings import CleanupSettings
from monitor.store.cleanup_plans import PlanState, latest_plan
from monitor.store.engine import SessionFactory

log = structlog.get_logger("monitor.cleanup")

JOB_IDS = {"reconcile": "cleanup-reconcile", "plan": "cleanup-plan", "apply": "cleanup-apply"}


def _plan(session_factory: SessionFactory, settings: CleanupSettings, clock: Clock,
          metrics: Metrics) -> str:  # fmt: skip
    outcome = make_plan(
        session_factory,
        policies=load_policy_set(settings),
        now=clock(),
        gap_tolerance=timedelta(seconds=settings.coverage_gap_tolerance_seconds),
        metrics=metrics,
        plans_keep=settings.plans_keep,
    )
    log.info("cleanup planned", plan_id=outcome.summary.id, **outcome.plan.counts())
    return outcome.summary.id


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
        newest = latest_plan(session)
    if newest is None:
        return None
    summary, _ = newest
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


def run_scheduled(
    kind: str,
    *,
    session_factory: SessionFactory,
    settings: CleanupSettings,
    holder: str,
    clock: Clock,
    metrics: Metrics,
    send_summary: SummarySender | None = None,
    next_fire: Callable[[datetime], datetime | None] | None = None,
) -> bool:
    """Run the cleanup job `kind` (reconcile, plan, apply) if this replica gets its lease."""
    work: Callable[[], object]
    if kind == "plan":
        work = lambda: _plan(session_factory, settings, clock, metrics)  # noqa: E731
    elif kind == "apply":
        work = lambda: _apply(session_factory, settings, clock, metrics, send_summary)  # noqa: E731
    elif kind == "reconcile":
        work = lambda: _reconcile(session_factory, settings, clock)  # noqa: E731
    else:
        raise ValueError(f"unknown cleanup job {kind!r}")
    now = clock()
    following = next_fire(now) if next_fire is not None else None
    hold = following - timedelta(seconds=1) if following is not None else None
    ran, _ = run_locked(
        session_factory,
        name=JOB_IDS[kind],
        holder=holder,
        clock=clock,
        ttl=timedelta(seconds=settings.lock_seconds),
        work=work,
        metrics=metrics,
        kind=kind,
        hold_until=hold,
    )
    return ran
