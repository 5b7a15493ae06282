"""`POST /v1/logs`: registry log lines from a log shipper (NDJSON, a JSON array, or text).

Same token rules as notifications. Events are committed before the answer; a record that
holds no log line is quarantined and the rest of the batch is still accepted.
"""

from __future__ import annotations

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from monitor.api.auth import require_token
from monitor.api.body import LargeBodies, read_limited
from monitor.api.errors import error_response
from monitor.errors import MonitorError
from monitor.ingest.shipped import parse_shipped
from monitor.observability.lograte import LogRate
from monitor.pipeline.log_ingest import LineLimits, LogStream
from monitor.runtime import Services
from monitor.store.quarantine import combine

log = structlog.get_logger("monitor.api.logs")


async def receive(request: Request) -> Response:
    services: Services = request.app.state.services
    settings = services.settings
    remote = request.client.host if request.client else None
    content_type = request.headers.get("content-type")
    stream = LogStream(services.metrics, LineLimits.of(settings.input, services.clock))
    try:
        require_token(request, settings.notifications.tokens, what="logs")
        large_bodies: LargeBodies = request.app.state.large_bodies
        async with large_bodies.slot(request, settings.http.body_timeout_seconds):
            body = await read_limited(
                request, settings.logs.max_body_bytes, settings.http.body_timeout_seconds
            )
            batch = await run_in_threadpool(
                parse_shipped, body, content_type, max_records=settings.input.max_records_per_body
            )
            del body
            fed = await run_in_threadpool(stream.feed_screened, list(batch.lines))
    except MonitorError as exc:
        log_rate: LogRate = request.app.state.intake_log_rate
        if (held := log_rate.admit(f"logs {exc.code}")) is not None:
            log.warning("log batch refused", code=exc.code, remote_ip=remote, held_back=held)
        return error_response(exc)
    parts = [
        (
            reason,
            "the record holds no log line" if reason == "no_log_line" else "not JSON",
            raw,
        )
        for reason, raw in batch.rejected
    ]
    quarantined = combine(
        "log",
        parts + fed.rejected,
        count=batch.rejected_count + len(fed.rejected),
        content_type=content_type,
        remote_ip=remote,
    )
    rows = [quarantined] if quarantined is not None else []
    try:
        result = await services.writer.write(fed.events, rows, also=fed.save_records)
    except MonitorError as exc:
        return error_response(exc)
    return JSONResponse(
        {
            "lines": len(batch.lines),
            "accepted": len(result.inserted),
            "duplicates": result.duplicates,
            "quarantined": result.quarantined,
        }
    )
