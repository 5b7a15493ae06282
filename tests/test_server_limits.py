"""The server's limits, against `registry-monitor serve` in its own process: idle and slow
clients are cut off, a flood of connections is refused without a traceback per socket, and the
service answers again afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from uvicorn.server import ServerState

from monitor.server_limits import READ_BYTES, RateLimitedLoopErrors, bounded_protocol
from tests.harness import TOKEN, running_monitor, wait_for_port, wait_until
from tests.registry_harness import free_port

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

LIMITS = {
    "REGISTRY_MONITOR_HTTP_HEADER_TIMEOUT_SECONDS": "0.5",
    "REGISTRY_MONITOR_HTTP_BODY_TIMEOUT_SECONDS": "0.5",
    "REGISTRY_MONITOR_HTTP_MAX_CONNECTIONS": "20",
}


def closed_by_server(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """What the server sent before it closed `sock` (fails if it stays open `timeout` s)."""
    sock.settimeout(timeout)
    received = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        chunk = sock.recv(4096)
        if not chunk:
            return received
        received += chunk
    raise AssertionError(f"the server kept the connection open; it sent {received!r}")


def received_until(sock: socket.socket, marker: bytes, *, times: int = 1) -> bytes:
    """What the server sent until `marker` appeared `times` times (fails if it closes first)."""
    sock.settimeout(10)
    received = b""
    while received.count(marker) < times:
        chunk = sock.recv(4096)
        assert chunk, f"the server closed the connection after {received!r}"
        received += chunk
    return received


@pytest.fixture
def monitor(tmp_path: Path) -> Iterator[str]:
    with running_monitor(tmp_path, f"sqlite:///{tmp_path}/m.db", **LIMITS) as process:
        yield process.url


def connect(url: str) -> socket.socket:
    port = int(url.rsplit(":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=10)


class TestSlowClients:
    def test_a_connection_that_sends_nothing_is_closed(self, monitor: str) -> None:
        """Idle from its first moment: closed after the header timeout."""
        with connect(monitor) as sock:
            assert b"" == closed_by_server(sock)

    def test_headers_sent_one_byte_and_then_nothing_are_closed(self, monitor: str) -> None:
        """A request line never finished (slowloris): closed after the header timeout."""
        with connect(monitor) as sock:
            sock.sendall(b"POST /v1/notifications HTTP/1.1\r\nHost: x\r\n")
            assert b"" == closed_by_server(sock)

    def test_a_body_that_stops_coming_is_408(self, monitor: str) -> None:
        """Headers promise 100 bytes, 10 arrive: 408 after the body timeout."""
        with connect(monitor) as sock:
            sock.sendall(
                b"POST /v1/notifications HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n" + b"{" * 10
            )
            answer = closed_by_server(sock)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]

    def test_headers_above_the_limit_are_refused(self, monitor: str) -> None:
        """A header block above `http.max_header_bytes` is answered 400 and closed."""
        with connect(monitor) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n")
            answer = closed_by_server(sock)
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]

    def test_a_head_growing_in_small_pieces_is_refused_at_the_limit(self, monitor: str) -> None:
        """The limit (16 KiB by default) holds for the head as a whole, whatever pieces it
        arrives in: pieces of 515 bytes, each far below it, until their sum passes it."""
        with connect(monitor) as sock:
            sent = sock.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            number = 0
            while sent <= 16 * 1024:
                sent += sock.send(b"X-Piece-%03d: " % number + b"a" * 500 + b"\r\n")
                number += 1
                time.sleep(0.005)
            answer = closed_by_server(sock)
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]

    def test_a_body_in_many_pieces_does_not_count_as_head(self, monitor: str) -> None:
        """40 KB of body after a small head, in pieces: answered by the application (401
        without a token), not refused as an oversized head."""
        with connect(monitor) as sock:
            sock.sendall(
                b"POST /v1/notifications HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 40000\r\n\r\n"
            )
            for _ in range(40):
                time.sleep(0.005)
                sock.sendall(b" " * 1000)
            sock.settimeout(10)
            answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]

    def test_a_body_after_its_head_in_one_large_piece_is_not_counted_as_the_next_head(
        self, monitor: str
    ) -> None:
        """The head, then a 40 KB notification in one piece (a read of its own, larger than
        the head limit): it is queued (200) and the connection serves the next request,
        instead of a 400 for a head that never was."""
        body = b'{"events": []}'.ljust(40_000)
        with connect(monitor) as sock:
            sock.sendall(
                b"POST /v1/notifications HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
                b"Content-Type: application/json\r\nContent-Length: 40000\r\n\r\n"
            )
            time.sleep(0.2)
            sock.sendall(body)
            first = received_until(sock, b"}")
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            second = received_until(sock, b'"ok"}')
        assert first.startswith(b"HTTP/1.1 200 "), first[:200]
        assert b"HTTP/1.1 400 " not in first + second
        assert 1 == second.count(b"HTTP/1.1 200 "), second[:400]

    def test_the_next_head_on_a_kept_alive_connection_is_timed_too(self, monitor: str) -> None:
        """After one answered request, a second head that never ends is closed."""
        with connect(monitor) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            first = received_until(sock, b'"ok"}')
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            assert b"" == closed_by_server(sock)
        assert first.startswith(b"HTTP/1.1 200 "), first[:200]

    def test_pipelined_requests_are_each_answered(self, monitor: str) -> None:
        """Three requests in one write: three answers, in order, on the same connection."""
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        with connect(monitor) as sock:
            sock.sendall(request * 3)
            received = received_until(sock, b'"ok"}', times=3)
        assert 3 == received.count(b"HTTP/1.1 200 ")

    def test_the_service_answers_while_idle_sockets_are_open(self, monitor: str) -> None:
        """Above the connection limit new requests are 503 at once; once the idle sockets are
        cut off by the header timeout, the service answers 200 again."""
        sockets = [connect(monitor) for _ in range(25)]
        try:
            wait_until(
                lambda: httpx.get(f"{monitor}/healthz", timeout=5).status_code == 200,
                timeout=15,
                what="the idle sockets to be closed and /healthz to answer",
            )
        finally:
            for sock in sockets:
                sock.close()


class TestConnectionFlood:
    def test_running_out_of_file_descriptors_logs_a_few_lines_and_recovers(
        self, tmp_path: Path
    ) -> None:
        """With 128 descriptors and 300 connections, the log holds a few rate-limited lines and
        no traceback; after the flood the service answers."""
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_MONITOR_")},
            "REGISTRY_MONITOR_DATABASE_URL": f"sqlite:///{tmp_path}/m.db",
            "REGISTRY_MONITOR_HTTP_ADDR": f"127.0.0.1:{port}",
            "REGISTRY_MONITOR_NOTIFICATIONS_TOKENS": TOKEN,
            "REGISTRY_MONITOR_HTTP_HEADER_TIMEOUT_SECONDS": "2",
        }
        log_path = tmp_path / "monitor.log"

        def limit_descriptors() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))

        with log_path.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "monitor", "serve"],
                env=env,
                stdout=out,
                stderr=out,
                preexec_fn=limit_descriptors,
            )
        try:
            wait_for_port(port, process=process, timeout=30)
            with contextlib.ExitStack() as stack:
                for _ in range(300):
                    with contextlib.suppress(OSError):
                        stack.enter_context(
                            socket.create_connection(("127.0.0.1", port), timeout=5)
                        )
                wait_until(
                    lambda: b"event loop error" in log_path.read_bytes(),
                    timeout=15,
                    what="the server to report running out of descriptors",
                )
            wait_until(
                lambda: _answers(f"http://127.0.0.1:{port}/healthz"),
                timeout=30,
                what="the service to answer after the flood",
            )
        finally:
            process.terminate()
            process.wait(15)
        text = log_path.read_text()
        assert "Traceback" not in text
        assert 1 <= text.count("event loop error") <= 5


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class TestRateLimitedLoopErrors:
    def test_one_line_per_interval_with_the_count_suppressed(self) -> None:
        """1000 errors within one interval: the first is logged, 999 are counted."""
        now = [0.0]
        handler = RateLimitedLoopErrors(interval=10.0, clock=lambda: now[0])
        for _ in range(1000):
            handler(None, {"message": "socket.accept() out of system resource"})  # type: ignore[arg-type]
        assert 999 == handler.suppressed
        now[0] = 11.0
        handler(None, {"message": "again"})  # type: ignore[arg-type]
        assert 0 == handler.suppressed


class TestReads:
    def test_a_connection_reads_at_most_read_bytes_and_a_larger_body_arrives_whole(
        self,
    ) -> None:
        """asyncio's 256 KiB reads cost every request a mapping of its own; the protocol reads
        at most READ_BYTES at once, and a body of 16 such reads still reaches the app whole."""
        body = bytes(range(256)) * (16 * READ_BYTES // 256)
        received: list[bytes] = []
        protocols: list[asyncio.Protocol] = []

        async def app(scope: Message, receive: Receive, send: Send) -> None:
            assert scope["type"] == "http"
            chunks = []
            while True:
                message = await receive()
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    break
            received.append(b"".join(chunks))
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        async def scenario() -> bytes:
            config = uvicorn.Config(app, lifespan="off", log_level="warning")
            config.load()
            protocol = bounded_protocol(header_timeout=5, max_header_bytes=16 * 1024)
            state = ServerState()

            def factory() -> asyncio.Protocol:
                made = protocol(config=config, server_state=state, app_state={})
                protocols.append(made)
                return made

            loop = asyncio.get_running_loop()
            server = await loop.create_server(factory, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
            )
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            writer.close()
            server.close()
            await server.wait_closed()
            return head

        head = asyncio.run(scenario())
        assert head.startswith(b"HTTP/1.1 204 "), head
        assert [body] == received
        assert READ_BYTES == protocols[0].transport.max_size  # type: ignore[attr-defined]
