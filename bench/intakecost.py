"""Benchmark: what one notification costs `serve`, beside the bare endpoint in the same run.

    python -m bench.intakecost [--seconds S] [--db sqlite|postgresql|both] [--rounds N]

wrk posts the captured notifications (each with a fresh event id) to the bare starlette endpoint
and to `registry-monitor serve` on an empty store (SQLite synchronous=FULL, PostgreSQL), at
concurrency 1 and 64. Beside requests/s and latency it reports the server's CPU time per request
(user + system of the whole process, from /proc, including applying the intake inbox after the
load), how long the inbox took to be applied once the load stopped and the rate at which
events were stored over load and drain together, and the load average at each row. With
`--rounds N` the servers are measured N times in turn (bare, SQLite, PostgreSQL, bare, ...), so a
change of load hits every server alike. The commit floor (one one-row transaction with
synchronous=FULL in the same directory, timed in-process) is printed first: at concurrency 1 an
answer cannot be faster than that commit.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import make_url

from bench.quantiles import quantiles
from bench.scaleload import (
    MEDIA_TYPE,
    TOKEN,
    WrkResult,
    bare_command,
    fill,
    free_port,
    load_average,
    mixed_bodies,
    monitor_env,
    server,
    wrk_intake,
)
from bench.scalestore import PG_ADMIN, _libpq
from monitor.clock import utc_now
from monitor.ingest.boundary import Window
from monitor.ingest.notification import parse_envelope
from monitor.observability.metrics import make_metrics
from monitor.settings.fields import Secret
from monitor.settings.sections import DatabaseSettings
from monitor.store.engine import make_engine, make_session_factory
from monitor.store.migrate import upgrade
from monitor.store.writer import StoreWriter

PG_DATABASE = "intakecost_bench"
CLOCK_TICKS = 100  # os.sysconf("SC_CLK_TCK") on Linux


def cpu_seconds(pid: int) -> float:
    """User + system CPU so far of process `pid` and its child processes (`serve`'s intake
    applier), all threads."""
    # Imported here: `writer_alone_in` runs this module on an older tree's `bench` too.
    from bench.scaleload import family

    total = 0
    for one in family(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def commit_floor(directory: Path, commits: int = 1000) -> tuple[float, float]:
    """p50 and p99 seconds of a one-row commit in a WAL database with synchronous=FULL (after
    enough commits that the WAL is checkpointed and rewritten, as in a running server)."""
    path = directory / "floor.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
    times = []
    for n in range(2 * commits):
        started = time.perf_counter()
        db.execute("BEGIN")
        db.execute("INSERT INTO t (body) VALUES (?)", (f"row {n}" * 20,))
        db.execute("COMMIT")
        times.append(time.perf_counter() - started)
    db.close()
    p50, p99 = quantiles(times[commits:], [0.5, 0.99])
    return p50, p99


def writer_alone(url: str, synchronous: str, count: int = 2000) -> str:
    """The store writer in this process, without HTTP: submit one parsed notification, wait
    for its commit, next (as intake does at concurrency 1). p50/p99 and CPU per submission."""
    settings = DatabaseSettings(url=Secret(url), sqlite_synchronous=synchronous)
    engine = make_engine(settings)
    upgrade(engine)
    writer = StoreWriter(
        make_session_factory(engine), metrics=make_metrics(CollectorRegistry()), clock=utc_now
    )
    templates = mixed_bodies()
    nonce = f"{time.time_ns():x}"
    window = Window(utc_now(), timedelta(minutes=10))
    envelopes = [
        parse_envelope(
            fill(templates[n % len(templates)], f"{nonce}-{n}", utc_now()).encode(),
            MEDIA_TYPE,
            window=window,
        )
        for n in range(count + 200)
    ]
    writer.start()
    try:
        for envelope in envelopes[:200]:
            writer.submit(envelope.events).result(30)
        times = []
        cpu0 = time.process_time()
        for envelope in envelopes[200:]:
            started = time.perf_counter()
            writer.submit(envelope.events).result(30)
            times.append(time.perf_counter() - started)
        cpu = time.process_time() - cpu0
    finally:
        writer.stop()
        engine.dispose()
    p50, p99 = quantiles(times, [0.5, 0.99])
    store = "SQLite" if url.startswith("sqlite") else "PostgreSQL"
    sync = f" synchronous={synchronous}" if store == "SQLite" else ""
    return (
        f"writer alone, {store}{sync}: p50 {p50 * 1000:.3f} ms, p99 {p99 * 1000:.3f} ms, "
        f"CPU {cpu / count * 1000:.3f} ms/notification (load {load_average()})"
    )


@contextlib.contextmanager
def pg_database() -> Iterator[str]:
    with psycopg.connect(_libpq(PG_ADMIN), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)'.encode())
        admin.execute(f'CREATE DATABASE "{PG_DATABASE}"'.encode())
    try:
        yield make_url(PG_ADMIN).set(database=PG_DATABASE).render_as_string(False)
    finally:
        with psycopg.connect(_libpq(PG_ADMIN), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)'.encode())


def backlog(url: str) -> float | None:
    """`registry_monitor_intake_backlog` of the server at `url` (None when it has none)."""
    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    for line in text.splitlines():
        if line.startswith("registry_monitor_intake_backlog "):
            return float(line.split()[1])
    return None


def drain_seconds(url: str, limit: float = 600) -> float | None:
    """How long after the load the server's intake inbox took to be applied (None: no inbox)."""
    started = time.perf_counter()
    while (waiting := backlog(url)) is not None and waiting > 0:
        if time.perf_counter() - started > limit:
            raise RuntimeError(f"{waiting:.0f} bodies still waiting after {limit:g} s")
        time.sleep(0.05)
    return None if waiting is None else time.perf_counter() - started


