"""The one place where MonitorError becomes an HTTP answer: `{"error": {"code", "message"}}`."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from monitor.errors import (
    AuthError,
    Busy,
    ConfigError,
    InvalidQuery,
    MonitorError,
    NotFound,
    ParseError,
    PayloadTooLarge,
    RequestTimeout,
    StoreUnavailable,
)

_STATUS: tuple[tuple[type[MonitorError], int], ...] = (
    (AuthError, 401),
    (PayloadTooLarge, 413),
    (RequestTimeout, 408),
    (InvalidQuery, 400),
    (ParseError, 400),
    (ConfigError, 400),
    (NotFound, 404),
    (StoreUnavailable, 503),
    (Busy, 503),
)


def status_of(exc: MonitorError) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return {"error": error}


def error_response(exc: MonitorError) -> JSONResponse:
    # Answered, the error needs no frames: its traceback would keep the request's body (up to
    # `logs.max_body_bytes`) alive in a reference cycle until the next full collection.
    exc.__traceback__ = None
    status = status_of(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, AuthError):
        headers["WWW-Authenticate"] = 'Bearer realm="registry-monitor"'
    if isinstance(exc, StoreUnavailable | Busy):
        headers["Retry-After"] = "1"
    details = {k: v for k, v in exc.details.items() if k in ("reason", "key")}
    return JSONResponse(error_body(exc.code, exc.message, details), status, headers=headers)


async def handle_monitor_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MonitorError)
    return error_response(exc)


async def handle_http_error(_request: Request, exc: Exception) -> Response:
    status = int(getattr(exc, "status_code", 500))
    detail = str(getattr(exc, "detail", "")) or "error"
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
    return JSONResponse(error_body(code, detail), status)
