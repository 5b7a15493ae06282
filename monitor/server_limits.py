"""Limits of the HTTP server: slow or idle clients, floods, file descriptors.

- `BoundedH11Protocol`: uvicorn's h11 protocol with a header-read timeout. uvicorn closes an idle
  keep-alive connection, but a connection that never completes its request headers (idle from
  its first byte, or sending one byte at a time) would stay open forever and hold a file
  descriptor; here it is closed after `http.header_timeout_seconds`.
- `RateLimitedLoopErrors`: the event loop's exception handler. Under a connection flood the
  loop reports every failed `accept()` (EMFILE: "Too many open files") with a traceback; here
  they become one line per interval with the number suppressed.
- `raise_open_files_limit`: the soft limit of open files raised to the hard one, so the
  connection limit, not the descriptor limit, is what a flood meets first.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Callable
from typing import Any

import h11
import structlog
from uvicorn.protocols.http.h11_impl import H11Protocol

from monitor.observability.lograte import LogRate

log = structlog.get_logger("monitor.server")


def protocol_with_header_timeout(seconds: float) -> type[H11Protocol]:
    """The h11 protocol class closing connections whose request headers take over `seconds`."""
    return type("BoundedH11Protocol", (BoundedH11Protocol,), {"header_timeout": seconds})


class BoundedH11Protocol(H11Protocol):
    header_timeout: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._stop_header_timer()  # the request's headers are complete

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._start_header_timer()  # the next request on this connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def _start_header_timer(self) -> None:
        self._stop_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_timed_out)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


class RateLimitedLoopErrors:
    """An event-loop exception handler: at most one log line per `interval` seconds."""

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self._rate = LogRate(interval, clock)

    @property
    def suppressed(self) -> int:
        return self._rate.held("loop")

    def __call__(self, _loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        held = self._rate.admit("loop")
        if held is None:
            return
        exc = context.get("exception")
        log.error(
            "event loop error",
            message=str(context.get("message", ""))[:200],
            error=type(exc).__name__ if exc is not None else None,
            detail=str(exc)[:200] if exc is not None else None,
            suppressed=held,
        )


def raise_open_files_limit() -> int:
    """Raise the soft open-files limit to the hard limit; returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft
        return hard
    return soft
