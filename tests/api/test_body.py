"""Request bodies: few large ones at once (memory stays bounded), small ones never wait."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request

from monitor.api.body import LargeBodies
from monitor.errors import Busy


def request(content_length: int | None) -> Request:
    headers = [] if content_length is None else [(b"content-length", str(content_length).encode())]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": headers})


class TestLargeBodies:
    def test_a_large_body_waits_for_a_slot_then_is_refused_busy(self) -> None:
        """With one slot held, another large body (or one of unknown length) waits, then Busy."""

        async def scenario() -> None:
            gate = LargeBodies(1)
            async with gate.slot(request(1_000_000), wait=1.0):
                for other in (request(70_000), request(None)):
                    with pytest.raises(Busy):
                        async with gate.slot(other, wait=0.05):
                            pass
            async with gate.slot(request(1_000_000), wait=0.05):
                pass  # released: the next one gets it

        asyncio.run(scenario())

    def test_a_small_body_never_waits(self) -> None:
        """A registry's notification (a few kB) passes while every slot is taken."""

        async def scenario() -> None:
            gate = LargeBodies(1)
            async with (
                gate.slot(request(1_000_000), wait=1.0),
                gate.slot(request(4_000), wait=0.0),
            ):
                pass

        asyncio.run(scenario())
