"""`POST /v1/notifications`: the registry's webhook.

2xx only after the body is durably committed to the intake inbox (monitor/store/inbox.py),
from which the applier stores its events (idempotent on the event id) or quarantines what
cannot be used; so the answer costs one small append, whatever the store holds or is busy
with. 401 and 413 are the only refusals; 503 when the inbox cannot commit or holds more than
`notifications.inbox_max` bodies not yet applied (the registry keeps the event and retries).
How long each answer waited for that commit is `registry_monitor_intake_inbox_seconds`, so a
slow answer tells whether the store (its disk) or the process held it.
Refusals are logged at most once per code every 10 s (monitor/observability/lograte.py); the
intake counters count every one.
"""

from __future__ import annotations

import time

import orjson
import structlog
from starlette.requests import Request
from starlette.responses import Response

from monitor.api.auth import require_token
from monitor.api.body import LargeBodies, read_limited
from monitor.api.errors import error_response
from monitor.errors import Busy, MonitorError, StoreUnavailable
from monitor.observability.lograte import LogRate
from monitor.runtime import Services

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


async def _receive(request: Request, services: Services) -> Response:
    settings = services.settings
    try:
        require_token(request, settings.notifications.tokens, what="notifications")
        large_bodies: LargeBodies = request.app.state.large_bodies
        async with large_bodies.slot(request, settings.http.body_timeout_seconds):
            body = await read_limited(
                request, settings.http.max_body_bytes, settings.http.body_timeout_seconds
            )
        backlog = services.inbox.backlog()
        if backlog >= settings.notifications.inbox_max:
            raise Busy(
                f"{backlog} notifications wait to be applied; the registry keeps this one and "
                "sends it again",
                details={"reason": "intake_backlog"},
            )
        appending = time.perf_counter()
        await services.inbox.append(
            body, request.headers.get("content-type"), _client_ip(request), services.clock()
        )
        services.metrics.intake_inbox.observe(time.perf_counter() - appending)
    except StoreUnavailable as exc:
        services.metrics.store_errors.labels(operation="intake").inc()
        log_rate: LogRate = request.app.state.intake_log_rate
        if (held := log_rate.admit("not stored")) is not None:
            log.error(
                "notification not stored",
                detail=exc.details.get("error"),
                reason=str(exc.__cause__) if exc.__cause__ is not None else None,
                held_back=held,
            )
        return error_response(exc)
    except MonitorError as exc:
        log_rate = request.app.state.intake_log_rate
        if (held := log_rate.admit(exc.code)) is not None:
            log.warning(
                "notification refused", code=exc.code, remote_ip=_client_ip(request), held_back=held
            )
        return error_response(exc)
    # The body is durable; the applier parses it and stores its events (or quarantines it).
    return Response(_QUEUED, media_type="application/json")


_QUEUED = orjson.dumps({"queued": True})
