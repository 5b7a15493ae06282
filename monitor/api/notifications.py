"""`POST /v1/notifications`: the registry's webhook.

2xx only after the events are committed; idempotent on the event id; authenticated bodies
that cannot be used are quarantined and answered 2xx so they never block the registry's
queue; 401 and 413 are the only refusals; 503 when the store cannot commit.
"""

from __future__ import annotations

import time

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from monitor.api.auth import require_token
from monitor.api.body import read_limited
from monitor.api.errors import error_response
from monitor.errors import MonitorError
from monitor.ingest.notification import parse_envelope
from monitor.runtime import Services
from monitor.store.quarantine import Quarantined

log = structlog.get_logger("monitor.api.notifications")


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


async def receive(request: Request) -> Response:
    services: Services = request.app.state.services
    started = time.perf_counter()
    response = await _receive(request, services)
    services.metrics.intake_requests.labels(code=str(response.status_code)).inc()
    services.metrics.intake_latency.observe(time.perf_counter() - started)
    return response


async def _receive(request: Request, services: Services) -> Response:
    settings = services.settings
    try:
        require_token(request, settings.notifications.tokens, what="notifications")
        body = await read_limited(request, settings.http.max_body_bytes)
    except MonitorError as exc:
        log.warning("notification refused", code=exc.code, remote_ip=_client_ip(request))
        return error_response(exc)
    content_type = request.headers.get("content-type")
    envelope = parse_envelope(body, content_type)
    quarantined = [
        Quarantined(
            source="notification",
            reason=r.reason,
            message=r.message,
            body=r.raw,
            content_type=content_type,
            remote_ip=_client_ip(request),
        )
        for r in envelope.rejected
    ]
    try:
        result = await services.writer.write(envelope.events, quarantined)
    except MonitorError as exc:
        return error_response(exc)
    if quarantined:
        log.warning(
            "notification quarantined",
            reasons=sorted({q.reason for q in quarantined}),
            accepted=len(result.inserted),
            remote_ip=_client_ip(request),
        )
    return JSONResponse(
        {
            "accepted": len(result.inserted),
            "duplicates": result.duplicates,
            "quarantined": result.quarantined,
        }
    )
