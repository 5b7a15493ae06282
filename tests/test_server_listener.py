"""The socket `serve` binds before it starts: accepted connections send without delay."""

from __future__ import annotations

import asyncio
import socket

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
