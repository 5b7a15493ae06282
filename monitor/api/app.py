"""The starlette application. Resources come in through `Services`; none are built here."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Route

from monitor.api import alerts, audit, cleanup, health, logs, notifications, read, stats
from monitor.api.body import LargeBodies
from monitor.api.errors import handle_http_error, handle_monitor_error
from monitor.api.readslots import ReadSlots, limited
from monitor.errors import MonitorError
from monitor.runtime import Services

Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]


def create_app(services: Services, *, lifespan: Lifespan | None = None) -> Starlette:
    """The app; `lifespan` starts and stops whatever the caller wants tied to it."""

    @asynccontextmanager
    async def no_lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield

    app = Starlette(
        routes=[
            Route("/v1/notifications", notifications.receive, methods=["POST"]),
            Route("/v1/logs", logs.receive, methods=["POST"]),
            Route("/v1/events", limited(read.events), methods=["GET"]),
            Route("/v1/tags", limited(read.tags), methods=["GET"]),
            Route("/v1/quarantine", limited(read.quarantine), methods=["GET"]),
            Route("/v1/registry/starts", limited(read.registry_starts), methods=["GET"]),
            Route("/v1/stats/daily", limited(stats.daily), methods=["GET"]),
            Route("/v1/alerts", limited(alerts.alerts), methods=["GET"]),
            Route("/v1/audit", limited(audit.audit), methods=["GET"]),
            Route("/v1/cleanup/plans", limited(cleanup.plans), methods=["GET"]),
            Route("/v1/cleanup/plans/{plan_id}", limited(cleanup.plan), methods=["GET"]),
            Route("/healthz", health.healthz, methods=["GET"]),
            Route("/readyz", health.readyz, methods=["GET"]),
            Route("/metrics", health.metrics, methods=["GET"]),
        ],
        exception_handlers={
            MonitorError: handle_monitor_error,
            HTTPException: handle_http_error,
        },
        lifespan=lifespan or no_lifespan,
    )
    app.state.services = services
    http = services.settings.http
    app.state.large_bodies = LargeBodies(http.large_body_slots)
    app.state.read_slots = ReadSlots(
        http.read_slots, http.read_queue, http.read_wait_seconds, services.metrics.read_rejected
    )
    return app
