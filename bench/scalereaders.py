"""Intake beside readers, retention and detection, in bounded windows (bench/scale.py readers).

The last phase of `bench.scale intake` (intake at c=1 while, in the same `serve`, retention
expires at least the oldest 1M events, 8 clients read `/v1/tags?limit=1000` and
`/v1/stats/daily?limit=1000` back to back, and detection catches up on 100k events), run for a
fixed window of `--seconds` per server instead of until retention is done, so that several
versions or settings are measured in turn on one working copy of the 10M store, under the same
load of the machine:

    python -m bench.scale readers [--db sqlite|postgresql|both] [--seconds S] [--rounds N]
                                  [--before DIR] [--variant LABEL:KEY=VALUE,...] [--profile S]

Each server starts 15 s before a minute boundary (retention is scheduled every minute, so it starts
15 s into the window), with the detector's cursor moved back 100k events; the readers and intake
start as soon as it answers, and the profile (if any) 20 s later. Servers run with
MALLOC_ARENA_MAX=2, as scripts/serve and the Docker image run them (`KEY=-` in a variant unsets a
variable), and `bench/syncprobe.py` syncs a small file in the store's directory every 10 ms beside
each window, to tell the file system's own slow syncs from the server's; bench/runqueue.py
reads how long `serve` waited for a core in the window. `--before DIR` runs
`serve` from another source tree (the version to compare with), `--variant` runs this tree with
settings (`http_read_slots=8`, ...) or environment variables in capitals. Rounds take the servers
in turn, so a change of the machine's load reaches each of them. `--profile S` records S seconds of
each window with `py-spy record --gil` (PY_SPY, default `py-spy` on PATH): the stacks that held the
GIL, summed per thread and per innermost frame of our code or of the library it called.

The working copy (`<store>_readers`) is made from the pristine store and dropped at the end;
the pristine store is only read.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from sqlalchemy import create_engine, text

from bench.runqueue import CoreWait, core_wait
from bench.scaleintake import COUNT_BEFORE, DETECT_BACKLOG, _scalar, expiry_days
from bench.scaleload import (
    WrkResult,
    free_port,
    load_average,
    mixed_bodies,
    monitor_env,
    readers,
    server,
    wrk_intake_until_stopped,
)
from bench.scalestore import DATA_DIR, PG_ADMIN, Store, _libpq, _sqlite_path, remove_sqlite_files
from bench.slowanswers import Slow, slow_answers
from bench.syncprobe import SyncLatency, sync_probe
from monitor.store.migrate import upgrade

BEFORE = (
    "import os, runpy, sys; "
    "sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in str(f)]; "
    "sys.path.insert(0, os.environ['BENCH_BEFORE']); "
    "sys.argv = ['registry-monitor', 'serve']; "
    "runpy.run_module('monitor', run_name='__main__')"
)


@dataclasses.dataclass(frozen=True)
class Server:
    label: str
    tree: Path | None = None
    settings: tuple[tuple[str, str], ...] = ()

    def command_and_env(self) -> tuple[list[str], dict[str, str]]:
        env = {k: v for k, v in self.settings if k.isupper()}
        if self.tree is None:
            return [sys.executable, "-m", "monitor", "serve"], env
        return [sys.executable, "-c", BEFORE], {**env, "BENCH_BEFORE": str(self.tree)}


def parse_variant(text: str) -> Server:
    """`LABEL:key=value,key=value` (lower-case keys are settings, upper-case environment)."""
    label, _, pairs = text.partition(":")
    settings = tuple(
        (key.strip(), value.strip())
        for key, _, value in (pair.partition("=") for pair in pairs.split(",") if pair)
    )
    return Server(label, settings=settings)


@dataclasses.dataclass
class Window:
    store: str
    server: str
    round: int
    intake: WrkResult
    readers: WrkResult | None
    rss_mib: float
    pss_mib: float
    serve_pss_mib: float
    expired: int
    detected: int
    load_start: str
    load_end: str
    device: SyncLatency | None = None
    cpu: CoreWait | None = None  # serve's time on a core and waiting for one
    slow: Slow | None = None  # serve's own count of its slow answers (bench/slowanswers.py)
    profile: str = ""
    roles: str = ""  # each process's own peak PSS (bench/scaleload.py pss_by_role)


# --- the working copy ---------------------------------------------------------------------


def copy_name(store: Store) -> str:
    return f"{store.name}_readers"


@contextlib.contextmanager
def working_copy(store: Store) -> Iterator[str]:
    """A copy of the pristine store at the current schema; dropped when the block ends."""
    name = copy_name(store)
    if store.kind == "sqlite":
        target = DATA_DIR / f"{name}.db"
        url = f"sqlite:///{target}"
        remove_sqlite_files(target)
        shutil.copyfile(_sqlite_path(store.url()), target)
    else:
        url = store.url().replace(f"/{store.name}", f"/{name}")
        with psycopg.connect(_libpq(PG_ADMIN), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
            admin.execute(
                f'CREATE DATABASE "{name}" TEMPLATE "{store.name}" STRATEGY FILE_COPY'.encode()
            )
    try:
        engine = create_engine(url)
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        yield url
    finally:
        if store.kind == "sqlite":
            remove_sqlite_files(DATA_DIR / f"{name}.db")
        else:
            with psycopg.connect(_libpq(PG_ADMIN), autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


# --- one window ---------------------------------------------------------------------------


def _move_detector_back(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            last = int(connection.execute(text("SELECT MAX(id) FROM events")).scalar_one())
            cursor = last - DETECT_BACKLOG
            connection.execute(
                text("UPDATE detector_state SET cursor = :c WHERE name = 'default'"), {"c": cursor}
            )
        return cursor
    finally:
        engine.dispose()


def _detector_cursor(url: str) -> int:
    return int(_scalar(url, "SELECT cursor FROM detector_state WHERE name = 'default'") or 0)


def _before_a_minute_starts(lead: float = 15.0) -> None:
    """Sleep until `lead` seconds before the next minute boundary (when the retention job fires),
    so that a server started now has retention running within `lead` seconds of its start."""
    now = datetime.now(UTC)
    left = 60 - now.second - now.microsecond / 1e6
    time.sleep(left - lead if left > lead else left + 60 - lead)


def record_gil(pid: int, seconds: float, out: Path) -> None:
    """`py-spy record --gil` of `pid` for `seconds` (blocks), collapsed stacks into `out`."""
    command = [
        os.environ.get("PY_SPY", "py-spy"), "record", "--pid", str(pid), "--gil", "--threads",
        "--nonblocking", "--rate", "200", "--duration", f"{seconds:g}", "--format", "raw",
        "--output", str(out),
    ]  # fmt: skip
    subprocess.run(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=seconds + 60,
        check=False,
    )  # fmt: skip


def summarise_profile(path: Path, top: int = 8) -> str:
    """Share of the GIL samples per thread kind and per innermost frame of monitor/ or of the
    library it called (SQLAlchemy, the drivers, orjson, starlette, ...)."""
    if not path.exists():
        return "no profile"
    threads: collections.Counter[str] = collections.Counter()
    frames: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        parts = stack.split(";")
        threads[_thread_kind(parts)] += count
        frames[_innermost(parts)] += count
    if not total:
        return "no samples"
    by_thread = ", ".join(f"{k} {v / total:.0%}" for k, v in threads.most_common())
    by_frame = ", ".join(f"{k} {v / total:.0%}" for k, v in frames.most_common(top))
    return f"{total} samples holding the GIL; threads: {by_thread}; frames: {by_frame}"


def _thread_kind(parts: list[str]) -> str:
    joined = ";".join(parts)
    for marker, kind in (
        ("writer.py", "writer"),
        ("api/read.py", "reads"),
        ("api/stats.py", "reads"),
        ("detection.py", "detection"),
        ("housekeeping.py", "retention"),
        ("asyncio/base_events.py", "event loop"),
    ):
        if marker in joined:
            return kind
    return "other"


def _innermost(parts: list[str]) -> str:
    for frame in reversed(parts):
        if "/monitor/" in frame or "site-packages" in frame:
            name, _, where = frame.partition(" (")
            module = where.split("site-packages/")[-1].split("/monitor/")[-1].split(":")[0]
            return f"{name} ({module})"
    return parts[-1] if parts else "?"


def window(
    url: str, store: Store, server_: Server, settings: dict[str, str], *, seconds: float,
    round_: int, profile: float, work: Path, log: Path,
) -> Window:  # fmt: skip
    port = free_port()
    command, extra = server_.command_and_env()
    env = {
        "MALLOC_ARENA_MAX": "2",  # as scripts/serve and the Docker image run it
        # A variant's settings win over the window's own (e.g. retention_schedule=-).
        **monitor_env(url, port, **(settings | {k: v for k, v in server_.settings if k.islower()})),
        **extra,
    }
    env = {k: v for k, v in env.items() if v != "-"}  # a variant's KEY=- unsets KEY
    cut = datetime.now(UTC) - timedelta(days=int(settings["retention_events_days"]))
    cursor_before = _move_detector_back(url)
    due_before = int(_scalar(url, COUNT_BEFORE, cut=cut))
    tag = f"{store.kind}-{server_.label.replace(' ', '_').replace('/', '_')}-{round_}"
    out = DATA_DIR / f"readers-profile-{tag}.txt"
    _before_a_minute_starts()
    with server(command, env, port, log) as s:
        load_start = load_average()
        with (
            sync_probe(DATA_DIR) as device,
            core_wait(s.pid) as cpu,
            slow_answers(s.url) as slow,
            readers(s.url) as read_results,
            wrk_intake_until_stopped(
                s.url + "/v1/notifications", mixed_bodies(), connections=1, work=work
            ) as results,
        ):
            settle = min(20.0, seconds / 4)
            time.sleep(settle)
            if profile > 0:
                record_gil(s.pid, profile, out)
            time.sleep(max(0.0, seconds - settle - profile))
        load_end = load_average()
        rss, pss, serve_pss = s.peak_rss_mib, s.peak_pss_mib, s.peak_serve_pss_mib
        roles = s.roles_note()
    cursor_after = _detector_cursor(url)
    due_after = int(_scalar(url, COUNT_BEFORE, cut=cut))
    return Window(
        store=f"{store.kind} {store.events / 1e6:g}M",
        server=server_.label,
        round=round_,
        intake=results[0],
        readers=read_results[0] if read_results else None,
        rss_mib=rss,
        pss_mib=pss,
        serve_pss_mib=serve_pss,
        expired=due_before - due_after,
        detected=cursor_after - cursor_before,
        load_start=load_start,
        load_end=load_end,
        device=device[0],
        cpu=cpu[0],
        slow=slow[0],
        profile=summarise_profile(out) if profile > 0 else "",
        roles=roles,
    )


def retention_settings(url: str, store: Store) -> dict[str, str]:
    """Retention set to expire at least the oldest 1M events (10% of a smaller store), every
    minute."""
    days = expiry_days(url, store)
    sync = {"database_sqlite_synchronous": "FULL"} if store.kind == "sqlite" else {}
    return {**sync, "retention_events_days": str(days), "retention_schedule": "* * * * *"}


def report(windows: list[Window]) -> str:
    lines = [
        "| store | server | round | intake req/s | p50 ms | p99 ms | max ms | non-2xx "
        "| reads/s | reads p50 ms | reads p99 ms | reads 503 | expired | detected | RSS MiB "
        "| PSS MiB | serve's own PSS MiB | device sync max ms (over 100 ms) "
        "| serve on a core / waiting, ms/s | serve's answers over 50 / 100 ms (inbox commits) "
        "| load avg start → end |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for w in windows:
        i, r = w.intake, w.readers
        reads = (
            f"{r.rate:,.1f} | {r.p50_ms:,.0f} | {r.p99_ms:,.0f} | {r.status_errors}"
            if r
            else "- | - | - | -"
        )
        lines.append(
            f"| {w.store} | {w.server} | {w.round} | {i.rate:,.0f} | {i.p50_ms:.2f} | "
            f"{i.p99_ms:.2f} | {i.max_ms:.1f} | {i.status_errors} | {reads} | {w.expired:,} | "
            f"{w.detected:,} | {w.rss_mib:.0f} | {w.pss_mib:.0f} | {w.serve_pss_mib:.0f} | "
            f"{w.device.brief() if w.device else '-'} | {w.cpu.brief() if w.cpu else '-'} | "
            f"{w.slow.brief() if w.slow else '-'} | "
            f"{w.load_start} → {w.load_end} |"
        )
    profiles = [f"- {w.store}, {w.server}, round {w.round}: {w.profile}" for w in windows]
    return "\n".join([*lines, "", *[p for p in profiles if not p.endswith(": ")]])


def main(
    stores: list[Store], servers: list[Server], *, seconds: float, rounds: int, profile: float,
    work: Path,
) -> None:  # fmt: skip
    log = DATA_DIR / "readers-servers.log"
    windows: list[Window] = []
    print(f"start {datetime.now(UTC):%H:%M} UTC, load {load_average()}", flush=True)
    for store in stores:
        print(f"  copying {store.name} ...", flush=True)
        with working_copy(store) as url:
            for round_ in range(1, rounds + 1):
                for server_ in servers:
                    # each window expires the oldest ~1M events left by the one before
                    settings = retention_settings(url, store)
                    w = window(url, store, server_, settings, seconds=seconds, round_=round_,
                               profile=profile, work=work, log=log)  # fmt: skip
                    windows.append(w)
                    print(report([w]).splitlines()[2], flush=True)
                    print(f"    peak PSS MiB by process: {w.roles}", flush=True)
                    if w.device:
                        print(f"    device: {w.device.line()}", flush=True)
                    if w.profile:
                        print("    " + w.profile, flush=True)
    print(f"end {datetime.now(UTC):%H:%M} UTC, load {load_average()}", flush=True)
    print(report(windows), flush=True)
