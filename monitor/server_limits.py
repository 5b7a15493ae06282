"""Limits of the HTTP server: slow or idle clients, floods, file descriptors.

- `BoundedHttpToolsProtocol`: uvicorn's httptools protocol with a header-read timeout and a
  bound on a request head's bytes. uvicorn closes an idle keep-alive connection, but a
  connection that never completes its request headers (idle from its first byte, or sending one
  byte at a time) would stay open forever and hold a file descriptor; here it is closed after
  `http.header_timeout_seconds`, or at once (400) when its head exceeds `http.max_header_bytes`
  (httptools itself has no such bound). It reads at most `READ_BYTES` at a time.
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

import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from monitor.observability.lograte import LogRate

log = structlog.get_logger("monitor.server")

READ_BYTES = 64 * 1024
"""The most a connection's read takes at once. asyncio's transport reads 256 KiB at a time:
a buffer above the allocator's mapping threshold (monitor/allocator.py), so every request,
whatever its size, cost an mmap, an mremap, a munmap and a page fault (BENCHMARKS.md: at 64
connections about a tenth of `serve`'s CPU). A smaller buffer comes from the heap; a large
body takes more reads."""


def bounded_protocol(*, header_timeout: float, max_header_bytes: int) -> type[HttpToolsProtocol]:
    """The HTTP protocol class with this server's limits on request heads."""
    return type(
        "BoundedHttpToolsProtocol",
        (BoundedHttpToolsProtocol,),
        {"header_timeout": header_timeout, "max_header_bytes": max_header_bytes},
    )


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, bounding each request head in time and in bytes.

    A head is the request line and headers. It must arrive within `header_timeout` seconds,
    counted from the connection's start or, on a kept-alive connection, from the moment the
    previous request was both read whole and answered; and within `max_header_bytes` bytes,
    counted from the end of the previous request's body. Otherwise the connection is closed
    (400 when too large). The parser keeps an unfinished head in memory, so without the byte
    bound a client could grow it for as long as the timeout lets it. Bytes are counted per
    received chunk: a head that starts in the chunk ending the previous request (pipelining)
    is counted from its next chunk, so a head never holds more than the bound plus one chunk.
    """

    header_timeout: float = 10.0
    max_header_bytes: int = 16 * 1024
    _header_timer: asyncio.TimerHandle | None = None
    _awaiting_head = True  # the previous request (if any) was read whole; its head is next
    _heads = 0  # request heads completed on this connection
    _messages = 0  # requests read whole on this connection
    _head_bytes = 0  # bytes received while awaiting the current head

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if isinstance(getattr(transport, "max_size", None), int):  # asyncio's socket transport
            transport.max_size = READ_BYTES  # type: ignore[attr-defined]
        super().connection_made(transport)
        self._time_the_head()

    def data_received(self, data: bytes) -> None:
        heads, messages = self._heads, self._messages
        super().data_received(data)
        if (
            not self._awaiting_head
            or heads != self._heads
            or messages != self._messages  # it ended a request: not the next head's chunk
            or self.transport.is_closing()
        ):
            return
        self._head_bytes += len(data)
        if self._head_bytes > self.max_header_bytes:
            self._stop_header_timer()
            self.send_400_response("Request line and headers too large.")

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._heads += 1
        self._stop_header_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._messages += 1
        self._awaiting_head = True
        self._head_bytes = 0
        self._time_the_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._time_the_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def _time_the_head(self) -> None:
        """The next head's time runs once the previous request is read and answered."""
        answered = self.cycle is None or self.cycle.response_complete
        if self._awaiting_head and answered and not self.transport.is_closing():
            self._stop_header_timer()
            self._header_timer = self.loop.call_later(self.header_timeout, self._header_timed_out)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self._awaiting_head and not self.transport.is_closing():
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
