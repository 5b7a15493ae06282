"""The socket `serve` binds before it starts (accepted connections send without delay), and the
interpreter it settles before it runs."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from pathlib import Path

from monitor.server import open_listener
from monitor.settings import load_settings


def test_accepted_connections_have_tcp_nodelay() -> None:
    """asyncio turns Nagle off only for sockets created as TCP; with Nagle on, each answer of a
    keep-alive connection waited for the client's delayed ACK (~40 ms a request)."""
    settings = load_settings(
        {"REGISTRY_MONITOR_HTTP_ADDR": "127.0.0.1:0", "REGISTRY_MONITOR_NOTIFICATIONS_TOKENS": "t"}
    )
    listener = open_listener(settings.http)

    async def accept_one() -> int:
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def handle(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(handle, sock=listener)
        port = listener.getsockname()[1]
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await asyncio.wait_for(seen, 10)
        finally:
            writer.close()
            server.close()
            await server.wait_closed()

    try:
        assert 0 != asyncio.run(accept_one())
    finally:
        listener.close()


SETTLED = """
import gc, json, sys
from monitor.main import build_app, build_services
from monitor.server import settle_runtime
from monitor.settings import load_settings

settings = load_settings({
    "REGISTRY_MONITOR_DATABASE_URL": sys.argv[1],
    "REGISTRY_MONITOR_NOTIFICATIONS_TOKENS": "t",
    "REGISTRY_MONITOR_HTTP_SWITCH_INTERVAL_SECONDS": "0.0005",
})
services = build_services(settings, migrate=True)
build_app(services)
before = (sys.getswitchinterval(), gc.get_freeze_count())
settle_runtime(settings.http)
print(json.dumps([before, [sys.getswitchinterval(), gc.get_freeze_count()]]))
services.engine.dispose()
"""


def test_serve_settles_the_interpreter_once_everything_is_built(tmp_path: Path) -> None:
    """Before it runs, `serve` freezes what exists out of the garbage collector (no full
    collection walks the loaded modules and services again) and sets the GIL switch interval
    from `http.switch_interval_seconds`. In its own interpreter: both are process-wide."""
    done = subprocess.run(
        [sys.executable, "-c", SETTLED, f"sqlite:///{tmp_path / 'store.db'}"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    (interval, frozen_before), (interval_after, frozen) = json.loads(done.stdout)
    assert (0.005, 0, 0.0005) == (interval, frozen_before, interval_after)
    assert frozen > 50_000  # the modules and services: tens of thousands of objects
