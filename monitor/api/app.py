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
from monitor.api.read_process import ReadProcess
from monitor.api.readslots import Endpoint, ReadSlots, limited
from monitor.errors import MonitorError
from monitor.observability.lograte import LogRate
from monitor.runtime import ReadContext, Services

Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]

READ_ROUTES: tuple[tuple[str, Endpoint], ...] = (
    ("/v1/events", read.events),
    ("/v1/tags", read.tags),
    ("/v1/quarantine", read.quarantine),
    ("/v1/registry/starts", read.registry_starts),
    ("/v1/stats/daily", stats.daily),
    ("/v1/alerts", alerts.alerts),
    ("/v1/audit", audit.audit),
    ("/v1/cleanup/plans", cleanup.plans),
    ("/v1/cleanup/plans/{plan_id}", cleanup.plan),
    ("/v1/cleanup/plans/{plan_id}/decisions", cleanup.plan_decisions),
    ("/v1/cleanup/plans/{plan_id}/actions", cleanup.plan_actions),
    ("/v1/cleanup/plans/{plan_id}/journal", cleanup.plan_journal),
)
"""The read API: answered within the read slots, by `serve`'s threads or its read process."""

INTAKE_LOG_SECONDS = 10.0
"""At most one log line per kind of refused notification this often (they count every one)."""

EXCEPTION_HANDLERS = {MonitorError: handle_monitor_error, HTTPException: handle_http_error}


def create_app(
    services: Services, *, lifespan: Lifespan | None = None, reads: ReadProcess | None = None
) -> Starlette:
    """The app; `lifespan` starts and stops whatever the caller wants tied to it; `reads`, when
    given, answers the read API in its process instead of on this one's threads."""

    @asynccontextmanager
    async def no_lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield

    app = Starlette(
        routes=[
            Route("/v1/notifications", notifications.receive, methods=["POST"]),
            Route("/v1/logs", logs.receive, methods=["POST"]),
            *(Route(path, limited(endpoint), methods=["GET"]) for path, endpoint in READ_ROUTES),
            Route("/healthz", health.healthz, methods=["GET"]),
            Route("/readyz", health.readyz, methods=["GET"]),
            Route("/metrics", health.metrics, methods=["GET"]),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan or no_lifespan,
    )
    app.state.services = services
    app.state.reads = reads
    http = services.settings.http
    app.state.large_bodies = LargeBodies(http.large_body_slots)
    app.state.intake_log_rate = LogRate(INTAKE_LOG_SECONDS)
    app.state.read_slots = ReadSlots(
        http.read_slots, http.read_queue, http.read_wait_seconds, services.metrics.read_rejected
    )
    return app


def read_app(services: ReadContext) -> Starlette:
    """The read API alone, as the read process answers it (its slots are `serve`'s)."""
    app = Starlette(
        routes=[Route(path, endpoint, methods=["GET"]) for path, endpoint in READ_ROUTES],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.services = services
    return app
