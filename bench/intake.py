"""Benchmark: notification intake latency and throughput, against a bare endpoint in the same run.

    python -m bench.intake [--requests N] [--postgres URL]

The registry delivers serially (one POST, wait, next), so latency at concurrency 1 bounds how
many events per second one registry instance can hand over. Several registry instances give
concurrency > 1, where group commit keeps throughput from collapsing to one fsync per request.
Every server runs in its own process; the client keeps connections alive like Go's client.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench.quantiles import quantile
from tests.harness import wait_for_port
from tests.paths import FIXTURES
from tests.registry_harness import free_port

FIXTURE = FIXTURES / "notifications" / "022-pull-manifest-library_hello-1.0.json"
HEADERS = {
    "Authorization": "Bearer bench",
    "Content-Type": "application/vnd.docker.distribution.events.v1+json",
}

BARE_APP = """
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def receive(request):
    await request.body()
    return JSONResponse({"accepted": 1})

app = Starlette(routes=[Route("/v1/notifications", receive, methods=["POST"])])
"""


@contextmanager
def server(command: list[str], env: dict[str, str], port: int) -> Iterator[str]:
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port, process=process, timeout=30)
        yield f"http://127.0.0.1:{port}/v1/notifications"
    finally:
        process.terminate()
        process.wait(15)


def bodies(count: int) -> list[bytes]:
    template = json.loads(FIXTURE.read_text())["body"]
    out = []
    for _ in range(count):
        body = copy.deepcopy(template)
        body["events"][0]["id"] = str(uuid.uuid4())
        out.append(json.dumps(body).encode())
    return out


def run(url: str, count: int, concurrency: int) -> tuple[list[float], float]:
    """Latencies (s) of `count` POSTs from `concurrency` keep-alive clients, and the wall time."""
    payloads = bodies(count)
    latencies: list[float] = []
    lock = threading.Lock()
    chunks = [payloads[i::concurrency] for i in range(concurrency)]

    def worker(chunk: list[bytes]) -> None:
        with httpx.Client(timeout=30) as client:
            for body in chunk:
                started = time.perf_counter()
                response = client.post(url, content=body, headers=HEADERS)
                elapsed = time.perf_counter() - started
                if response.status_code != 200:
                    raise RuntimeError(f"{response.status_code} {response.text[:200]}")
                with lock:
                    latencies.append(elapsed)

    # warm up connections and the first commit
    with httpx.Client() as client:
        for body in bodies(20):
            client.post(url, content=body, headers=HEADERS)
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, chunks))
    return latencies, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--postgres", default=os.environ.get("REGISTRY_MONITOR_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    rows: list[tuple[str, int, float, float, float]] = []
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_MONITOR_")}
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "bare_app.py"
        bare.write_text(BARE_APP)
        targets: list[tuple[str, list[str], dict[str, str]]] = []
        port = free_port()
        targets.append(
            (
                "bare starlette endpoint (baseline)",
                [sys.executable, "-m", "uvicorn", "--app-dir", tmp, "--port", str(port),
                 "--log-level", "warning", "--no-access-log", "bare_app:app"],
                {**base_env, "PORT": str(port)},
            )
        )  # fmt: skip
        stores = [
            ("SQLite synchronous=FULL", f"sqlite:///{tmp}/full.db", {"SQLITE_SYNCHRONOUS": "FULL"}),
            (
                "SQLite synchronous=NORMAL",
                f"sqlite:///{tmp}/normal.db",
                {"SQLITE_SYNCHRONOUS": "NORMAL"},
            ),
        ]
        if args.postgres:
            stores.append(("PostgreSQL", args.postgres, {}))
        for label, url, extra in stores:
            port = free_port()
            env = {
                **base_env,
                "PORT": str(port),
                "REGISTRY_MONITOR_DATABASE_URL": url,
                "REGISTRY_MONITOR_HTTP_ADDR": f"127.0.0.1:{port}",
                "REGISTRY_MONITOR_NOTIFICATIONS_TOKENS": "bench",
                "REGISTRY_MONITOR_LOGGING_LEVEL": "warning",
            }
            env.update({f"REGISTRY_MONITOR_DATABASE_{k}": v for k, v in extra.items()})
            targets.append(
                (f"registry-monitor, {label}", [sys.executable, "-m", "monitor", "serve"], env)
            )
        for label, command, env in targets:
            port = int(env["PORT"])
            for concurrency in (1, 8):
                with server(command, env, port) as url:
                    latencies, wall = run(url, args.requests, concurrency)
                rows.append(
                    (label, concurrency, quantile(latencies, 0.5) * 1000,
                     quantile(latencies, 0.99) * 1000, len(latencies) / wall)
                )  # fmt: skip
    print(
        f"{args.requests} POSTs of one event each, keep-alive clients, server in its own process\n"
    )
    print("| server | concurrency | p50 ms | p99 ms | requests/s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, concurrency, p50, p99, rate in rows:
        print(f"| {label} | {concurrency} | {p50:.2f} | {p99:.2f} | {rate:,.0f} |")
    baseline = {c: p50 for label, c, p50, _, _ in rows if label.startswith("bare")}
    print("\n| server | concurrency | p50 / baseline p50 |")
    print("| --- | ---: | ---: |")
    for label, concurrency, p50, _, _ in rows:
        if not label.startswith("bare"):
            print(f"| {label} | {concurrency} | {p50 / baseline[concurrency]:.1f}x |")


if __name__ == "__main__":
    main()
