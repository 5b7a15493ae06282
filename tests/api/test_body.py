"""Request bodies: few large ones at once (memory stays bounded), small ones never wait."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref

import pytest
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from monitor.api.body import LargeBodies
from monitor.api.errors import error_response
from monitor.errors import Busy, PayloadTooLarge


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


class TestRefusedBodies:
    def test_an_answered_error_keeps_nothing_of_the_request_alive(self) -> None:
        """A body refused with 413 while parsed on a worker thread (as `/v1/logs` parses) is
        freed once the answer is built, not at the next full garbage collection: the error's
        traceback, which holds the frames (and the body) in a reference cycle with the
        thread's future, is dropped."""

        class Body:
            pass

        def parse(body: Body) -> None:
            raise PayloadTooLarge(f"body {id(body)} is too large")

        async def answer(body: Body) -> int:
            try:
                await run_in_threadpool(parse, body)
            except PayloadTooLarge as exc:
                return error_response(exc).status_code
            return 200

        body = Body()
        alive = weakref.ref(body)
        gc.collect()
        gc.disable()
        try:
            assert 413 == asyncio.run(answer(body))
            del body
            # The worker thread drops its own reference to the job's arguments just after it
            # hands the result over; it ends with the event loop's main task.
            for thread in threading.enumerate():
                if thread.name == "AnyIO worker thread":
                    thread.join(5)
            assert alive() is None
        finally:
            gc.enable()
