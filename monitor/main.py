"""Composition root: Settings → engine, writer, metrics, scheduler, app. The only module that
imports from every layer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import structlog
import uvicorn
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from monitor import jobs
from monitor.api.app import Lifespan, create_app
from monitor.cleanup.scheduled import JOB_IDS, run_scheduled
from monitor.observability.metrics import make_metrics
from monitor.runtime import Clock, Services
from monitor.settings import Settings
from monitor.store.engine import make_engine, make_session_factory
from monitor.store.migrate import upgrade
from monitor.store.writer import StoreWriter

log = structlog.get_logger("monitor.main")


def utc_now() -> datetime:
    return datetime.now(UTC)


def build_services(
    settings: Settings,
    *,
    clock: Clock = utc_now,
    registry: CollectorRegistry | None = None,
    migrate: bool | None = None,
) -> Services:
    """Every shared resource, built once. The writer is created but not started."""
    engine = make_engine(settings.database)
    if settings.database.migrate_on_start if migrate is None else migrate:
        upgrade(engine)
    session_factory = make_session_factory(engine)
    metrics = make_metrics(registry if registry is not None else CollectorRegistry())
    writer = StoreWriter(
        session_factory,
        metrics=metrics,
        clock=clock,
        batch_max=settings.notifications.batch_max,
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
    )


def build_scheduler(services: Services) -> BackgroundScheduler:
    """Every scheduled job, in one table, with stable ids."""
    scheduler = BackgroundScheduler(timezone="UTC")
    defaults: dict[str, Any] = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 300}
    scheduler.add_job(
        lambda: jobs.expire(
            services.session_factory,
            now=services.clock(),
            days=services.settings.retention.events_days,
        ),
        "cron",
        id="expire-events",
        hour=3,
        minute=17,
        **defaults,
    )
    _add_cleanup_jobs(scheduler, services, defaults)
    return scheduler


def _add_cleanup_jobs(
    scheduler: BackgroundScheduler, services: Services, defaults: dict[str, Any]
) -> None:
    """Reconcile, plan and (with apply_on_schedule) apply, each once across replicas.

    Slack summaries of scheduled applies are not wired yet: `send_summary` is None.
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
                send_summary=None,
                next_fire=lambda now: trigger.get_next_fire_time(None, now),
            )

        scheduler.add_job(run, trigger, id=JOB_IDS[kind], **defaults)


async def _heartbeats(services: Services) -> None:
    interval = services.settings.notifications.heartbeat_seconds
    while True:
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
        await asyncio.sleep(interval)


def make_lifespan(services: Services, *, scheduler: BackgroundScheduler | None = None) -> Lifespan:
    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        services.writer.start()
        beat = asyncio.create_task(_heartbeats(services))
        if scheduler is not None:
            scheduler.start()
        log.info("registry-monitor started", replica=services.replica)
        try:
            yield
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            if scheduler is not None:
                scheduler.shutdown(wait=False)
            services.writer.stop()
            services.engine.dispose()
            log.info("registry-monitor stopped", replica=services.replica)

    return lifespan


def build_app(services: Services, *, with_scheduler: bool = True) -> Starlette:
    scheduler = build_scheduler(services) if with_scheduler else None
    return create_app(services, lifespan=make_lifespan(services, scheduler=scheduler))


def serve(settings: Settings) -> None:
    services = build_services(settings)
    app = build_app(services)
    http = settings.http
    config = uvicorn.Config(
        app,
        host=http.host,
        port=http.port,
        ssl_certfile=str(http.tls_cert) if http.tls_cert else None,
        ssl_keyfile=str(http.tls_key) if http.tls_key else None,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run()
