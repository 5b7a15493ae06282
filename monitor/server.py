"""`serve`: the HTTP server on a socket bound before anything else starts.

Binding first means a busy address is one clear error before the store is touched or anything
is logged as started, and the port is held while the schema is upgraded.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import socket
import sys

import uvicorn

from monitor.allocator import tune_allocator
from monitor.api.read_process import ReadProcess, fork_reader
from monitor.errors import MonitorError
from monitor.main import build_app, build_services
from monitor.pipeline.applier_process import ApplierProcess, ForkedApplier, fork_applier
from monitor.runtime import Services
from monitor.server_limits import (
    RateLimitedLoopErrors,
    bounded_protocol,
    raise_open_files_limit,
)
from monitor.settings import HttpSettings, Settings


class ListenError(MonitorError):
    """The configured address cannot be bound (in use, not ours, not permitted)."""

    code = "listen_error"


def open_listener(http: HttpSettings) -> socket.socket:
    """A socket bound to `http.addr` (not yet listening: uvicorn does that when it is ready)."""
    family = socket.AF_INET6 if ":" in http.host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it every answer waits ~40 ms for the client's delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: restart quickly
    try:
        sock.bind((http.host, http.port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ListenError(f"address {http.addr} in use") from exc
        reason = exc.strerror or str(exc)
        raise ListenError(f"cannot listen on {http.addr}: {reason}") from exc
    sock.set_inheritable(True)
    return sock


def listening_url(http: HttpSettings, sock: socket.socket) -> str:
    """Where the service answers, with the port actually bound (`http.addr` may say 0)."""
    scheme = "https" if http.tls_cert is not None else "http"
    host = f"[{http.host}]" if ":" in http.host else http.host
    return f"{scheme}://{host}:{sock.getsockname()[1]}"


async def _serve(server: uvicorn.Server, sock: socket.socket) -> None:
    asyncio.get_running_loop().set_exception_handler(RateLimitedLoopErrors())
    await server.serve(sockets=[sock])


def settle_runtime(http: HttpSettings) -> None:
    """The interpreter tuned for answering intake beside worker threads, once everything is
    built: what exists now is frozen out of the garbage collector, so no full collection walks
    the ~100k objects of the loaded modules and services again (one took 40-50 ms holding the
    GIL); and a thread running Python code hands the GIL to a waiting one after
    `http.switch_interval_seconds`."""
    gc.collect()
    gc.freeze()
    sys.setswitchinterval(http.switch_interval_seconds)


def fork_children(
    services: Services, reads: ReadProcess | None, close: list[socket.socket]
) -> ForkedApplier | None:
    """Forks the applier's and the read process's first children (monitor/children.py) and
    hands them over; returns the applier's, for `serve` to end if it stops before starting it
    (the read process ends its own).

    Forked once everything `serve` runs is built, not earlier: a child shares every page as it
    was at the fork, and a page that `serve` or a child writes afterwards is copied (the writer
    gets a copy, the others keep the original). Forked before the services were built, every
    page building them wrote to was copied, and the three processes held ~10 MiB more
    (BENCHMARKS.md). The store's connections (the schema check's) are closed first: a child
    must never use one carried across a fork."""
    services.engine.dispose()
    applier = None
    if isinstance(services.applier, ApplierProcess):
        applier = fork_applier(close=close)
        if applier is not None:
            services.applier.adopt(applier)
    if reads is not None:
        channels = [applier.connection] if applier is not None else []
        reader = fork_reader(services.settings.http.read_slots, close=[*close, *channels])
        if reader is not None:
            reads.adopt(reader)
    return applier


def serve(settings: Settings, listener: socket.socket | None = None) -> None:
    """Run the service until stopped, on `listener` (bound to `http.addr` when not given)."""
    sock = listener if listener is not None else open_listener(settings.http)
    tune_allocator()
    first_applier = None
    try:
        services = build_services(settings)
        reads = (
            ReadProcess(settings, services.metrics) if settings.http.reads == "process" else None
        )
        app = build_app(services, listening=listening_url(settings.http, sock), reads=reads)
        http = settings.http
        raise_open_files_limit()
        config = uvicorn.Config(
            app,
            host=http.host,
            port=http.port,
            ssl_certfile=str(http.tls_cert) if http.tls_cert else None,
            ssl_keyfile=str(http.tls_key) if http.tls_key else None,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=10,
            http=bounded_protocol(
                header_timeout=http.header_timeout_seconds, max_header_bytes=http.max_header_bytes
            ),
            limit_concurrency=http.max_connections,
            timeout_keep_alive=int(max(http.keep_alive_seconds, 1)),
        )
        first_applier = fork_children(services, reads, [sock])
        settle_runtime(http)
        asyncio.run(_serve(uvicorn.Server(config), sock))
    finally:
        sock.close()
        if first_applier is not None:
            first_applier.close()  # when no applier started it (start-up failed)
