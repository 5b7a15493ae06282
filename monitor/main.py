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

import structlog
import uvicorn
from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from monitor import jobs
from monitor.api.app import Lifespan, create_app
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
    defaults = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 300}
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
    return scheduler


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


def make_lifespan(services: Services, *, scheduler: BackgroundScheduler | None = None) -> Lifespan:
    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        services.writer.start()
        stop = asyncio.Event()
        beat = asyncio.create_task(_heartbeats(services, stop))
        if scheduler is not None:
            scheduler.start()
        log.info("registry-monitor started", replica=services.replica)
        try:
            yield
        finally:
            stop.set()
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
