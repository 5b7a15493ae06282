"""Benchmark: intake latency and the server's memory while it is fed hostile input.

    python -m bench.hostile [--seconds S] [--postgres URL]

One `registry-monitor serve` per store, in its own process. A probe posts valid notifications
serially (as a registry does) and records each answer's latency, first alone, then while
attackers send, for `--seconds`: 0.8 MB JSON arrays of numbers and 10,000-record arrays to
`/v1/logs`, 1 MB `{"events":[{},…]}` bodies and poison envelopes (a time beyond 9999 in UTC, a
size above 2^63, a NUL in the repository, nesting 600 deep) to `/v1/notifications`, a 4 MB log
line with an unclosed quote, and 1,100 idle sockets. The server's memory, with its intake
applier process's, is sampled every 0.1 s (VmRSS, and PSS, which counts the pages the two
share once) and its peak read at the end (VmHWM, the sum of each process's own peak). Every
loop is bounded in count and time.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator

import httpx

from bench.intake import FIXTURE
from bench.quantiles import quantile
from bench.scaleload import pss_kib, status_kib
from tests.harness import wait_for_port
from tests.registry_harness import free_port

V1 = "application/vnd.docker.distribution.events.v1+json"
AUTH = {"Authorization": "Bearer bench"}


def valid_body() -> bytes:
    body = json.loads(FIXTURE.read_text())["body"]
    body["events"][0]["id"] = str(uuid.uuid4())
    return json.dumps(body).encode()


def poison_body() -> bytes:
    body = json.loads(FIXTURE.read_text())["body"]
    good = body["events"][0]
    events = [dict(good, id=str(uuid.uuid4()))]
    for change in (
        {"timestamp": "9999-12-31T23:59:59-01:00"},
        {"target": dict(good["target"], size=2**63)},
        {"target": dict(good["target"], repository="a\x00b")},
        {"target": json.loads("[" * 600 + "]" * 600)},
    ):
        events.append(dict(good, id=str(uuid.uuid4()), **change))
    return json.dumps({"events": events}).encode()


ATTACKS: list[tuple[str, str, dict[str, str], Callable[[], bytes]]] = [
    ("logs: 0.8 MB [1,1,…]", "/v1/logs", {"Content-Type": "application/json"},
     lambda: b"[" + b",".join([b"1"] * 400_000) + b"]"),
    ("logs: 10,000 records without a line", "/v1/logs", {"Content-Type": "application/json"},
     lambda: b"[" + b",".join([b"{}"] * 10_000) + b"]"),
    ("notifications: 1 MB {\"events\":[{},…]}", "/v1/notifications", {"Content-Type": V1},
     lambda: b'{"events":[' + b",".join([b"{}"] * 349_000) + b"]}"),
    ("notifications: poison envelope", "/v1/notifications", {"Content-Type": V1}, poison_body),
    ("logs: a 4 MB line with an unclosed quote", "/v1/logs", {"Content-Type": "text/plain"},
     lambda: b'time="2026-11-27T04:52:06Z" level=info msg="' + b"a" * 4_000_000),
]  # fmt: skip


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """`serve`'s memory with its intake applier process's (see bench.scaleload.status_kib)."""
    return status_kib(pid, field)


@contextlib.contextmanager
def monitor(db_url: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_MONITOR_")},
        "REGISTRY_MONITOR_DATABASE_URL": db_url,
        "REGISTRY_MONITOR_HTTP_ADDR": f"127.0.0.1:{port}",
        "REGISTRY_MONITOR_NOTIFICATIONS_TOKENS": "bench",
        "REGISTRY_MONITOR_LOGGING_LEVEL": "error",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "monitor", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process=process, timeout=30)
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.terminate()
        process.wait(15)


def probe(url: str, stop: threading.Event, limit: int) -> tuple[list[float], Counter[int]]:
    """Serial valid notifications until `stop` or `limit` requests: latencies and statuses."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    with httpx.Client(timeout=30) as client:
        while not stop.is_set() and len(latencies) < limit:
            body = valid_body()
            started = time.perf_counter()
            response = client.post(
                f"{url}/v1/notifications", content=body, headers={**AUTH, "Content-Type": V1}
            )
            latencies.append(time.perf_counter() - started)
            statuses[response.status_code] += 1
    return latencies, statuses


