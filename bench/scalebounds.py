"""Reads, reports and jobs on the scale store: what `/metrics`, `/v1/stats/daily`, cleanup
planning, detection and `detect replay` cost on N events, and the RSS of `serve` after reads.

    python -m bench.scalebounds [--events N] [--db sqlite|postgresql|both]
        [--only serve,plan,plan-split,plan-detail,plan-tags,detect,replay] [--backlog N]

Run from a checkout: the code measured is the `monitor` package of the current directory, so
the same script measures an older revision when run from an export of it (`git archive`).
Reads run against a `serve` process on the kept store (started with --no-migrate; run
`python -m bench.scale build` first, which migrates the kept store forward). Planning and
detection change the store, so they run on a copy named for this run (suffix
`_bounds_<pid>_<time>`, so two runs at once never share one), dropped after. With
`plan,plan-detail`, a `serve` on that copy then reads the plan just stored through the API:
its detail, every page of its decisions and actions, and its processes' memory after.
Prints one JSON object per store.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from bench.scaleload import pss_kib
from bench.scalestore import (
    PG_ADMIN,
    Store,
    _libpq,
    _sqlite_path,
    migrate_forward,
    remove_sqlite_files,
)

SUFFIX = "_bounds"
"""Starts the name of the copy; `copy_name` adds what makes it this run's own."""
POLICIES = """
- name: everything
  repositories: ["**"]
  protect: {tags: ["latest"], grace_hours: 48, min_tags: 3}
  keep: {most_recent: 5, pulled_within_days: 30}
  delete:
    - {not_pulled_days: 30}
    - {untagged: true, older_than_days: 7}
  pulls: {ignore_clients: [scanner, monitor]}
"""
TAG_POLICIES = POLICIES.replace("    - {untagged: true, older_than_days: 7}\n", "")
"""The same policy without deleting untagged manifests (tags only)."""
READ_TOKEN = "bench-read"  # noqa: S105 (a throw-away token of the benchmark server)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[float, int]:
    headers = {"Authorization": f"Bearer {READ_TOKEN}"}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 (127.0.0.1 only)
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as answer:  # noqa: S310 (127.0.0.1)
        size = len(answer.read())
    return (time.perf_counter() - started) * 1000, size


def _rss(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return fields


def _times(url: str, count: int) -> dict[str, Any]:
    runs = [_get(url) for _ in range(count)]
    ms = [r[0] for r in runs]
    return {
        "p50_ms": round(statistics.median(ms), 1),
        "max_ms": round(max(ms), 1),
        "bytes": runs[-1][1],
        "n": count,
    }


def _walk(url: str, limit: int) -> dict[str, Any]:
    """Every page of a paged list (`limit`, `cursor`): pages, items, seconds, slowest page."""
    started = time.perf_counter()
    pages = items = 0
    slowest = 0.0
    cursor: str | None = None
    while True:
        page_url = f"{url}{'&' if '?' in url else '?'}limit={limit}"
        page_url += f"&cursor={cursor}" if cursor else ""
        headers = {"Authorization": f"Bearer {READ_TOKEN}"}
        request = urllib.request.Request(page_url, headers=headers)  # noqa: S310 (127.0.0.1 only)
        page_started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=120) as answer:  # noqa: S310 (127.0.0.1)
            document = json.loads(answer.read())
        slowest = max(slowest, time.perf_counter() - page_started)
        pages += 1
        items += len(document["items"])
        cursor = document.get("next_cursor")
        if not cursor or pages >= 10_000:
            break
    return {
        "pages": pages,
        "items": items,
        "seconds": round(time.perf_counter() - started, 1),
        "slowest_page_ms": round(slowest * 1000, 1),
    }


def _environment(url: str, data: Path) -> dict[str, str]:
    return {
        **os.environ,
        "REGISTRY_MONITOR_DATABASE_URL": url,
        "REGISTRY_MONITOR_DATABASE_DATA_DIR": str(data),
        "REGISTRY_MONITOR_NOTIFICATIONS_TOKENS": "bench-intake",
        "REGISTRY_MONITOR_API_TOKEN": READ_TOKEN,
        "REGISTRY_MONITOR_CLEANUP_PLAN_SCHEDULE": "",
        "REGISTRY_MONITOR_CLEANUP_RECONCILE_SCHEDULE": "",
        "REGISTRY_MONITOR_LOGGING_LEVEL": "warning",
    }


