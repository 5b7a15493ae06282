"""The read API answered in a process of its own (`http.reads: process`, the default).

A read builds a page of up to a thousand rows: on a thread of `serve` that is pure Python
holding the interpreter's lock for tens of milliseconds, which the event loop answering the
registry's notifications then waits for. Beside 8 clients reading `/v1/tags` and
`/v1/stats/daily` on the 10M store (PostgreSQL), intake at concurrency 1 answered at p50 10.4 ms
and 87 requests/s with the reads on threads of `serve`, 3.4-3.6 ms and 234 with them in
another process (BENCHMARKS.md).

So `serve` only checks the read token and takes a read slot (monitor/api/readslots.py), then
passes the request (method, path, query, headers: an ASGI scope without its callables) to the
child over one of `http.read_slots` socket pairs, and answers with the status, headers and body
the child sends back with the metric updates it made (monitor/observability/relay.py). Frames
are a 4-byte length and a pickle, both ends being this program. The child runs the same read
endpoints in the same app (`read_app`), on its own engine.

The first child is forked at start-up (monitor/children.py); if it dies, the reads in flight
are answered 503 with Retry-After (`store_errors_total{operation="read"}` counts it) and the
next read starts a fresh interpreter (`python -m monitor.api.read_child FD...`), after a pause
that grows while children keep dying.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import pickle
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import Response

from monitor.children import ChildProcess, Closable, ForkedChild, end_child, fork_child
from monitor.errors import StoreUnavailable
from monitor.observability.metrics import Metrics
from monitor.observability.relay import replay
from monitor.settings import Settings

log = structlog.get_logger("monitor.api.read_process")

RESTART_SECONDS = (0.0, 1.0, 2.0, 5.0, 10.0)  # pauses before another child, while they die
FRAME_MAX = 1 << 30
_LENGTH = struct.Struct("!I")
SCOPE_KEYS = ("method", "scheme", "path", "raw_path", "query_string", "headers", "client", "server")


async def read_frame(reader: asyncio.StreamReader) -> Any:
    """The next message; IncompleteReadError when the other end is gone."""
    (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    if length > FRAME_MAX:
        raise ValueError(f"frame of {length} bytes")
    # Both ends are this program, over a socket pair no one else holds.
    return pickle.loads(await reader.readexactly(length))  # noqa: S301


async def write_frame(writer: asyncio.StreamWriter, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(_LENGTH.pack(len(data)))
    writer.write(data)
    await writer.drain()


@dataclasses.dataclass
class ForkedReader:
    """The read process's first child, forked at start-up, with the parent's ends of its
    socket pairs; it waits for its settings on the first."""

    process: ForkedChild
    sockets: list[socket.socket]

    def close(self) -> None:
        """Ends the child if nothing took it (it stops when its sockets close)."""
        for sock in self.sockets:
            sock.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)


def fork_reader(slots: int, close: Iterable[Closable] = ()) -> ForkedReader | None:
    """Forks the read process's first child with `slots` channels, or None when this process
    already runs another thread. Call it with no store connection open. `close` (the listening
    socket, the applier's channel) is closed in the child."""
    child_module = importlib.import_module("monitor.api.read_child")
    pairs = [socket.socketpair() for _ in range(max(slots, 1))]
    ours = [pair[0] for pair in pairs]
    theirs = [pair[1] for pair in pairs]
    process = fork_child(lambda: child_module.run(theirs), [*ours, *close])
    for sock in theirs:
        sock.close()
    if process is None:
        for sock in ours:
            sock.close()
        return None
    return ForkedReader(process, ours)


@dataclasses.dataclass
class _Child:
    process: ChildProcess
    free: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
    writers: list[asyncio.StreamWriter]
    started: float
    failed: bool = False


class ReadProcess:
    """Answers read requests in a child process; one request per channel at a time (the read
    slots in front of it let at most `slots` through)."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._settings = settings
        self._metrics = metrics
        self._slots = max(settings.http.read_slots, 1)
        self._first: ForkedReader | None = None
        self._child: _Child | None = None
        self._starting = asyncio.Lock()
        self._failures = 0
        self._not_before = 0.0
        self._closed = False

    def adopt(self, first: ForkedReader) -> None:
        """The child forked at start-up (`fork_reader`): the one that answers the first read;
        `aclose` ends it if none came."""
        self._first = first

    async def answer(self, request: Request) -> Response:
        """The child's answer to `request`; StoreUnavailable (503) when it cannot answer."""
        child = await self._running()
        reader, writer = await child.free.get()
        scope = {key: request.scope.get(key) for key in SCOPE_KEYS}

        async def exchange() -> Any:
            try:
                await write_frame(writer, scope)
                message = await read_frame(reader)
            except (OSError, EOFError, asyncio.IncompleteReadError, pickle.PickleError) as exc:
                self._fail(child, exc)
                raise StoreUnavailable("the read process is restarting; retry") from None
            child.free.put_nowait((reader, writer))  # the channel is in step again
            return message

        # Shielded: a request cancelled meanwhile still takes its answer off the channel.
        status, headers, body, ops = await asyncio.shield(exchange())
        replay(self._metrics, ops)
        response = Response(body, status_code=status)
        response.raw_headers = headers
        return response

    async def aclose(self) -> None:
        """Ends the child (it stops when its channels close) and waits for it, briefly."""
        self._closed = True
        first, self._first = self._first, None
        if first is not None:
            await asyncio.to_thread(first.close)
        child, self._child = self._child, None
        if child is not None:
            for writer in child.writers:
                writer.close()
            await asyncio.to_thread(end_child, child.process)

    async def _running(self) -> _Child:
        child = self._child
        if child is not None and not child.failed:
            return child
        async with self._starting:
            child = self._child
            if child is not None and not child.failed:
                return child
            if self._closed or time.monotonic() < self._not_before:
                raise StoreUnavailable("the read process is restarting; retry")
            self._child = child = await self._start()
            return child

    async def _start(self) -> _Child:
        first, self._first = self._first, None
        if first is not None:
            process: ChildProcess = first.process
            sockets = first.sockets
        else:
            pairs = [socket.socketpair() for _ in range(self._slots)]
            sockets = [pair[0] for pair in pairs]
            theirs = [pair[1] for pair in pairs]
            fds = [str(sock.fileno()) for sock in theirs]
            try:
                process = subprocess.Popen(
                    [sys.executable, "-m", "monitor.api.read_child", *fds],
                    pass_fds=[sock.fileno() for sock in theirs],
                )
            finally:
                for sock in theirs:
                    sock.close()
        free: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
        writers = []
        for sock in sockets:
            sock.setblocking(False)
            reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
            free.put_nowait((reader, writer))
            writers.append(writer)
        child = _Child(process, free, writers, time.monotonic())
        try:
            await write_frame(writers[0], self._settings)
        except OSError as exc:  # the child is gone already
            self._fail(child, exc)
            raise StoreUnavailable("the read process is restarting; retry") from None
        return child

    def _fail(self, child: _Child, error: BaseException) -> None:
        if child.failed:
            return
        child.failed = True
        self._metrics.store_errors.labels(operation="read").inc()
        # Children that keep dying are restarted after growing pauses; one that lived a
        # while is replaced at once.
        lived = time.monotonic() - child.started
        self._failures = 1 if lived > 60 else self._failures + 1
        pause = RESTART_SECONDS[min(self._failures, len(RESTART_SECONDS)) - 1]
        self._not_before = time.monotonic() + pause
        log.error(
            "read process ended; starting another",
            error=type(error).__name__,
            pause_seconds=pause,
        )
        for writer in child.writers:
            writer.close()
        child.process.terminate()
        threading.Thread(target=end_child, args=(child.process,), daemon=True).start()
