"""Intake at scale (bench/scale.py intake): the bare endpoint and registry-monitor side by side,
on an empty store and on the full one, then on the full store while retention expires at least 1M
events, 8 clients read /v1/tags and /v1/stats/daily, and detection catches up on 100k events.
Beside every run of wrk, bench/syncprobe.py syncs a small file in the stores' directory every
10 ms: each row shows the file system's own p99 and slowest sync of the same seconds, which
bound from below what a durable answer can take; and bench/runqueue.py reads how long `serve`
waited for a core in those seconds (ms a second), what it owes to the CPU rather than the disk.
Before each server's rows the machine is let settle (`settle`): the acceptance's c=1 figures
are for an idle machine, and a busy phase or a store's copy leaves minutes of load and
write-back behind it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import create_engine, text

from bench.runqueue import CoreWait, core_wait
from bench.scaleload import (
    Running,
    WrkResult,
    bare_command,
    free_port,
    load_average,
    mixed_bodies,
    monitor_env,
    push_bodies,
    readers,
    server,
    wrk_intake,
    wrk_intake_until_stopped,
)
from bench.scalestore import DATA_DIR, PG_ADMIN, Store, _libpq, drop_working_copy, working_copy
from bench.slowanswers import Slow, slow_answers
from bench.syncprobe import SyncLatency, sync_probe

SERVE = ["-m", "monitor", "serve"]
EXPIRE = 1_000_000
DETECT_BACKLOG = 100_000


@dataclasses.dataclass
class Row:
    server: str
    store: str
    load: str
    connections: int
    result: WrkResult
    rss_mib: float
    uptime: str
    note: str = ""
    pss_mib: float = 0.0  # the pages serve and its children share counted once
    serve_pss_mib: float = 0.0  # serve's own share, without its children
    disk: SyncLatency | None = None  # the file system's syncs beside it (bench/syncprobe.py)
    cpu: CoreWait | None = None  # serve's time on a core and waiting for one (bench/runqueue.py)
    slow: Slow | None = None  # serve's own count of its slow answers (bench/slowanswers.py)


@dataclasses.dataclass
class Run:
    seconds: float
    work: Path
    log: Path
    rows: list[Row] = dataclasses.field(default_factory=list)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        r = row.result
        print(
            f"  {row.server} | {row.store} | {row.load} | c={row.connections} | "
            f"{r.rate:,.0f}/s p50 {r.p50_ms:.2f} p99 {r.p99_ms:.2f} max {r.max_ms:.1f} ms | "
            f"errors {r.status_errors}+{r.socket_errors} | RSS {row.rss_mib:.0f} MiB | "
            f"PSS {row.pss_mib:.0f} MiB (serve {row.serve_pss_mib:.0f}) | "
            f"disk's sync p99 / max {_disk(row)} ms | serve on a core / waiting {_cpu(row)} "
            f"ms/s | over 50 / 100 ms (inbox) {_slow(row)} | load {row.uptime} {row.note}",
            flush=True,
        )


def _python() -> str:
    import sys

    return sys.executable


UVLOOP_SERVE = (
    "import sys, uvloop; uvloop.install(); from monitor.cli import main; sys.exit(main(['serve']))"
)


def bare(run: Run, *, loop: str = "asyncio", http: str = "h11", path: str = "") -> None:
    port = free_port()
    label = f"bare starlette ({loop}, {http})"
    env = {"PYTHONPATH": path} if path else {}
    with server(bare_command(run.work, port, loop=loop, http=http), env, port, run.log) as s:
        for connections in (1, 64):
            result, disk, cpu, _ = _probed(run, s, mixed_bodies(), connections, counted=False)
            run.add(
                Row(
                    label,
                    "-",
                    "-",
                    connections,
                    result,
                    s.peak_rss_mib,
                    load_average(),
                    pss_mib=s.peak_pss_mib,
                    serve_pss_mib=s.peak_serve_pss_mib,
                    disk=disk,
                    cpu=cpu,
                )
            )


def _probed(
    run: Run, s: Running, bodies: list[str], connections: int, *, counted: bool = True
) -> tuple[WrkResult, SyncLatency, CoreWait, Slow | None]:
    """wrk's run with the file system's syncs measured beside it: an answer of ours waits
    for a commit, whose flush is at least one such sync, so a row's p99 is read against the
    disk's p99 of the same seconds (the probe adds 100 small syncs a second); with the
    time `serve` waited for a core, and (`counted`: a server with `/metrics`) its own count of
    slow answers and slow inbox commits."""
    with contextlib.ExitStack() as stack:
        disk = stack.enter_context(sync_probe(DATA_DIR))
        cpu = stack.enter_context(core_wait(s.pid))
        slow = stack.enter_context(slow_answers(s.url)) if counted else [None]
        result = wrk_intake(
            s.url + "/v1/notifications", bodies, connections=connections,
            seconds=run.seconds, work=run.work,
        )  # fmt: skip
    return result, disk[0], cpu[0], slow[0]


def _disk(row: Row) -> str:
    return "-" if row.disk is None else f"{row.disk.p99_ms:.2f} / {row.disk.max_ms:.1f}"


def _cpu(row: Row) -> str:
    return "-" if row.cpu is None else row.cpu.brief()


def _slow(row: Row) -> str:
    return "-" if row.slow is None else row.slow.brief()


def _intake_rows(run: Run, s: Running, label: str, store: str, busiest: str) -> None:
    for connections in (1, 64):
        result, disk, cpu, slow = _probed(run, s, mixed_bodies(), connections)
        run.add(Row(label, store, "captured mix", connections, result, s.peak_rss_mib,
                    load_average(), pss_mib=s.peak_pss_mib,
                    serve_pss_mib=s.peak_serve_pss_mib, disk=disk, cpu=cpu,
                    slow=slow))  # fmt: skip
    result, disk, cpu, slow = _probed(run, s, push_bodies(busiest), 1)
    run.add(Row(label, store, f"manifest push to {busiest}", 1, result, s.peak_rss_mib,
                load_average(), pss_mib=s.peak_pss_mib,
                serve_pss_mib=s.peak_serve_pss_mib, disk=disk, cpu=cpu,
                slow=slow))  # fmt: skip


@contextmanager
def empty_store(kind: str, work: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{work}/empty.db"
        return
    url = Store("postgresql", 0).url(work=True).replace("scale_postgresql_0_work", "scale_empty")
    with psycopg.connect(_libpq(PG_ADMIN), autocommit=True) as admin:
        admin.execute(b'DROP DATABASE IF EXISTS "scale_empty" WITH (FORCE)')
        admin.execute(b'CREATE DATABASE "scale_empty"')
    try:
        yield url
    finally:
        with psycopg.connect(_libpq(PG_ADMIN), autocommit=True) as admin:
            admin.execute(b'DROP DATABASE IF EXISTS "scale_empty" WITH (FORCE)')


def serve(run: Run, url: str, *, uvloop_path: str = "", **settings: str) -> Any:
    port = free_port()
    env = monitor_env(url, port, **settings)
    if uvloop_path:
        env["PYTHONPATH"] = uvloop_path
        return server([_python(), "-c", UVLOOP_SERVE], env, port, run.log)
    return server([_python(), *SERVE], env, port, run.log)


def uvloop_serve(run: Run, path: str) -> None:
    """serve on an empty SQLite store with uvloop as its event loop (its HTTP protocol is
    httptools, as without uvloop)."""
    with (
        empty_store("sqlite", run.work) as url,
        serve(run, url, uvloop_path=path, database_sqlite_synchronous="FULL") as s,
    ):
        for connections in (1, 64):
            result = wrk_intake(
                s.url + "/v1/notifications", mixed_bodies(), connections=connections,
                seconds=run.seconds, work=run.work,
            )  # fmt: skip
            run.add(Row("registry-monitor, SQLite FULL, uvloop", "empty", "captured mix",
                        connections, result, s.peak_rss_mib, load_average(),
                        pss_mib=s.peak_pss_mib,
                        serve_pss_mib=s.peak_serve_pss_mib))  # fmt: skip


def monitor_label(kind: str) -> str:
    return "registry-monitor, " + ("SQLite FULL" if kind == "sqlite" else "PostgreSQL")


SETTLE_LOAD = 1.0
SETTLE_SECONDS = 180.0


def settle(limit: float = SETTLE_SECONDS) -> None:
    """Writes back what the kernel holds dirty, then waits (at most `limit` seconds) until
    the one-minute load average is under SETTLE_LOAD."""
    started = time.monotonic()
    os.sync()
    while float(load_average().split()[0]) >= SETTLE_LOAD:
        if time.monotonic() - started >= limit:
            print(f"  not settled after {limit:.0f} s: load {load_average()}", flush=True)
            return
        time.sleep(5)
    print(f"  settled in {time.monotonic() - started:.0f} s: load {load_average()}", flush=True)


def variants(kind: str, work: Path) -> list[tuple[str, dict[str, str]]]:
    """`serve`'s configurations measured on a store of `kind`: on PostgreSQL the intake inbox
    in the store (the default) and in a file of the replica's own (`notifications.inbox_file`,
    synced as SQLite FULL)."""
    label = monitor_label(kind)
    if kind == "sqlite":
        return [(label, {"database_sqlite_synchronous": "FULL"})]
    own = {"database_sqlite_synchronous": "FULL", "notifications_inbox_file": str(work / "inbox")}
    return [(label, {}), (f"{label}, inbox file", own)]


def _fresh(settings: dict[str, str], store: str) -> dict[str, str]:
    """`settings` with an inbox file of its own for `store` (a file's bodies belong to the
    store that applied them)."""
    if "notifications_inbox_file" not in settings:
        return settings
    return {
        **settings,
        "notifications_inbox_file": f"{settings['notifications_inbox_file']}-{store}",
    }


def intake(run: Run, store: Store, *, full: bool, busy: bool) -> None:
    busiest = store.meta()["busiest"]
    for label, settings in variants(store.kind, run.work):
        settle()
        with (
            empty_store(store.kind, run.work) as url,
            serve(run, url, **_fresh(settings, "empty")) as s,
        ):
            _intake_rows(run, s, label, "empty", busiest)
    if not full:
        return
    for label, settings in variants(store.kind, run.work):
        print(f"  copying {store.name} ...", flush=True)
        url = working_copy(store)
        try:
            settle()
            with serve(run, url, **_fresh(settings, "full")) as s:
                _intake_rows(run, s, label, f"{store.events / 1e6:g}M events", busiest)
            if busy:
                under_load(run, store, url, label, _fresh(settings, "busy"))
        finally:
            drop_working_copy(store)


NTH_OLDEST = "SELECT occurred_at FROM events ORDER BY occurred_at, id LIMIT 1 OFFSET :offset"
COUNT_BEFORE = "SELECT COUNT(*) FROM events WHERE occurred_at < :cut"


def _scalar(url: str, sql: str, **params: Any) -> Any:
    engine = create_engine(url)
    if "cut" in params and engine.dialect.name == "sqlite":
        params["cut"] = params["cut"].replace(tzinfo=None).isoformat(" ", "microseconds")
    try:
        with engine.connect() as connection:
            return connection.execute(text(sql), params).scalar()
    finally:
        engine.dispose()


def _stamp(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    stamp: datetime = value if value.tzinfo else value.replace(tzinfo=UTC)
    return stamp


def expiry_days(url: str, store: Store) -> int:
    """`retention.events_days` that expires at least 1M events (10% of a smaller store).

    Retention counts whole days back from now: the cut is the first such boundary after the
    1M-th oldest event, so the events due are 1M and the rest of that day (1.0-1.1M on the 10M
    store, whose days hold about 111k each).
    """
    expire = min(EXPIRE, store.events // 10)
    nth = _stamp(_scalar(url, NTH_OLDEST, offset=expire - 1))
    return max(1, math.floor((datetime.now(UTC) - nth) / timedelta(days=1)))


def under_load(run: Run, store: Store, url: str, label: str, sync: dict[str, str]) -> None:
    """Intake at c=1 while retention, 8 readers and a detection backlog run in the server."""
    days = expiry_days(url, store)
    cut = datetime.now(UTC) - timedelta(days=days)
    due = int(_scalar(url, COUNT_BEFORE, cut=cut))
    last = int(_scalar(url, "SELECT MAX(id) FROM events"))
    backlog = min(DETECT_BACKLOG, store.events // 10)
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE detector_state SET cursor = :c WHERE name = 'default'"),
            {"c": last - backlog},
        )
    engine.dispose()
    settings = {
        **sync,
        "retention_events_days": str(days),
        "retention_schedule": "* * * * *",
    }
    marks: dict[str, float] = {}
    with serve(run, url, **settings) as s:
        started = time.monotonic()
        with (
            sync_probe(DATA_DIR) as device,
            core_wait(s.pid) as cpu,
            slow_answers(s.url) as slow,
            readers(s.url),
            wrk_intake_until_stopped(
                s.url + "/v1/notifications", mixed_bodies(), connections=1, work=run.work
            ) as results,
        ):
            _wait(url, cut, last, started, marks)
        window = time.monotonic() - started
        left = int(_scalar(url, COUNT_BEFORE, cut=cut))
        note = "; ".join(
            [
                f"expired {due:,} (events_days={days}) in {marks['retention']:.0f} s"
                if "retention" in marks
                else f"retention expired {due - left:,} of {due:,} (events_days={days}) in "
                f"the {window:.0f} s window",
                f"detection caught up on {backlog:,} in {marks['detection']:.0f} s"
                if "detection" in marks
                else f"detection had not caught up on {backlog:,} in {window:.0f} s",
                f"peak PSS MiB by process: {s.roles_note()}",
                f"the file system beside it (bench/syncprobe.py): {device[0].line()}",
                f"inbox commits tried again: {slow[0].retries:,}",
            ]
        )
        run.add(Row(label, f"{store.events / 1e6:g}M events",
                    "retention + 8 readers + detection backlog", 1, results[0], s.peak_rss_mib,
                    load_average(), note, s.peak_pss_mib, s.peak_serve_pss_mib,
                    device[0], cpu[0], slow[0]))  # fmt: skip


def _wait(url: str, cut: datetime, last: int, started: float, marks: dict[str, float]) -> None:
    engine = create_engine(url)
    retention_started: float | None = None
    deadline = started + 900
    try:
        oldest0 = None
        while time.monotonic() < deadline and len(marks) < 2:
            with engine.connect() as connection:
                oldest = _stamp(
                    connection.execute(text("SELECT MIN(occurred_at) FROM events")).scalar()
                )
                cursor = connection.execute(
                    text("SELECT cursor FROM detector_state WHERE name = 'default'")
                ).scalar()
            oldest0 = oldest0 or oldest
            now = time.monotonic()
            if retention_started is None and oldest != oldest0:
                retention_started = now
            if "retention" not in marks and oldest >= cut and retention_started is not None:
                marks["retention"] = now - retention_started
            if "detection" not in marks and cursor is not None and int(cursor) >= last:
                marks["detection"] = now - started
            time.sleep(1)
    finally:
        engine.dispose()


def report(run: Run) -> str:
    lines = [
        "| server | store | load | c | req/s | p50 ms | p99 ms | max ms | disk's sync p99 / max ms "
        "| serve on a core / waiting, ms/s | serve's answers over 50 / 100 ms (inbox commits) "
        "| non-2xx | RSS MiB | PSS MiB | serve's own PSS MiB | load avg |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | --- |",
    ]
    for row in run.rows:
        r = row.result
        lines.append(
            f"| {row.server} | {row.store} | {row.load} | {row.connections} | {r.rate:,.0f} | "
            f"{r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.max_ms:.1f} | {_disk(row)} | {_cpu(row)} | "
            f"{_slow(row)} | "
            f"{r.status_errors} | {row.rss_mib:.0f} | {row.pss_mib:.0f} | "
            f"{row.serve_pss_mib:.0f} | {row.uptime} |"
        )
    notes = [f"- {row.server}, {row.load}: {row.note}" for row in run.rows if row.note]
    return "\n".join([*lines, "", *notes])


def save(run: Run) -> Path:
    path = DATA_DIR / f"intake-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(
        json.dumps(
            [{**dataclasses.asdict(row), "rate": row.result.rate} for row in run.rows],
            indent=2,
        )
    )
    return path


def main(
    stores: list[Store], *, seconds: float, full: bool, busy: bool, uvloop_path: str = "",
    progress: Callable[[str], None] = print,
) -> None:  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(seconds, Path(tmp), DATA_DIR / "intake-servers.log")
        progress(f"start {datetime.now(UTC):%H:%M} UTC, load {load_average()}")
        bare(run)  # uvicorn without its optional parser: the baseline
        bare(run, http="httptools")  # the protocol `serve` runs: like for like
        if uvloop_path:
            bare(run, loop="uvloop", http="h11", path=uvloop_path)
            bare(run, loop="uvloop", http="httptools", path=uvloop_path)
            uvloop_serve(run, uvloop_path)
        for store in stores:
            intake(run, store, full=full, busy=busy)
        progress(f"end {datetime.now(UTC):%H:%M} UTC, load {load_average()}")
        progress(report(run))
        progress(f"saved {save(run)}")
