"""A bound on the read API: at most `http.read_slots` read requests are processed at once.

Each read running takes a store connection, a core and the memory of its page, in the read
process (monitor/api/read_process.py) or, with `http.reads: thread`, in a worker thread of the
process that answers intake, where it also takes the GIL from the event loop (eight readers at
once delayed every notification by hundreds of milliseconds). Here the others
wait in a queue of `http.read_queue` for at most `http.read_wait_seconds`; a request that finds
the queue full, or waits longer, is answered 503 with `Retry-After` (counted in
`registry_monitor_read_rejected_total`, not as a store error). Intake never waits here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import Response

from monitor.api.auth import require_token
from monitor.api.read_process import ReadProcess
from monitor.errors import Busy
from monitor.runtime import Services

Endpoint = Callable[[Request], Awaitable[Response]]


class ReadSlots:
    """`slots` requests at once; up to `queue` more wait, each at most `wait` seconds."""

    def __init__(self, slots: int, queue: int, wait: float, rejected: Counter) -> None:
        self._free = asyncio.Semaphore(max(slots, 1))
        self._queue = max(queue, 0)
        self._wait = wait
        self._rejected = rejected
        self.waiting = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a slot while the request is processed; Busy (503) when none comes in time."""
        if self._free.locked() or self.waiting:
            if self.waiting >= self._queue:
                self._rejected.labels(reason="queue_full").inc()
                raise Busy("too many read requests at once; retry later")
            self.waiting += 1
            try:
                async with asyncio.timeout(self._wait):
                    await self._free.acquire()
            except TimeoutError:
                self._rejected.labels(reason="timeout").inc()
                raise Busy("too many read requests at once; retry later") from None
            finally:
                self.waiting -= 1
        else:
            await self._free.acquire()
        try:
            yield
        finally:
            self._free.release()


def limited(endpoint: Endpoint) -> Endpoint:
    """`endpoint` processed within the app's read slots, once its token has been checked (a
    request without the read token is answered 401 at once and takes no place)."""

    async def limited_endpoint(request: Request) -> Response:
        services: Services = request.app.state.services
        token = services.settings.api.token
        require_token(request, [token] if token else [], what="the read API")
        read_slots: ReadSlots = request.app.state.read_slots
        reads: ReadProcess | None = request.app.state.reads
        async with read_slots.slot():
            if reads is not None:
                return await reads.answer(request)
            return await endpoint(request)

    limited_endpoint.__name__ = endpoint.__name__
    limited_endpoint.__doc__ = endpoint.__doc__
    return limited_endpoint
