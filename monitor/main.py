"""Composition root: Settings → services (engine, writer, metrics, detector, notifier) and the
app, whose lifespan runs the job table (monitor.pipeline.jobs). The only module that imports
from every layer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import structlog
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from monitor.alerting.notifier import Notifier
from monitor.alerting.outbox import RetryPolicy
from monitor.alerting.slack import BotNotifier, WebhookNotifier
from monitor.alerting.throttle import Budget
from monitor.api.app import Lifespan, create_app
from monitor.api.read_process import ReadProcess
from monitor.clock import Clock, utc_now
from monitor.observability.audit_metrics import AuditCollector
from monitor.observability.collectors import StoreCollector, TagGauges
from monitor.observability.metrics import make_metrics
from monitor.observability.registry_debug import RegistryDebugCollector
from monitor.pipeline.applier import Applier, IntakeApplier
from monitor.pipeline.applier_process import ApplierConfig, ApplierProcess
from monitor.pipeline.detection import build_detector
from monitor.pipeline.jobs import job_table
from monitor.pipeline.scheduler import JobRunner
from monitor.runtime import Services
from monitor.settings import AlertingSettings, RegistrySettings, Settings
from monitor.store.engine import make_engine, make_session_factory
from monitor.store.inboxes import make_inbox
from monitor.store.migrate import upgrade_apart
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


def applier_config(settings: Settings, *, receiver: str, dialect: str) -> ApplierConfig:
    """What the applier's process is given: how to apply the inbox of `receiver`, and each job
    of `serve`'s table it runs instead of `serve` (those its settings ask for). On SQLite
    (`dialect`) that includes the expiry of raw events, so that one process writes the store;
    PostgreSQL takes writers side by side, and expiry stays on `serve`'s writer, where it does
    not wait behind the applier's backlog nor share the applier's (lowered) priority."""
    expires = dialect == "sqlite" and bool(settings.retention.schedule.strip())
    return ApplierConfig(
        database=settings.database,
        logging=settings.logging,
        receiver=receiver,
        inbox_file=settings.notifications.inbox_file,
        batch_max=settings.notifications.batch_max,
        quarantine_max_rows=settings.input.quarantine_max_rows,
        skew=timedelta(seconds=settings.input.clock_skew_seconds),
        max_events=settings.input.max_events_per_body,
        detect=settings.detect,
        logs=settings.logs if settings.logs.paths else None,
        max_line_chars=settings.input.max_line_chars,
        reconcile=settings.reconcile if settings.reconcile.interval_seconds > 0 else None,
        cleanup=settings.cleanup,
        retention=settings.retention if expires else None,
    )


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
    Nothing here starts a thread: `serve` forks its children once this is built, having closed
    the store connections the schema check left in the engine's pool (monitor/server.py).
    """
    detector = build_detector(settings.detect)
    engine = make_engine(settings.database)
    if settings.database.migrate_on_start if migrate is None else migrate:
        upgrade_apart(settings.database, engine)
    session_factory = make_session_factory(engine)
    registry = registry if registry is not None else CollectorRegistry()
    metrics = make_metrics(registry)
    tag_gauges = TagGauges(session_factory, clock=clock)
    registry.register(
        StoreCollector(
            session_factory, clock=clock, store_errors=metrics.store_errors, tag_gauges=tag_gauges
        )
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
    inbox = make_inbox(
        engine,
        session_factory,
        synchronous=settings.database.sqlite_synchronous,
        receiver=replica,
        inbox_file=settings.notifications.inbox_file,
    )
    metrics.intake_backlog.set_function(inbox.backlog)
    inbox.on_retry(lambda reason: metrics.intake_inbox_retries.labels(reason=reason).inc())
    applier: Applier
    if settings.notifications.applier == "process":
        config = applier_config(settings, receiver=replica, dialect=engine.url.get_backend_name())
        applier = ApplierProcess(config, inbox, metrics=metrics)
    else:
        applier = IntakeApplier(
            inbox,
            writer,
            metrics=metrics,
            clock=clock,
            skew=timedelta(seconds=settings.input.clock_skew_seconds),
            max_events=settings.input.max_events_per_body,
        )
    inbox.on_append(applier.wake)
    return Services(
        settings=settings,
        engine=engine,
        session_factory=session_factory,
        writer=writer,
        inbox=inbox,
        applier=applier,
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
        tag_gauges=tag_gauges,
    )


def make_lifespan(
    services: Services,
    *,
    with_jobs: bool = True,
    listening: str | None = None,
    reads: ReadProcess | None = None,
) -> Lifespan:
    """Starts the writer, the intake inbox and its applier and (unless `with_jobs` is False) the
    job table; stops them in turn, after the read process (if any)."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(services.start)
        stopping = threading.Event()
        runner = JobRunner(
            job_table(services, stopping=stopping) if with_jobs else (),
            session_factory=services.session_factory,
            holder=services.replica,
            clock=services.clock,
            metrics=services.metrics,
            stopping=stopping,
        )
        runner.start()
        log.info(
            "registry-monitor started",
            listening=listening or services.settings.http.addr,
            replica=services.replica,
        )
        try:
            yield
        finally:
            if reads is not None:
                await reads.aclose()
            await asyncio.to_thread(runner.stop)
            await asyncio.to_thread(services.stop)
            if services.registry_debug is not None:
                services.registry_debug.close()
            services.engine.dispose()
            log.info("registry-monitor stopped", replica=services.replica)

    return lifespan


def build_app(
    services: Services,
    *,
    with_jobs: bool = True,
    listening: str | None = None,
    reads: ReadProcess | None = None,
) -> Starlette:
    """The app with its lifespan; `reads` answers the read API in its own process."""
    lifespan = make_lifespan(services, with_jobs=with_jobs, listening=listening, reads=reads)
    return create_app(services, lifespan=lifespan, reads=reads)
