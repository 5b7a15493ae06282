"""Reading a request body with a size limit and a time limit."""

from __future__ import annotations

import asyncio

from starlette.requests import Request

from monitor.errors import PayloadTooLarge, RequestTimeout


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
