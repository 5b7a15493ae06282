"""`POST /v1/notifications`: the registry's webhook.

2xx only after the events are committed; idempotent on the event id; authenticated bodies
that cannot be used are quarantined and answered 2xx so they never block the registry's
queue; 401 and 413 are the only refusals; 503 when the store cannot commit.
"""

from __future__ import annotations

import functools
import time
from datetime import timedelta

import orjson
import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from monitor.api.auth import require_token
from monitor.api.body import SMALL_BODY_BYTES, LargeBodies, read_limited
from monitor.api.errors import error_response
from monitor.errors import MonitorError
from monitor.ingest.boundary import Window
from monitor.ingest.notification import describe_rejected, parse_envelope
from monitor.runtime import Services
from monitor.store.quarantine import Quarantined

log = structlog.get_logger("monitor.api.notifications")


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


async def receive(request: Request) -> Response:
    services: Services = request.app.state.services
    started = time.perf_counter()
    try:
        response = await _receive(request, services)
    except Exception:
        # Counted like every other answer; the traceback is logged once by the server.
        services.metrics.intake_requests.labels(code="500").inc()
        raise
    services.metrics.intake_requests.labels(code=str(response.status_code)).inc()
    services.metrics.intake_latency.observe(time.perf_counter() - started)
    return response


def window(services: Services) -> Window:
    """The times an event may carry, now."""
    return Window(services.clock(), timedelta(seconds=services.settings.input.clock_skew_seconds))


async def _receive(request: Request, services: Services) -> Response:
    settings = services.settings
    content_type = request.headers.get("content-type")
    parse = functools.partial(
        parse_envelope,
        content_type=content_type,
        window=window(services),
        max_events=settings.input.max_events_per_body,
    )
    try:
        require_token(request, settings.notifications.tokens, what="notifications")
        large_bodies: LargeBodies = request.app.state.large_bodies
        async with large_bodies.slot(request, settings.http.body_timeout_seconds):
            body = await read_limited(
                request, settings.http.max_body_bytes, settings.http.body_timeout_seconds
            )
            # A registry's envelope is a few kB and parsed here; a large body is parsed on a
            # worker thread so that it never holds the event loop answering other requests.
            if len(body) <= SMALL_BODY_BYTES:
                envelope = parse(body)
            else:
                envelope = await run_in_threadpool(parse, body)
    except MonitorError as exc:
        log.warning("notification refused", code=exc.code, remote_ip=_client_ip(request))
        return error_response(exc)
    quarantined: list[Quarantined] = []
    if envelope.rejected:
        reason, message = describe_rejected(envelope)
        quarantined.append(
            Quarantined(
                source="notification",
                reason=reason,
                message=message,
                body=body,
                content_type=content_type,
                remote_ip=_client_ip(request),
                count=envelope.rejected_count,
            )
        )
    try:
        result = await services.writer.write(envelope.events, quarantined)
    except MonitorError as exc:
        return error_response(exc)
    if result.quarantined:
        log.warning(
            "notification quarantined",
            reasons=sorted({q.reason for q in result.quarantine_rows}),
            quarantined=result.quarantined,
            accepted=len(result.inserted),
            remote_ip=_client_ip(request),
        )
    # Three integers: orjson writes the same bytes as JSONResponse at a fraction of the cost.
    answer = {
        "accepted": len(result.inserted),
        "duplicates": result.duplicates,
        "quarantined": result.quarantined,
    }
    return Response(orjson.dumps(answer), media_type="application/json")