@contextlib.contextmanager
def _serving(url: str, kind: str) -> Iterator[tuple[str, int]]:
    """A `serve` process on the store at `url` (its schema as it is), ready: its base URL and
    process id; stopped after."""
    port = _free_port()
    data = Path(tempfile.mkdtemp(prefix=f"bench-scalebounds-{kind}-"))
    env = _environment(url, data) | {"REGISTRY_MONITOR_HTTP_ADDR": f"127.0.0.1:{port}"}
    server = subprocess.Popen(
        [sys.executable, "-m", "monitor", "serve", "--no-migrate"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(data / "serve.log", "wb"),  # noqa: SIM115
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                _get(base + "/readyz")
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("serve did not come up") from None
                time.sleep(0.2)
        yield base, server.pid
    finally:
        server.terminate()
        server.wait(30)


def _family_pss_mib(pid: int) -> dict[str, float]:
    """PSS of `serve` itself and of its whole family (the applier and the read process)."""
    return {
        "serve": round(pss_kib(pid, alone=True) / 1024, 1),
        "family": round(pss_kib(pid) / 1024, 1),
    }


def measure_plan_detail(url: str, kind: str) -> dict[str, Any]:
    """The newest stored plan through the API: its detail (the first page of each part), every
    page of its decisions and of its actions, and the memory of `serve`'s processes after."""
    with _serving(url, kind) as (base, pid):
        request = urllib.request.Request(  # noqa: S310 (127.0.0.1 only)
            base + "/v1/cleanup/plans?limit=1", headers={"Authorization": f"Bearer {READ_TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=120) as answer:  # noqa: S310 (127.0.0.1)
            plan_id = json.loads(answer.read())["items"][0]["id"]
        out: dict[str, Any] = {"pss_start_mib": _family_pss_mib(pid)}
        out["detail"] = _times(f"{base}/v1/cleanup/plans/{plan_id}", 3)
        for part in ("decisions", "actions"):
            try:
                out[f"{part}_all_pages"] = _walk(f"{base}/v1/cleanup/plans/{plan_id}/{part}", 1000)
            except (OSError, KeyError, ValueError) as exc:  # a server without paging
                out[f"{part}_all_pages"] = f"not available: {type(exc).__name__}"
        out["pss_after_mib"] = _family_pss_mib(pid)
        return out


def measure_serve(store: Store, meta: dict[str, Any]) -> dict[str, Any]:
    """`serve` on the kept store: scrapes, daily statistics, a tags page; RSS after."""
    with _serving(store.url(), store.kind) as (base, pid):
        out: dict[str, Any] = {"rss_start_mib": _rss(pid)}
        out["metrics"] = _times(base + "/metrics", 10)
        out["rss_after_metrics_mib"] = _rss(pid)
        end = datetime.fromisoformat(meta["end"]).date()
        daily = f"{base}/v1/stats/daily?until={end + timedelta(days=1)}"
        out["stats_daily"] = _times(daily, 3)
        out["stats_daily_busiest"] = _times(f"{daily}&repository={meta['busiest']}", 3)
        if "paged" in os.environ.get("BENCH_SCALEBOUNDS_READS", "paged"):
            try:
                out["stats_daily_all_pages"] = _walk(daily, 1000)
                out["tags_all_pages"] = _walk(base + "/v1/tags", 1000)
            except (OSError, KeyError, ValueError) as exc:  # a server without paging
                out["paging"] = f"not available: {type(exc).__name__}"
        out["rss_after_stats_mib"] = _rss(pid)
        out["tags_page"] = _times(base + "/v1/tags", 2)
        out["events_page"] = _times(base + "/v1/events?limit=1000", 3)
        # Filters no index serves, matching rarely or never: each page examines a bounded
        # number of events (monitor.store.pages.SCAN_ROWS) instead of walking the table.
        rare = {
            "tag_never_used": "tag=no-such-tag",
            "reconstructed": "reconstructed=true",
            "busiest_repository_tag_never_used": f"repository={meta['busiest']}&tag=no-such-tag",
            "busiest_repository_deletes": f"repository={meta['busiest']}&action=delete",
        }
        out["events_rare_filters"] = {
            name: _times(f"{base}/v1/events?{query}", 3) for name, query in rare.items()
        }
        out["rss_after_reads_mib"] = _rss(pid)
        return out


def copy_name(store: Store) -> str:
    """The name of this run's copy of `store`: the process id and the start time make it
    differ from any other run's, also one going on at the same time."""
    return f"{store.name}{SUFFIX}_{os.getpid()}_{time.time_ns() // 1_000_000}"


def copy_store(store: Store) -> str:
    """A copy of the kept store for runs that change it, under a name of this run's own."""
    name = copy_name(store)
    if store.kind == "sqlite":
        source = _sqlite_path(store.url())
        target = source.with_name(name + ".db")
        remove_sqlite_files(target, keep_store=True)
        shutil.copyfile(source, target)
        return f"sqlite:///{target}"
    with psycopg.connect(_libpq(PG_ADMIN), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{store.name}"'.encode())
    return make_url(PG_ADMIN).set(database=name).render_as_string(False)


def drop_copy(store: Store, url: str) -> None:
    """Drop the copy at `url` that `copy_store` made (only that one)."""
    if store.kind == "sqlite":
        remove_sqlite_files(_sqlite_path(url))
        return
    name = make_url(url).database
    with psycopg.connect(_libpq(PG_ADMIN), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def forget_plans(url: str) -> None:
    """Delete the plans stored in the copy at `url` (and what refers to them)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as connection:
        for table in ("cleanup_saved_manifests", "cleanup_journal", "cleanup_plans"):
            connection.execute(text(f"DELETE FROM {table}"))  # noqa: S608 (names above)
    engine.dispose()


PLAN_CHILD = """
import json, os, resource, sys, time
from datetime import datetime, timedelta
from pathlib import Path
from sqlalchemy import inspect, text
from monitor.cleanup.policy import load_policies
from monitor.pipeline.cleanup import PolicySet, make_plan
from monitor.store.engine import make_engine, make_session_factory
from monitor.settings import load_settings

url, policies_text, now = sys.argv[1], sys.argv[2], datetime.fromisoformat(sys.argv[3])
processes = int(sys.argv[4])
settings = load_settings({"REGISTRY_MONITOR_DATABASE_URL": url})
engine = make_engine(settings.database)
policies = load_policies(policies_text)
import hashlib
policy_set = PolicySet(policies, hashlib.sha256(policies_text.encode()).hexdigest())
usage = resource.getrusage(resource.RUSAGE_SELF)
load = os.getloadavg()
started = time.perf_counter()
extra = {"processes": processes} if processes > 1 else {}
outcome = make_plan(make_session_factory(engine), policies=policy_set, now=now, **extra)
seconds = time.perf_counter() - started
spent = resource.getrusage(resource.RUSAGE_SELF)
forked = resource.getrusage(resource.RUSAGE_CHILDREN)
columns = {c["name"] for c in inspect(engine).get_columns("cleanup_plans")}
size_sql = "coalesce(length(body), 0)" + (
    " + coalesce(length(encoded), 0)" if "encoded" in columns else ""
)
with engine.connect() as c:
    size = c.execute(
        text(f"SELECT coalesce({size_sql}, 0) FROM cleanup_plans WHERE id = :id"),
        {"id": outcome.summary.id},
    ).scalar()
engine.dispose()
print(json.dumps({
    "seconds": round(seconds, 1),
    "cpu_seconds": round(
        spent.ru_utime + spent.ru_stime - usage.ru_utime - usage.ru_stime, 1
    ),
    "load_average": load,
    "peak_rss_mib": round(spent.ru_maxrss / 1024, 1),
    "processes": getattr(outcome, "processes", 1),
    "forked_cpu_seconds": round(forked.ru_utime + forked.ru_stime, 1),
    "forked_peak_rss_mib": round(forked.ru_maxrss / 1024, 1),
    "plan_id": outcome.summary.id,
    "bytes_freed": outcome.summary.bytes_freed,
    "stored_bytes": size,
    "counts": outcome.summary.counts,
    "actions": outcome.summary.actions,
}))
"""


def measure_plan(
    url: str, meta: dict[str, Any], policies: str = POLICIES, processes: int = 1
) -> dict[str, Any]:
    """`make_plan` in a process of its own (as `cleanup plan` runs it with `--processes`);
    "forked_*" are its planning processes' (their peak is the largest one's), "peak_pss_mib"
    the largest proportional set size of all of them together, sampled every 0.1 s."""
    now = datetime.fromisoformat(meta["end"])
    argv = [sys.executable, "-c", PLAN_CHILD, url, policies, now.isoformat(), str(processes)]
    peak_pss = 0
    with tempfile.TemporaryFile("w+") as out, subprocess.Popen(argv, stdout=out) as child:
        while child.poll() is None:  # the planning processes' memory together, 10 times a second
            peak_pss = max(peak_pss, pss_kib(child.pid))
            time.sleep(0.1)
        if child.returncode != 0:
            raise subprocess.CalledProcessError(child.returncode, argv)
        out.seek(0)
        result = dict(json.loads(out.read().strip().splitlines()[-1]))
    result["peak_pss_mib"] = round(peak_pss / 1024, 1)
    return result


def measure_detection(
    url: str, meta: dict[str, Any], backlog: int, warmup: int = 100_000
) -> dict[str, Any]:
    """Rewind the detector by `warmup` + `backlog` events with an empty state, judge the
    `warmup` events untimed (so baselines are learnt, as on a running monitor), then time
    passes judging the `backlog`, as `serve` would."""
    from sqlalchemy import text

    from monitor.pipeline import detection
    from monitor.pipeline.detection import build_detector
    from monitor.settings import load_settings
    from monitor.store.engine import make_engine

    settings = load_settings({"REGISTRY_MONITOR_DATABASE_URL": url})
    engine = make_engine(settings.database)  # as `serve` makes it (UTC sessions on PostgreSQL)
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE detector_state SET cursor = :c, state = NULL"),
            {"c": meta["last_id"] - backlog - warmup},
        )
    detector = build_detector(settings.detect)
    from sqlalchemy.orm import sessionmaker

    factory = sessionmaker(engine)
    now = datetime.fromisoformat(meta["end"]) + timedelta(hours=1)
    catch_up = getattr(detection, "catch_up", None)
    warm = 0
    while warm < warmup:
        one = detection.detect_pass(
            factory,
            detector,
            now=now,
            settle=timedelta(seconds=2),
            batch_max=min(10_000, warmup - warm),
        )
        warm += one.processed
    with engine.connect() as connection:
        alerts_before = connection.execute(text("SELECT count(*) FROM alerts")).scalar() or 0
    started = time.perf_counter()
    passes = processed = 0
    extra: dict[str, Any] = {}
    if catch_up is not None:
        # as `serve`'s detection job runs it (in the applier's process): its progress kept
        # between passes, the cap of that process (BENCH_DETECT_CAP to try another), where the
        # tree has them
        if hasattr(detection, "Progress"):
            extra["progress"] = detection.Progress()
            extra["save_every"] = timedelta(seconds=detection.SAVE_SECONDS)
        if hasattr(detection, "BATCH_CAP_APART"):
            extra["batch_cap"] = int(os.environ.get("BENCH_DETECT_CAP", detection.BATCH_CAP_APART))
        report = catch_up(
            factory,
            detector,
            clock=lambda: now,
            settle=timedelta(seconds=2),
            budget_seconds=3600,
            **extra,
        )
        passes, processed = report.passes, report.processed
    else:
        while True:
            one = detection.detect_pass(factory, detector, now=now, settle=timedelta(seconds=2))
            passes += 1
            processed += one.processed
            if one.processed == 0:
                break
    seconds = time.perf_counter() - started
    with engine.connect() as connection:
        alerts = (
            connection.execute(text("SELECT count(*) FROM alerts")).scalar() or 0
        ) - alerts_before
    engine.dispose()
    return {
        "events": processed,
        "passes": passes,
        "seconds": round(seconds, 1),
        "events_per_s": round(processed / seconds) if seconds else None,
        "new_alerts": alerts,
        "warmup_events": warm,
        "default_interval_s": settings.detect.interval_seconds,
        "batch_cap": extra.get("batch_cap", getattr(detection, "BATCH_CAP", None)),
    }


def measure_replay(store: Store, meta: dict[str, Any]) -> dict[str, Any]:
    """`detect replay` over the last full day of the store."""
    end = datetime.fromisoformat(meta["end"]).replace(hour=0, minute=0, second=0, microsecond=0)
    since = end - timedelta(days=1)
    env = _environment(store.url(), Path(tempfile.mkdtemp(prefix="bench-scalebounds-")))
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable, "-m", "monitor", "detect", "replay", "--json",
            "--since", since.isoformat().replace("+00:00", "Z"),
            "--until", end.isoformat().replace("+00:00", "Z"),
        ],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    doc = json.loads(done.stdout)
    return {
        "seconds": round(seconds, 1),
        "events": doc["events"],
        "findings": len(doc["findings"]),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--only", default="serve,plan,plan-detail,detect,replay")
    parser.add_argument("--backlog", type=int, default=200_000)
    args = parser.parse_args()
    only = set(args.only.split(","))
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    for kind in kinds:
        store = Store(kind, args.events)
        migrate_forward(store)  # the copies and `serve` then measure the current schema
        meta = store.meta()
        result: dict[str, Any] = {
            "store": store.name,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "load_before": os.getloadavg(),
        }
        if "replay" in only:  # first: its peak RSS is the children's peak so far
            result["replay"] = measure_replay(store, meta)
        if "serve" in only:
            result["serve"] = measure_serve(store, meta)
        if only & {"plan", "plan-split", "plan-tags", "detect"}:
            url = copy_store(store)
            try:
                if "plan" in only:
                    result["plan"] = measure_plan(url, meta)
                if "plan-split" in only:
                    if "plan" in only:  # stored apart, not found the same as the plan before
                        forget_plans(url)
                    result["plan_split"] = measure_plan(url, meta, processes=2)
                if "plan" in only and "plan-detail" in only:
                    result["plan_detail"] = measure_plan_detail(url, store.kind)
                if "plan-tags" in only:  # as `cleanup plan` runs it: two processes, no plan before
                    forget_plans(url)
                    result["plan_tags_only"] = measure_plan(url, meta, TAG_POLICIES, processes=2)
                if "detect" in only:
                    result["detect"] = measure_detection(url, meta, args.backlog)
            finally:
                drop_copy(store, url)
        result["load_after"] = os.getloadavg()
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
