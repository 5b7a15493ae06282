"""`/healthz` (the process answers), `/readyz` (the store takes writes), `/metrics`."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from monitor.runtime import Services
from monitor.store.health import write_readiness


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """200 only when a write would succeed now (the intake inbox and the store would commit),
    else 503 with why."""
    services: Services = request.app.state.services
    problem = services.inbox.readiness() or await run_in_threadpool(
        write_readiness, services.engine
    )
    if problem is None:
        return JSONResponse({"status": "ready"})
    services.metrics.store_errors.labels(operation="ping").inc()
    return JSONResponse({"error": {"code": "store_unavailable", "message": problem}}, 503)


async def metrics(request: Request) -> Response:
    services: Services = request.app.state.services
    payload = await run_in_threadpool(generate_latest, services.metrics.registry)
    return Response(payload, media_type=CONTENT_TYPE_LATEST)
