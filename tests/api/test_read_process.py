"""The read API answered in a child process of `serve` (`http.reads: process`, the default):
the same answers as on `serve`'s threads, byte for byte; a child that dies costs the reads in
flight a 503 and is replaced; stopping `serve` ends it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import tracemalloc
from pathlib import Path

import httpx

from tests.harness import MonitorProcess, running_monitor, wait_until
from tests.pipeline.test_applier_process import children_of, post_notification

READS = (
    "/v1/events?limit=2&order=asc",
    "/v1/events?limit=2&order=asc&cursor=",  # the cursor is filled in from the page before
    "/v1/events?action=push&repository=inbox/repo-1",
    "/v1/tags",
    "/v1/tags?repository=nowhere",
    "/v1/stats/daily?limit=5",
    "/v1/alerts?since=2030-01-01T00:00:00Z",  # alerts change as time passes
    "/v1/audit",  # 404 before the first audit
    "/v1/quarantine",
    "/v1/registry/starts",
    "/v1/cleanup/plans",
    "/v1/cleanup/plans/999",  # 404
    "/v1/events?limit=0",  # 400
    "/v1/events?colour=blue",  # 400, unknown parameter
)


def answers(monitor: MonitorProcess) -> list[tuple[int, dict[str, str], bytes]]:
    out = []
    cursor = ""
    for path in READS:
        response = httpx.get(
            monitor.url + path + cursor if path.endswith("=") else monitor.url + path
        )
        if path == READS[0]:
            cursor = response.json()["next_cursor"]
        headers = {k: v for k, v in response.headers.items() if k not in ("date",)}
        out.append((response.status_code, headers, response.content))
    return out


def metric(monitor: MonitorProcess, line_start: str) -> float:
    for line in monitor.get("/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class TestReadProcess:
    def test_answers_are_those_of_the_threads_and_the_child_ends_with_serve(
        self, db_url: str, tmp_path: Path
    ) -> None:
        """Every read (pages, cursors, filters, empty lists, 400 and 404) gets the same status,
        headers and body from the read process as from `serve`'s own threads; the child is
        forked from `serve` (same command line) and gone once `serve` stopped."""
        with running_monitor(tmp_path, db_url, REGISTRY_MONITOR_HTTP_READS="thread") as monitor:
            for n in range(1, 6):
                post_notification(monitor, n)
            wait_until(lambda: len(monitor.all_events()) == 5, timeout=30, what="applied")
            on_threads = answers(monitor)
        with running_monitor(tmp_path, db_url) as monitor:
            assert monitor.process is not None
            serve = monitor.process.pid
            children = children_of(serve)
            assert 2 == len(children)  # the applier and the reads
            for child in children:
                assert (
                    Path(f"/proc/{child}/cmdline").read_bytes()
                    == Path(f"/proc/{serve}/cmdline").read_bytes()
                )
            in_process = answers(monitor)
        assert [a[0] for a in on_threads] == [200] * 7 + [404] + [200] * 3 + [404, 400, 400]
        assert on_threads == in_process
        for child in children:
            assert not Path(f"/proc/{child}").exists() or "Z" in stat_state(child)

    def test_a_child_that_dies_is_replaced(self, db_url: str, tmp_path: Path) -> None:
        """Killed, the read process costs the read that finds it gone a 503 with Retry-After
        (counted as a store error of `read`); the next read starts a fresh interpreter that
        answers as the first did."""
        with running_monitor(
            tmp_path, db_url, REGISTRY_MONITOR_NOTIFICATIONS_APPLIER="thread"
        ) as monitor:
            assert monitor.process is not None
            post_notification(monitor, 1)
            wait_until(lambda: len(monitor.all_events()) == 1, timeout=30, what="applied")
            (first,) = children_of(monitor.process.pid)
            os.kill(first, signal.SIGKILL)
            wait_until(lambda: "Z" in stat_state(first), timeout=10, what="the child gone")
            refused = monitor.get("/v1/tags")
            assert 503 == refused.status_code
            assert "1" == refused.headers["retry-after"]
            assert 1 == metric(monitor, 'registry_monitor_store_errors_total{operation="read"}')
            assert 1 == len(monitor.all_events())
            (second,) = children_of(monitor.process.pid)
            assert b"monitor.api.read_child" in Path(f"/proc/{second}/cmdline").read_bytes()


class TestPriorities:
    def test_reads_yield_to_the_applier_and_both_to_serve(
        self, db_url: str, tmp_path: Path
    ) -> None:
        """The applier runs 10 niceness steps below `serve`, the read process 15: under load
        the kernel gives the answers first, then applying the inbox, then reads."""
        with running_monitor(
            tmp_path, db_url, REGISTRY_MONITOR_NOTIFICATIONS_APPLIER="thread"
        ) as monitor:
            assert monitor.process is not None
            base = niceness(monitor.process.pid)
            (reads,) = children_of(monitor.process.pid)
            wait_until(lambda: niceness(reads) == min(base + 15, 19), timeout=10, what="reads")
        with running_monitor(tmp_path, db_url, REGISTRY_MONITOR_HTTP_READS="thread") as monitor:
            assert monitor.process is not None
            (applier,) = children_of(monitor.process.pid)
            wait_until(lambda: niceness(applier) == min(base + 10, 19), timeout=10, what="applier")


def niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def stat_state(pid: int) -> str:
    """The process's state letter (Z: ended, not yet reaped); "Z" when it is gone altogether."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