def measure(
    label: str, command: list[str], env: dict[str, str], port: int, work: Path, seconds: float
) -> list[str]:
    rows = []
    with server(command, env, port, work / "servers.log") as s:
        # warm up: the first requests create connections, compile statements, touch pages
        wrk_intake(s.url + "/v1/notifications", mixed_bodies(), connections=1, seconds=1,
                   work=work)  # fmt: skip
        for connections in (1, 64):
            cpu0 = cpu_seconds(s.pid)
            result: WrkResult = wrk_intake(
                s.url + "/v1/notifications", mixed_bodies(), connections=connections,
                seconds=seconds, work=work,
            )  # fmt: skip
            load = load_average()
            drained = drain_seconds(s.url)
            cpu = cpu_seconds(s.pid) - cpu0
            per_request_ms = cpu / result.requests * 1000 if result.requests else 0.0
            stored = (
                "-" if drained is None else
                f"{drained:.1f} s, {result.requests / (result.seconds + drained):,.0f}/s"
            )  # fmt: skip
            rows.append(
                f"| {label} | {connections} | {result.rate:,.0f} | {result.p50_ms:.2f} | "
                f"{result.p99_ms:.2f} | {result.max_ms:.1f} | {per_request_ms:.3f} | "
                f"{result.status_errors + result.socket_errors} | {stored} | {load} |"
            )
            print(rows[-1], flush=True)
    return rows


# Runs from another source tree ($BENCH_BEFORE, the version to compare with): the editable
# install's finder is taken off the import path so that `monitor` comes from that tree.
BEFORE = (
    "import os, runpy, sys; "
    "sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in str(f)]; "
    "sys.path.insert(0, os.environ['BENCH_BEFORE']); "
)
SERVE = "runpy.run_module('monitor', run_name='__main__')"
WRITER = (
    "import importlib.util; "
    f"spec = importlib.util.spec_from_file_location('intakecost', {str(Path(__file__))!r}); "
    "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
    "print(m.writer_alone(sys.argv[1], sys.argv[2]), flush=True)"
)


def writer_alone_in(tree: Path | None, url: str, synchronous: str) -> str:
    """`writer_alone` in a process of its own, on the `monitor` of `tree` (None: this one)."""
    env = dict(os.environ)
    code = "import sys; " + WRITER
    if tree is not None:
        env["BENCH_BEFORE"] = str(tree)
        code = BEFORE + WRITER
    done = subprocess.run(
        [sys.executable, "-c", code, url, synchronous],
        env=env, capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    return done.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--no-http", action="store_true", help="only the in-process figures")
    parser.add_argument("--before", type=Path, help="source tree of the version to compare with")
    args = parser.parse_args()
    trees: list[tuple[str, Path | None]] = [("", None)]
    if args.before is not None:
        trees.append(("before: ", args.before.resolve()))
    sqlite, postgresql = args.db in ("sqlite", "both"), args.db in ("postgresql", "both")
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        work = Path(tmp)
        p50, p99 = commit_floor(work)
        print(
            f"one-row commit, SQLite WAL synchronous=FULL in {work.parent}: "
            f"p50 {p50 * 1000:.3f} ms, p99 {p99 * 1000:.3f} ms (load {load_average()})\n"
        )
        for round_ in range(args.rounds):
            for prefix, tree in trees:
                if sqlite:
                    for synchronous in ("OFF", "FULL"):
                        url = f"sqlite:///{work}/writer-{round_}-{synchronous}-{bool(tree)}.db"
                        print(prefix + writer_alone_in(tree, url, synchronous), flush=True)
                if postgresql:
                    with pg_database() as url:
                        print(prefix + writer_alone_in(tree, url, "FULL"), flush=True)
        if args.no_http:
            return
        print(
            "\n| server | c | req/s | p50 ms | p99 ms | max ms | CPU ms/request | errors "
            "| backlog applied after | load |"
        )
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |", flush=True)
        for round_ in range(args.rounds):
            port = free_port()
            measure("bare starlette", bare_command(work, port, loop="asyncio", http="h11"),
                    {}, port, work, args.seconds)  # fmt: skip
            for prefix, tree in trees:
                command = [sys.executable, "-m", "monitor", "serve"]
                extra = {}
                if tree is not None:
                    command = [sys.executable, "-c", BEFORE + SERVE, "serve"]
                    extra = {"BENCH_BEFORE": str(tree)}
                stores: list[tuple[str, contextlib.AbstractContextManager[str]]] = []
                if sqlite:
                    db = f"sqlite:///{work}/intake-{round_}-{bool(tree)}.db"
                    stores.append(("SQLite FULL", contextlib.nullcontext(db)))
                if postgresql:
                    stores.append(("PostgreSQL", pg_database()))
                for label, store in stores:
                    with store as url:
                        port = free_port()
                        env = {**monitor_env(url, port, database_sqlite_synchronous="FULL"),
                               **extra}  # fmt: skip
                        measure(f"{prefix}registry-monitor, {label}", command, env, port, work,
                                args.seconds)  # fmt: skip


if __name__ == "__main__":
    main()
