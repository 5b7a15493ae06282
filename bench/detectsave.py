"""Benchmark: what the detection job writes and spends on quiet traffic.

    python -m bench.detectsave [--seconds S] [--rate N] [--postgres URL]
        [--history N | --state FILE]

A PostgreSQL database of its own per mode, migrated, holding a detector state: the detector's
state after judging `--history` synthetic events (default 300,000: 2,000 accounts from 500
addresses pushing and pulling 60k tags of 1,000 repositories over a week; 8.6 MB of JSON), or
the state in `--state FILE` (one document, as `state_to_json` writes it and stores saved it
before version 3; the `bench.scale` catch-up leaves one of 1.3 MB), saved as the store saves
it before the measure starts. Then, once a second for `--seconds`, `--rate`
pulls of one repository by one known account (no rule fires; the account's last-seen times
move) are stored and a detection pass runs, as the `detect` job runs them. Two modes: the
passes save the state every time (as `detect_pass` without progress), or keep their
progress between saves (`Progress`, saved every `SAVE_SECONDS`). Reports the saves, the WAL
PostgreSQL wrote (`pg_current_wal_lsn`, the events' own inserts included), and the CPU and
wall time of the passes. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
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
from monitor.detect.state import DetectorState, state_from_json, state_to_json
from monitor.events import Action, Event, TargetKind
from monitor.main import build_services
from monitor.pipeline import detection
from monitor.pipeline.detector_saves import save_state
from monitor.store.detector_state import lock_detector_position
from tests.conftest import make_settings
from tests.fixture_events import make_event


def history(count: int, end: datetime) -> list[Event]:
    """`count` pushes and pulls spread over the week before `end`."""
    step = timedelta(days=7) / count
    events = []
    for n in range(count):
        push = n % 5 == 0
        events.append(
            make_event(
                event_id=f"history-{n}",
                occurred_at=end - timedelta(days=7) + n * step,
                action=Action.PUSH if push else Action.PULL,
                http_method="PUT" if push else "GET",
                target_kind=TargetKind.MANIFEST,
                actor=f"user-{n % 2000}",
                remote_ip=f"10.0.{n % 500 // 250}.{n % 250}",
                repository=f"team-{n % 1000 // 100}/service-{n % 1000}",
                tag=f"v{n % 100_000}",
                digest="sha256:" + f"{n:064x}",
            )
        )
    return events


def build_state(detector: Any, count: int, end: datetime) -> str:
    state = DetectorState()
    events = history(count, end)
    for start in range(0, len(events), 20_000):
        chunk = events[start : start + 20_000]
        _, state = detector.process(chunk, state, chunk[-1].occurred_at)
    return state_to_json(state)


def run_mode(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    name = f"bench_detectsave_{mode}"
    admin = _libpq(args.postgres)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
        connection.execute(f'CREATE DATABASE "{name}"'.encode())
    url = make_url(args.postgres).set(database=name).render_as_string(False)
    services = build_services(
        make_settings(url, Path(tempfile.mkdtemp(prefix="bench-detectsave-"))),
        registry=CollectorRegistry(),
        migrate=True,
    )
    services.start()

    def wal_position() -> Any:
        with psycopg.connect(admin, autocommit=True) as connection:
            return connection.execute(b"SELECT pg_current_wal_lsn()").fetchone()[0]  # type: ignore[index]

    try:
        now = datetime.now(UTC)
        state = (
            args.state.read_text().strip()
            if args.state
            else build_state(services.detector, args.history, now)
        )
        with services.session_factory() as session, session.begin():
            lock_detector_position(session, "default", now=now)
            save_state(session, "default", state_from_json(state), cursor=0, now=now, saved={})
        progress = detection.Progress() if mode == "progress" else None
        save_every = timedelta(seconds=detection.SAVE_SECONDS if progress else 0)
        start = wal_position()
        cpu = wall = 0.0
        saves = processed = sent = 0
        last: Any = None
        for _ in range(int(args.seconds)):
            at = datetime.now(UTC)
            events = []
            for _ in range(args.rate):
                sent += 1
                events.append(make_event(event_id=f"quiet-{sent}", occurred_at=at, actor="user-7"))
            services.writer.submit(events).result(timeout=30)
            time.sleep(0.6)
            cpu_started, started = time.process_time(), time.perf_counter()
            report = detection.catch_up(
                services.session_factory,
                services.detector,
                clock=lambda: datetime.now(UTC),
                settle=timedelta(seconds=0.5),
                progress=progress,
                save_every=save_every,
            )
            cpu += time.process_time() - cpu_started
            wall += time.perf_counter() - started
            processed += report.processed
            with services.session_factory() as session:
                updated = session.execute(text("SELECT updated_at FROM detector_state")).scalar()
            saves += updated != last
            last = updated
            time.sleep(max(0.0, 0.4 - (time.perf_counter() - started)))
        with psycopg.connect(admin, autocommit=True) as connection:
            wal = connection.execute(
                b"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (start,)
            ).fetchone()[0]  # type: ignore[index]
        return {
            "mode": mode,
            "state_bytes": len(state),
            "processed": processed,
            "saves": saves,
            "wal_mb": round(float(wal) / 1e6, 1),
            "cpu_s": round(cpu, 2),
            "wall_s": round(wall, 2),
        }
    finally:
        services.stop()
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=int, default=50)
    parser.add_argument("--history", type=int, default=300_000)
    parser.add_argument("--state", type=Path, default=None)
    parser.add_argument("--postgres", default=PG_ADMIN)
    args = parser.parse_args()
    rows = [run_mode(mode, args) for mode in ("every", "progress")]
    print("| passes | state | events judged | saves | WAL | passes' CPU | passes' wall time |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        label = "saved every pass" if row["mode"] == "every" else "progress kept"
        print(
            f"| {label} | {row['state_bytes'] / 1e6:.2f} MB | {row['processed']:,} | "
            f"{row['saves']} | {row['wal_mb']} MB | {row['cpu_s']} s | {row['wall_s']} s |"
        )


if __name__ == "__main__":
    main()
