"""`/healthz` (the process answers), `/readyz` (the store answers), `/metrics`."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from monitor.runtime import Services


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    services: Services = request.app.state.services

    def ping() -> bool:
        try:
            with services.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    if await run_in_threadpool(ping):
        return JSONResponse({"status": "ready"})
    services.metrics.store_errors.labels(operation="ping").inc()
    return JSONResponse(
        {"error": {"code": "store_unavailable", "message": "the store does not answer"}}, 503
    )


async def metrics(request: Request) -> Response:
    services: Services = request.app.state.services
    payload = await run_in_threadpool(generate_latest, services.metrics.registry)
    return Response(payload, media_type=CONTENT_TYPE_LATEST)
