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
            Route("/v1/events", read.events, methods=["GET"]),
            Route("/v1/tags", read.tags, methods=["GET"]),
            Route("/v1/quarantine", read.quarantine, methods=["GET"]),
            Route("/v1/registry/starts", read.registry_starts, methods=["GET"]),
            Route("/v1/stats/daily", stats.daily, methods=["GET"]),
            Route("/v1/alerts", alerts.alerts, methods=["GET"]),
            Route("/v1/audit", audit.audit, methods=["GET"]),
            Route("/v1/cleanup/plans", cleanup.plans, methods=["GET"]),
            Route("/v1/cleanup/plans/{plan_id}", cleanup.plan, methods=["GET"]),
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
    app.state.large_bodies = LargeBodies(services.settings.http.large_body_slots)
    return app