class TestChildMemory:
    def test_an_answer_is_released_once_it_is_sent(self) -> None:
        """The read process keeps nothing of an answer after sending it: with a 32 MB answer
        sent and the channel waiting for its next request, the memory Python holds in this
        process is back under 4 MB."""
        from collections import deque

        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import Response
        from starlette.routing import Route

        from monitor.allocator import FreeMemoryRelease
        from monitor.api.read_child import _answer_all
        from monitor.api.read_process import read_frame, write_frame

        def big(request: Request) -> Response:
            return Response(b"x" * 32_000_000)

        app = Starlette(routes=[Route("/big", big)])
        request = {
            "method": "GET",
            "path": "/big",
            "raw_path": b"/big",
            "query_string": b"",
            "headers": [],
            "scheme": "http",
            "server": ("127.0.0.1", 80),
            "client": ("127.0.0.1", 1),
        }

        async def scenario() -> tuple[int, int]:
            ours, theirs = socket.socketpair()
            reader, writer = await asyncio.open_connection(sock=theirs, limit=1 << 20)
            parent_reader, parent_writer = await asyncio.open_connection(sock=ours, limit=1 << 20)
            tracemalloc.start()
            try:
                release = FreeMemoryRelease()
                child = asyncio.create_task(_answer_all(app, reader, writer, deque(), release))
                await write_frame(parent_writer, request)
                status, _headers, body, _ops = await read_frame(parent_reader)
                size = len(body)
                del body
                await asyncio.sleep(0.1)  # the child waits for the next request
                held, _peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
                parent_writer.close()
                await child
                writer.close()
                await writer.wait_closed()
                await parent_writer.wait_closed()
            assert 200 == status
            return size, held

        size, held = asyncio.run(scenario())
        assert 32_000_000 == size
        assert held < 4_000_000

    def test_a_child_gone_before_its_settings_is_counted_and_replaced(
        self, db_url: str, tmp_path: Path
    ) -> None:
        """A first child that ended before `serve` sent it its settings costs that read a 503,
        counted as a store error of the reads; the next read starts a fresh interpreter, which
        answers."""
        from prometheus_client import CollectorRegistry
        from starlette.requests import Request

        from monitor.api.read_process import ForkedReader, ReadProcess
        from monitor.children import ForkedChild
        from monitor.errors import StoreUnavailable
        from monitor.observability.metrics import make_metrics
        from tests.conftest import make_settings

        settings = make_settings(db_url, tmp_path)
        metrics = make_metrics(CollectorRegistry())
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child ends at once
            os._exit(0)
        gone = ForkedChild(pid)
        gone.wait(10)
        ours, theirs = socket.socketpair()
        theirs.close()
        request = Request(
            {
                "type": "http",
                "method": "GET",
                "scheme": "http",
                "path": "/v1/tags",
                "raw_path": b"/v1/tags",
                "query_string": b"",
                "headers": [],
                "client": ("127.0.0.1", 1),
                "server": ("127.0.0.1", 80),
            }
        )

        async def scenario() -> tuple[str, float, int]:
            reads = ReadProcess(settings, metrics)
            reads.adopt(ForkedReader(gone, [ours]))
            try:
                try:
                    await reads.answer(request)
                    first = "answered"
                except StoreUnavailable:
                    first = "503"
                counted = metrics.registry.get_sample_value(
                    "registry_monitor_store_errors_total", {"operation": "read"}
                )
                second = await reads.answer(request)
                return first, counted or 0.0, second.status_code
            finally:
                await reads.aclose()

        assert ("503", 1.0, 200) == asyncio.run(scenario())