def attack(url: str, stop: threading.Event, statuses: Counter[str], deadline: float) -> None:
    bodies = [(name, path, headers, make()) for name, path, headers, make in ATTACKS]
    with httpx.Client(timeout=60) as client:
        for _ in range(10_000):
            if stop.is_set() or time.monotonic() > deadline:
                return
            for name, path, headers, body in bodies:
                response = client.post(f"{url}{path}", content=body, headers={**AUTH, **headers})
                statuses[f"{name} → {response.status_code}"] += 1


def quantile_ms(values: list[float], q: float) -> float:
    return quantile(values, q) * 1000


def run(label: str, db_url: str, seconds: float) -> list[str]:
    rows: list[str] = []
    with monitor(db_url) as (url, process):
        alone, _ = probe(url, threading.Event(), 300)
        rss_alone = rss_kib(process.pid)
        pss_alone = pss_kib(process.pid)
        serve_alone = pss_kib(process.pid, alone=True)
        stop = threading.Event()
        peak = [0, 0, 0]

        def sample() -> None:
            while not stop.wait(0.1):
                peak[0] = max(peak[0], rss_kib(process.pid))
                peak[1] = max(peak[1], pss_kib(process.pid))
                peak[2] = max(peak[2], pss_kib(process.pid, alone=True))

        statuses: Counter[str] = Counter()
        port = int(url.rsplit(":", 1)[1])
        idle: list[socket.socket] = []
        sampler = threading.Thread(target=sample)
        sampler.start()
        deadline = time.monotonic() + seconds
        attackers = [
            threading.Thread(target=attack, args=(url, stop, statuses, deadline)) for _ in range(2)
        ]
        for thread in attackers:
            thread.start()
        for _ in range(1_100):
            with contextlib.suppress(OSError):
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        probe_result: list[tuple[list[float], Counter[int]]] = []
        prober = threading.Thread(
            target=lambda: probe_result.append(probe(url, stop, 1_000_000)), daemon=True
        )
        prober.start()
        while time.monotonic() < deadline:
            time.sleep(0.2)
        stop.set()
        for thread in (*attackers, prober, sampler):
            thread.join(120)
        for sock in idle:
            sock.close()
        hwm = rss_kib(process.pid, "VmHWM")
        under, probe_statuses = probe_result[0]
    rows.append(
        f"| {label} | alone | {len(alone)} | {quantile_ms(alone, 0.5):.2f} | "
        f"{quantile_ms(alone, 0.99):.2f} | {max(alone) * 1000:.1f} | {rss_alone / 1024:.0f} | | "
        f"{pss_alone / 1024:.0f} | {serve_alone / 1024:.0f} |"
    )
    rows.append(
        f"| {label} | under attack ({seconds:.0f} s, {len(idle)} idle sockets) | {len(under)} | "
        f"{quantile_ms(under, 0.5):.2f} | {quantile_ms(under, 0.99):.2f} | "
        f"{max(under) * 1000:.1f} | "
        f"{peak[0] / 1024:.0f} | {hwm / 1024:.0f} | {peak[1] / 1024:.0f} | "
        f"{peak[2] / 1024:.0f} |"
    )
    rows.append(f"<!-- {label} probe statuses {dict(probe_statuses)} -->")
    rows.extend(f"<!-- {label} {name}: {count} -->" for name, count in sorted(statuses.items()))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--postgres", default=None)
    args = parser.parse_args()
    rows: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        rows += run("SQLite", f"sqlite:///{tmp}/hostile.db", args.seconds)
        if args.postgres:
            rows += run("PostgreSQL", args.postgres, args.seconds)
    print(
        "| store | phase | probe POSTs | p50 ms | p99 ms | max ms | RSS max MiB | VmHWM MiB "
        "| PSS max MiB | serve's own PSS max MiB |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
