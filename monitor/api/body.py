"""Reading a request body with a size limit and a time limit, and few large bodies at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.requests import Request

from monitor.errors import Busy, PayloadTooLarge, RequestTimeout

SMALL_BODY_BYTES = 64 * 1024


class LargeBodies:
    """At most `slots` request bodies above 64 KiB (or of unknown length) are read and parsed at
    once, so memory stays bounded whatever number of large bodies arrive together. A registry's
    notification is a few kB and never waits here."""

    def __init__(self, slots: int) -> None:
        self._slots = asyncio.Semaphore(max(slots, 1))

    @asynccontextmanager
    async def slot(self, request: Request, wait: float) -> AsyncIterator[None]:
        """Hold a slot while the body is read and parsed; Busy (503) after `wait` seconds."""
        declared = request.headers.get("content-length")
        small = declared is not None and declared.isascii() and declared.isdigit()
        if small and int(declared or 0) <= SMALL_BODY_BYTES:
            yield
            return
        try:
            async with asyncio.timeout(wait):
                await self._slots.acquire()
        except TimeoutError:
            raise Busy("too many large bodies at once; retry later") from None
        try:
            yield
        finally:
            self._slots.release()


async def read_limited(request: Request, limit: int, timeout: float | None = None) -> bytes:
    """The whole body; PayloadTooLarge as soon as it is known to exceed `limit` bytes,
    RequestTimeout when it has not arrived whole within `timeout` seconds."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {declared} bytes is above the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"body is above the limit of {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(f"the body did not arrive within {timeout:g} s") from None
    return b"".join(chunks)
