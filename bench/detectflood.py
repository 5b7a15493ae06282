"""Benchmark: detection through a flood of failed logins from new accounts and addresses.

    python -m bench.detectflood [--events N] [--minutes M] [--postgres URL]

A PostgreSQL database of its own, migrated; `--events` (default 300,000) failed logins, each
naming a new account from a new address (as a client that sets any `X-Forwarded-For` can
make the registry record), spread over the `--minutes` (default 5) before now, are stored; then
the detection job catches up on them as `serve`'s applier runs it (progress kept, passes of up
to `BATCH_CAP_APART`). Reports the passes, their wall and CPU time, the process's peak RSS
growth, the windows the state holds at the end and its size as one JSON document (what a
save wrote before the state was saved in parts), what the store keeps of it (the detector's row,
and its parts where the store has them), the WAL PostgreSQL wrote while detection ran, and
`registry_monitor_detection_windows_dropped_total` where the tree has it. Only the detection
API both trees share is used, so a source tree without the cap runs it too (copy the file).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench.scalestore import PG_ADMIN, _libpq
from monitor.detect.state import state_to_json
from monitor.events import Action, Event, Source
from monitor.main import build_services
from monitor.pipeline import detection
from tests.conftest import make_settings
from tests.fixture_events import make_event


def flood(count: int, end: datetime, minutes: float) -> list[Event]:
    step = timedelta(minutes=minutes) / count
    start = end - timedelta(minutes=minutes)
    return [
        make_event(
            event_id=f"flood-{n}",
            source=Source.LOG,
            action=Action.AUTH_FAILURE,
            occurred_at=start + n * step,
            target_kind=None,
            repository=None,
            digest=None,
            media_type=None,
            size=None,
            actor=f"guess-{n}",
            remote_ip=f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}",
            user_agent="curl/8.5.0",
        )
        for n in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--postgres", default=PG_ADMIN)
    args = parser.parse_args()
    name = "bench_detectflood"
    admin = _libpq(args.postgres)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
        connection.execute(f'CREATE DATABASE "{name}"'.encode())
    url = make_url(args.postgres).set(database=name).render_as_string(False)
    registry = CollectorRegistry()
    services = build_services(
        make_settings(url, Path(tempfile.mkdtemp(prefix="bench-detectflood-"))),
        registry=registry,
        migrate=True,
    )
    services.start()

    def wal_position() -> Any:
        with psycopg.connect(admin, autocommit=True) as connection:
            return connection.execute(b"SELECT pg_current_wal_lsn()").fetchone()[0]  # type: ignore[index]

    try:
        now = datetime.now(UTC)
        events = flood(args.events, now - timedelta(seconds=5), args.minutes)
        for start in range(0, len(events), 5_000):
            services.writer.submit(events[start : start + 5_000]).result(timeout=120)
        del events
        time.sleep(1.5)  # every event settled
        progress = detection.Progress()
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        wal_start = wal_position()
        cpu_started, started = time.process_time(), time.perf_counter()
        passes = processed = 0
        while True:
            report = detection.catch_up(
                services.session_factory,
                services.detector,
                clock=lambda: datetime.now(UTC),
                settle=timedelta(seconds=1),
                budget_seconds=3600,
                progress=progress,
                save_every=timedelta(seconds=detection.SAVE_SECONDS),
                batch_cap=detection.BATCH_CAP_APART,
                on_pass=lambda r, at: detection.record_detection(services.metrics, r, at),
            )
            passes += report.passes
            processed += report.processed
            if not report.behind:
                break
        cpu = time.process_time() - cpu_started
        wall = time.perf_counter() - started
        rss_growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
        with psycopg.connect(admin, autocommit=True) as connection:
            wal = connection.execute(
                b"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (wal_start,)
            ).fetchone()[0]  # type: ignore[index]
        with services.session_factory() as session:
            core = session.execute(text("SELECT length(state) FROM detector_state")).scalar()
            try:
                part_rows, part_bytes = session.execute(
                    text("SELECT count(*), coalesce(sum(length(body)), 0) FROM detector_parts")
                ).one()
            except Exception:  # a tree that saves the state in one document
                part_rows, part_bytes = 0, 0
        state = progress.state
        windows = (
            (len(state.counts), len(state.distinct), len(state.incidents)) if state else (0, 0, 0)
        )
        as_json = len(state_to_json(state)) if state else 0
        dropped = registry.get_sample_value("registry_monitor_detection_windows_dropped_total")
        print(
            "| events | passes | wall s | CPU s | peak RSS growth MiB | windows (counts, "
            "distinct, incidents) | state as JSON | detector row | parts | WAL | dropped |"
        )
        print("| ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
        print(
            f"| {processed:,} | {passes} | {wall:.1f} | {cpu:.1f} | {rss_growth:.0f} | "
            f"{windows} | {as_json / 1e6:.1f} MB | {(core or 0) / 1e6:.2f} MB | "
            f"{part_rows:,} rows, {part_bytes / 1e6:.2f} MB | {float(wal) / 1e6:.0f} MB | "
            f"{'-' if dropped is None else f'{dropped:,.0f}'} |"
        )
    finally:
        services.stop()
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


if __name__ == "__main__":
    main()
