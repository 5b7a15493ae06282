"""The read API's child process (see read_process.py): `python -m monitor.api.read_child FD...`,
each FD its end of one channel to `serve`.

It builds its own engine and answers each request it is sent with the read endpoints of
`read_app`, as `serve` would on its threads, one request per channel at a time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections import deque
from typing import Any

import orjson
import structlog
from starlette.applications import Starlette
from starlette.types import Message

from monitor.allocator import FreeMemoryRelease, tune_allocator
from monitor.api.read_process import read_frame, write_frame
from monitor.children import READ_NICENESS
from monitor.clock import utc_now
from monitor.observability.logs import configure_logging
from monitor.observability.relay import Op, relay_metrics, take
from monitor.runtime import ReadServices
from monitor.settings import Settings
from monitor.store.engine import make_engine, make_session_factory

log = structlog.get_logger("monitor.api.read_child")


def main(fds: list[int]) -> None:
    tune_allocator()
    run([socket.socket(fileno=fd) for fd in fds])


def run(channels: list[socket.socket]) -> None:
    """Answers reads until `serve` closes the channels (or is gone)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group; serve stops us
    with contextlib.suppress(OSError):
        os.nice(READ_NICENESS)
    asyncio.run(_serve(channels))


async def _serve(channels: list[socket.socket]) -> None:
    streams = []
    for sock in channels:
        sock.setblocking(False)
        streams.append(await asyncio.open_connection(sock=sock, limit=1 << 20))
    try:
        settings: Settings = await read_frame(streams[0][0])
    except (asyncio.IncompleteReadError, OSError):
        return  # forked at start-up, and `serve` ended before its first read
    configure_logging(settings.logging)
    # The app is imported here, not at the top: a forked child has it loaded already.
    from monitor.api.app import read_app

    ops: deque[Op] = deque()
    engine = make_engine(settings.database)
    services = ReadServices(
        settings=settings,
        session_factory=make_session_factory(engine),
        metrics=relay_metrics(ops),
        clock=utc_now,
    )
    app = read_app(services)
    release = FreeMemoryRelease()
    try:
        await asyncio.gather(*(_answer_all(app, r, w, ops, release) for r, w in streams))
    finally:
        engine.dispose()


async def _answer_all(
    app: Starlette,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    ops: deque[Op],
    release: FreeMemoryRelease,
) -> None:
    while True:
        try:
            scope = await read_frame(reader)
        except (asyncio.IncompleteReadError, OSError):
            return
        if not await _reply(app, scope, writer, ops):
            return
        del scope
        release.release()  # what building the answer freed


async def _reply(
    app: Starlette, scope: dict[str, Any], writer: asyncio.StreamWriter, ops: deque[Op]
) -> bool:
    """Answers one request; False once `serve` is gone. Its own function, so the answer is
    released as soon as it is sent: held by the loop above until the next request on the
    channel, the body of a large answer (140 MB for the detail of a 517k-action plan) stayed
    in this process, once per channel."""
    status, headers, body = await answer(app, scope)
    try:
        await write_frame(writer, (status, headers, body, take(ops)))
    except OSError:
        return False
    return True


async def answer(app: Starlette, request: dict[str, Any]) -> tuple[int, list[Any], bytes]:
    """`app`'s answer to the request `serve` passed on: status, raw headers and body."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "root_path": "",
        **request,
    }
    start: dict[str, Any] = {}
    chunks: list[bytes] = []
    received = False

    async def receive() -> Message:
        nonlocal received
        if received:
            return {"type": "http.disconnect"}
        received = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    try:
        await app(scope, receive, send)
    except Exception:  # answered 500 by the app's error middleware, or not at all
        log.exception("read failed", path=scope.get("path"))
        if not start:
            body = orjson.dumps({"error": {"code": "internal", "message": "internal error"}})
            return 500, [(b"content-type", b"application/json")], body
    return start["status"], list(start.get("headers", [])), b"".join(chunks)


if __name__ == "__main__":
    main([int(fd) for fd in sys.argv[1:]])
