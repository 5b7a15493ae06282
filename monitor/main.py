"""Composition root: Settings → engine, writer, metrics, scheduler, app. The only module that
imports from every layer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from monitor import jobs
from monitor.alerting.notifier import Notifier
from monitor.alerting.outbox import RetryPolicy
from monitor.alerting.slack import BotNotifier, WebhookNotifier
from monitor.alerting.throttle import Budget
from monitor.api.app import Lifespan, create_app
from monitor.audit.model import check_ids
from monitor.audit.probe import LiveProbe
from monitor.cleanup.scheduled import JOB_IDS, run_scheduled
from monitor.clock import Clock, utc_now
from monitor.detect.config import load_detect_config
from monitor.detect.engine import Detector
from monitor.detect.roles import load_roles
from monitor.ingest.tailer import Follower
from monitor.log_ingest import FollowJob, LineLimits
from monitor.observability.audit_metrics import AuditCollector
from monitor.observability.collectors import StoreCollector
from monitor.observability.metrics import make_metrics
from monitor.observability.registry_debug import RegistryDebugCollector
from monitor.pipeline.audit import scheduled_audit, sources_from
from monitor.pipeline.cleanup_summary import outbox_sender
from monitor.pipeline.delivery import deliver_pass, record_delivery
from monitor.pipeline.detection import catch_up, detect_pass, record_detection
from monitor.pipeline.reconcile import scheduled_reconcile
from monitor.runtime import Services
from monitor.settings import AlertingSettings, DetectSettings, RegistrySettings, Settings
from monitor.store.checkpoints import StoreCheckpoints
from monitor.store.engine import make_engine, make_session_factory
from monitor.store.migrate import upgrade
from monitor.store.writer import StoreWriter

log = structlog.get_logger("monitor.main")


def build_notifier(settings: AlertingSettings) -> Notifier | None:
    """Slack through the bot token and channel, else the webhook, else None (not sent)."""
    if settings.slack_bot_token is not None and settings.slack_channel:
        return BotNotifier(
            settings.slack_bot_token.reveal(),
            settings.slack_channel,
            base_url=settings.slack_api_url,
            timeout=settings.timeout_seconds,
        )
    if settings.slack_webhook_url is not None:
        return WebhookNotifier(
            settings.slack_webhook_url.reveal(), timeout=settings.timeout_seconds
        )
    return None


def build_detector(settings: DetectSettings) -> Detector:
    config = load_detect_config(settings.rules_file, allow_cidrs=settings.allow_cidrs)
    return Detector(config, load_roles(settings.roles_file))


def build_registry_debug(
    settings: RegistrySettings, registry: CollectorRegistry
) -> httpx.Client | None:
    """The HTTP client of the /debug/vars bridge, its collector registered; None when unset."""
    if settings.debug_url is None:
        return None
    client = httpx.Client(timeout=settings.debug_timeout_seconds, follow_redirects=False)
    registry.register(
        RegistryDebugCollector(
            client, settings.debug_url, max_endpoints=settings.debug_max_endpoints
        )
    )
    return client


def build_services(
    settings: Settings,
    *,
    clock: Clock = utc_now,
    registry: CollectorRegistry | None = None,
    migrate: bool | None = None,
    notifier: Notifier | None = None,
) -> Services:
    """Every shared resource, built once. The writer is created but not started.

    `notifier` replaces the one the alerting settings describe (tests pass a recording one).
    """
    detector = build_detector(settings.detect)
    engine = make_engine(settings.database)
    if settings.database.migrate_on_start if migrate is None else migrate:
        upgrade(engine)
    session_factory = make_session_factory(engine)
    registry = registry if registry is not None else CollectorRegistry()
    metrics = make_metrics(registry)
    registry.register(
        StoreCollector(session_factory, clock=clock, store_errors=metrics.store_errors)
    )
    registry.register(
        AuditCollector(session_factory, clock=clock, store_errors=metrics.store_errors)
    )
    registry_debug = build_registry_debug(settings.registry, registry)
    writer = StoreWriter(
        session_factory,
        metrics=metrics,
        clock=clock,
        batch_max=settings.notifications.batch_max,
        quarantine_max_rows=settings.input.quarantine_max_rows,
    )
    replica = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    return Services(
        settings=settings,
        engine=engine,
        session_factory=session_factory,
        writer=writer,
        metrics=metrics,
        clock=clock,
        replica=replica,
        detector=detector,
        notifier=notifier if notifier is not None else build_notifier(settings.alerting),
        budget=Budget(per_hour=settings.alerting.budget_per_hour),
        retry=RetryPolicy(
            base_seconds=settings.alerting.retry_min_seconds,
            cap_seconds=settings.alerting.retry_max_seconds,
        ),
        registry_debug=registry_debug,
    )


def build_scheduler(services: Services) -> BackgroundScheduler:
    """Every scheduled job, in one table, with stable ids."""
    scheduler = BackgroundScheduler(timezone="UTC")
    defaults: dict[str, Any] = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 300}
    retention = services.settings.retention
    if retention.schedule.strip():
        scheduler.add_job(
            lambda: jobs.expire(
                services.writer.transact, now=services.clock(), days=retention.events_days
            ),
            CronTrigger.from_crontab(retention.schedule, timezone="UTC"),
            id="expire-events",
            **defaults,
        )
    _add_cleanup_jobs(scheduler, services, defaults)
    _add_audit_job(scheduler, services, defaults)
    _add_reconcile_job(scheduler, services, defaults)
    return scheduler


def _add_reconcile_job(
    scheduler: BackgroundScheduler, services: Services, defaults: dict[str, Any]
) -> None:
    """Rebuild the events of logged requests whose notifications never came, every
    `reconcile.interval_seconds` (0: never), once across replicas."""
    reconcile = services.settings.reconcile
    if reconcile.interval_seconds <= 0:
        return

    def run() -> None:
        try:
            scheduled_reconcile(
                services.session_factory,
                services.writer,
                now=services.clock(),
                holder=services.replica,
                settle_seconds=reconcile.settle_seconds,
                interval_seconds=reconcile.interval_seconds,
                metrics=services.metrics,
            )
        except Exception as exc:
            services.metrics.store_errors.labels(operation="reconcile").inc()
            log.warning("reconcile failed", error=type(exc).__name__, detail=str(exc)[:300])

    scheduler.add_job(
        run, "interval", id="reconcile-events", seconds=reconcile.interval_seconds, **defaults
    )


def _add_audit_job(
    scheduler: BackgroundScheduler, services: Services, defaults: dict[str, Any]
) -> None:
    """The registry audit every `audit.interval_seconds`, once across replicas; first run at
    start. Only with `audit.registry_config` or `audit.url`."""
    settings = services.settings
    audit = settings.audit
    if audit.registry_config is None and audit.url is None:
        return
    sources = sources_from(audit, settings.logs, settings.cleanup)
    probe = LiveProbe(timeout=audit.timeout_seconds)
    accepted = check_ids(audit.accept, key="audit.accept")

    def run() -> None:
        try:
            scheduled_audit(
                services.session_factory,
                sources=sources,
                probe=probe,
                now=services.clock(),
                holder=services.replica,
                interval_seconds=audit.interval_seconds,
                accepted=accepted,
            )
        except Exception as exc:
            services.metrics.store_errors.labels(operation="audit").inc()
            log.warning("audit failed", error=type(exc).__name__, detail=str(exc)[:300])

    scheduler.add_job(
        run,
        "interval",
        id="registry-audit",
        seconds=audit.interval_seconds,
        next_run_time=services.clock(),
        **defaults,
    )


def _add_cleanup_jobs(
    scheduler: BackgroundScheduler, services: Services, defaults: dict[str, Any]
) -> None:
    """Reconcile, plan and (with apply_on_schedule) apply, each once across replicas.

    A scheduled apply's summary is queued in the alert outbox for Slack.
    """
    cleanup = services.settings.cleanup
    wanted = {
        "reconcile": cleanup.registry_url is not None,
        "plan": cleanup.policies_file is not None,
        "apply": cleanup.apply_on_schedule
        and cleanup.registry_url is not None
        and cleanup.policies_file is not None,
    }
    crons = {
        "reconcile": cleanup.reconcile_schedule,
        "plan": cleanup.plan_schedule,
        "apply": cleanup.apply_schedule,
    }
    for kind, enabled in wanted.items():
        if not enabled or not crons[kind].strip():
            continue
        trigger = CronTrigger.from_crontab(crons[kind], timezone="UTC")

        def run(kind: str = kind, trigger: CronTrigger = trigger) -> None:
            run_scheduled(
                kind,
                session_factory=services.session_factory,
                settings=cleanup,
                holder=services.replica,
                clock=services.clock,
                metrics=services.metrics,
                send_summary=outbox_sender(services.session_factory, services.clock),
                next_fire=lambda now: trigger.get_next_fire_time(None, now),
            )

        scheduler.add_job(run, trigger, id=JOB_IDS[kind], **defaults)


async def _heartbeats(services: Services, stop: asyncio.Event) -> None:
    """Record coverage until `stop` is set; a heartbeat in progress always finishes."""
    interval = services.settings.notifications.heartbeat_seconds
    while not stop.is_set():
        try:
            await asyncio.to_thread(
                jobs.heartbeat,
                services.session_factory,
                replica=services.replica,
                now=services.clock(),
                interval=interval,
            )
        except Exception as exc:
            services.metrics.store_errors.labels(operation="heartbeat").inc()
            log.warning("heartbeat failed", error=type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


def detect_once(services: Services) -> None:
    """One detection pass, counted in the metrics."""
    now = services.clock()
    report = detect_pass(
        services.session_factory,
        services.detector,
        now=now,
        settle=timedelta(seconds=services.settings.detect.settle_seconds),
        transact=services.writer.transact,
    )
    record_detection(services.metrics, report, now)


def detect_backlog(services: Services) -> bool:
    """Detection passes until caught up, growing while they come back full (at most 30 s);
    True when it stopped with more left to judge."""
    report = catch_up(
        services.session_factory,
        services.detector,
        clock=services.clock,
        settle=timedelta(seconds=services.settings.detect.settle_seconds),
        on_pass=lambda pass_report, now: record_detection(services.metrics, pass_report, now),
        transact=services.writer.transact,
    )
    return report.behind


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


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=max(seconds, 0.0))


async def _detection(services: Services, stop: asyncio.Event) -> None:
    """Detection until `stop`: caught up, then every interval; right away while behind."""
    interval = services.settings.detect.interval_seconds
    while not stop.is_set():
        behind = False
        try:
            behind = await asyncio.to_thread(detect_backlog, services)
        except Exception as exc:
            services.metrics.store_errors.labels(operation="detect").inc()
            log.warning("detection pass failed", error=type(exc).__name__, detail=str(exc)[:300])
        await _pause(stop, 0 if behind else interval)


async def _delivery(services: Services, stop: asyncio.Event) -> None:
    """Delivery passes until `stop`, waiting out a Slack 429 (`not_before`)."""
    interval = services.settings.alerting.interval_seconds
    while not stop.is_set():
        wait = interval
        try:
            not_before = await asyncio.to_thread(deliver_once, services)
            if not_before is not None:
                wait = max(interval, (not_before - services.clock()).total_seconds())
        except Exception as exc:
            services.metrics.store_errors.labels(operation="deliver").inc()
            log.warning("delivery pass failed", error=type(exc).__name__, detail=str(exc)[:300])
        await _pause(stop, wait)


def build_follow_job(services: Services, globs: list[str] | None = None) -> FollowJob | None:
    """The follower of `logs.paths` (or `globs`), checkpointed in the store; None without paths."""
    paths = services.settings.logs.paths if globs is None else globs
    if not paths:
        return None
    follower = Follower(
        paths,
        StoreCheckpoints(services.session_factory),
        start_at_end=services.settings.logs.start_at_end,
    )
    return FollowJob(
        follower,
        writer=services.writer,
        metrics=services.metrics,
        clock=services.clock,
        poll_seconds=services.settings.logs.poll_seconds,
        limits=LineLimits.of(services.settings.input, services.clock),
    )


def make_lifespan(
    services: Services,
    *,
    scheduler: BackgroundScheduler | None = None,
    listening: str | None = None,
) -> Lifespan:
    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        services.writer.start()
        stop = asyncio.Event()
        beat = asyncio.create_task(_heartbeats(services, stop))
        jobs_running = [asyncio.create_task(_detection(services, stop))]
        if services.notifier is None:
            log.warning("no Slack configured: alerts are stored and counted, not sent")
        else:
            jobs_running.append(asyncio.create_task(_delivery(services, stop)))
        follow = build_follow_job(services)
        if follow is not None:
            follow.start()
        if scheduler is not None:
            scheduler.start()
        log.info(
            "registry-monitor started",
            listening=listening or services.settings.http.addr,
            replica=services.replica,
        )
        try:
            yield
        finally:
            stop.set()
            if follow is not None:
                await asyncio.to_thread(follow.stop)
            await asyncio.gather(beat, *jobs_running, return_exceptions=True)
            if scheduler is not None:
                scheduler.shutdown(wait=False)
            services.writer.stop()
            if services.registry_debug is not None:
                services.registry_debug.close()
            services.engine.dispose()
            log.info("registry-monitor stopped", replica=services.replica)

    return lifespan


def build_app(
    services: Services, *, with_scheduler: bool = True, listening: str | None = None
) -> Starlette:
    scheduler = build_scheduler(services) if with_scheduler else None
    lifespan = make_lifespan(services, scheduler=scheduler, listening=listening)
    return create_app(services, lifespan=lifespan)
