"""The intake applier in a child process (the default): what it stores is counted in the
serving process's `/metrics`, a child that dies is replaced without losing a body, and the jobs
it takes from `serve` (detection, the log's, and on SQLite expiry) run there and not in
`serve`."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from monitor.main import applier_config
from monitor.pipeline.applier_child import child_jobs
from monitor.pipeline.applier_process import ApplierProcess
from monitor.pipeline.jobs import job_table
from monitor.pipeline.scheduler import Job
from monitor.runtime import Services
from monitor.settings import Settings
from tests.conftest import make_settings
from tests.fixture_events import scenario_events
from tests.harness import TOKEN, MonitorProcess, running_monitor, wait_until
from tests.paths import FIXTURES, FIXTURES_31
from tests.store.test_inbox import V1, append, body, event_ids, started


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return make_settings(db_url, tmp_path, REGISTRY_MONITOR_NOTIFICATIONS_APPLIER="process")


def sample(services: Services, name: str, **labels: str) -> float:
    return services.metrics.registry.get_sample_value(name, labels) or 0.0


class TestChildProcess:
    def test_what_the_child_stores_is_counted_in_this_process(self, services: Services) -> None:
        """The events the child stored appear in this process's counters and histograms, as
        they would had this process stored them."""
        assert isinstance(services.applier, ApplierProcess)
        append(services, body(1), body(2), body(3))
        assert services.applier.drain(30)
        assert ["inbox-1", "inbox-2", "inbox-3"] == event_ids(services)
        assert 3 == sample(
            services,
            "registry_monitor_events_total",
            source="notification",
            action="push",
            target_kind="manifest",
        )
        assert 3 == sample(services, "registry_monitor_intake_apply_delay_seconds_count")
        assert sample(services, "registry_monitor_store_commit_seconds_count") >= 1
        assert 0 == services.inbox.backlog()

    def test_a_child_that_dies_is_replaced_and_applies_what_waits(self, services: Services) -> None:
        """Killed, the child is started again; bodies appended meanwhile are applied once, and
        the death is counted as a store error of the applier."""
        assert isinstance(services.applier, ApplierProcess)
        append(services, body(1))
        assert services.applier.drain(30)
        first = services.applier.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        append(services, body(2), body(3))
        assert services.applier.drain(60)
        assert ["inbox-1", "inbox-2", "inbox-3"] == event_ids(services)
        assert services.applier.pid not in (None, first)
        assert 1 == sample(services, "registry_monitor_store_errors_total", operation="apply")


class TestDetectionInTheChild:
    def test_the_child_judges_what_it_stores_and_serve_runs_no_detect_job(
        self, db_url: str, tmp_path: Path
    ) -> None:
        """With the applier in a process, detection runs there: `serve`'s job table has no
        `detect` row, and an event from outside `detect.allow_cidrs` raises its alert, counted
        in this process's `/metrics` with the detection lag."""
        settings = make_settings(
            db_url,
            tmp_path,
            REGISTRY_MONITOR_NOTIFICATIONS_APPLIER="process",
            REGISTRY_MONITOR_DETECT_ALLOW_CIDRS="192.0.2.0/24",
            REGISTRY_MONITOR_DETECT_SETTLE_SECONDS="0",
        )
        with running_services(settings) as services:
            assert services.applier.runs("detect")
            jobs = serve_jobs(services)
            assert "detect" not in jobs and "heartbeat" in jobs
            append(services, body(1))

            def alerted() -> bool:
                return 1 <= sample(
                    services,
                    "registry_monitor_alerts_total",
                    rule="source_not_allowed",
                    severity="critical",
                    mode="alert",
                )

            wait_until(alerted, timeout=30, what="the alert counted in this process")
            lag = services.metrics.registry.get_sample_value("registry_monitor_detect_lag_seconds")
            assert lag is not None and lag >= 0

    def test_with_the_applier_on_a_thread_serve_runs_detection(
        self, db_url: str, tmp_path: Path
    ) -> None:
        """`notifications.applier: thread`: the `detect` job stays in `serve`'s table."""
        settings = make_settings(db_url, tmp_path, REGISTRY_MONITOR_NOTIFICATIONS_APPLIER="thread")
        with running_services(settings) as services:
            assert not services.applier.runs("detect")
            jobs = serve_jobs(services)
            assert "detect" in jobs


class TestLogFollowingInTheChild:
    def test_the_child_follows_the_log_and_serve_runs_no_follow_job(
        self, db_url: str, tmp_path: Path
    ) -> None:
        """With the applier in a process and `logs.paths` set, the log is followed there:
        `serve`'s job table has no `follow-logs` row, the captured log is read to its end (its
        checkpoint at the file's size), its failed logins are stored (bob once, mallory three
        times) and its 310 lines are counted in this process's `/metrics`."""
        log = tmp_path / "registry.log"
        log.write_bytes((FIXTURES / "registry-text.log").read_bytes())
        settings = make_settings(
            db_url,
            tmp_path,
            REGISTRY_MONITOR_NOTIFICATIONS_APPLIER="process",
            REGISTRY_MONITOR_LOGS_PATHS=str(log),
            REGISTRY_MONITOR_LOGS_START_AT_END="false",
        )
        with running_services(settings) as services:
            assert services.applier.runs("follow-logs")
            jobs = serve_jobs(services)
            assert "follow-logs" not in jobs and "heartbeat" in jobs

            def read_to_the_end() -> bool:
                with services.engine.connect() as connection:
                    offset = connection.execute(
                        text('SELECT "offset" FROM log_checkpoints WHERE path = :p'),
                        {"p": str(log)},
                    ).scalar()
                return offset == log.stat().st_size and 310 == log_lines(services)

            wait_until(read_to_the_end, timeout=30, what="the log read and counted")
            with services.engine.connect() as connection:
                failed = connection.execute(
                    text(
                        "SELECT actor, count(*) FROM events WHERE action = 'auth_failure'"
                        " AND source = 'log' GROUP BY actor ORDER BY actor"
                    )
                ).all()
            assert [("bob", 1), ("mallory", 3)] == [tuple(row) for row in failed]

    def test_the_child_rebuilds_the_events_whose_notifications_never_came(
        self, db_url: str, tmp_path: Path
    ) -> None:
        """The reconcile passes run there too: `serve`'s job table has no `reconcile-events`
        row, and the 3.1 log followed without any of its notifications gets the 44 events of
        its requests rebuilt (as `reconcile-events` rebuilds them at the console)."""
        log = tmp_path / "registry.log"
        log.write_bytes((FIXTURES_31 / "registry-text.log").read_bytes())
        settings = make_settings(
            db_url,
            tmp_path,
            REGISTRY_MONITOR_NOTIFICATIONS_APPLIER="process",
            REGISTRY_MONITOR_LOGS_PATHS=str(log),
            REGISTRY_MONITOR_RECONCILE_SETTLE_SECONDS="0",
            REGISTRY_MONITOR_RECONCILE_INTERVAL_SECONDS="1",
        )
        with running_services(settings) as services:
            assert services.applier.runs("reconcile-events")
            jobs = serve_jobs(services)
            assert "reconcile-events" not in jobs and "heartbeat" in jobs

            def rebuilt() -> int:
                with services.engine.connect() as connection:
                    return int(
                        connection.execute(
                            text("SELECT count(*) FROM events WHERE reconstructed")
                        ).scalar_one()
                    )

            wait_until(lambda: rebuilt() >= 44, timeout=30, what="the lost events rebuilt")
            assert 44 == rebuilt()

    def test_with_the_applier_on_a_thread_serve_follows_the_log(
        self, db_url: str, tmp_path: Path
    ) -> None:
        """`notifications.applier: thread`: the `follow-logs` and `reconcile-events` jobs stay
        in `serve`'s table."""
        settings = make_settings(
            db_url,
            tmp_path,
            REGISTRY_MONITOR_NOTIFICATIONS_APPLIER="thread",
            REGISTRY_MONITOR_LOGS_PATHS=str(tmp_path / "*.log"),
        )
        with running_services(settings) as services:
            assert not services.applier.runs("follow-logs")
            jobs = serve_jobs(services)
            assert {"follow-logs", "reconcile-events"} <= jobs


class TestWhereExpiryRuns:
    def test_on_sqlite_the_child_expires_on_postgresql_serve_does(
        self, db_url: str, tmp_path: Path
    ) -> None:
        """With the applier in a process on an SQLite store, `expire-events` is one of the jobs
        the child builds from what `serve` hands it (one process writes the store), not one of
        `serve`'s own; on PostgreSQL it stays in `serve`'s table. Run where it is, it removes
        every event older than `retention.events_days`."""
        settings = make_settings(
            db_url,
            tmp_path,
            REGISTRY_MONITOR_NOTIFICATIONS_APPLIER="process",
            REGISTRY_MONITOR_RETENTION_EVENTS_DAYS="1",
        )
        with running_services(settings) as services:
            sqlite = services.engine.url.get_backend_name() == "sqlite"
            assert sqlite == services.applier.runs("expire-events")
            in_serve = {j.name: j for j in job_table(services, stopping=threading.Event())}
            in_child = jobs_of_the_child(settings, services)
            placed = ("expire-events" in in_serve, "expire-events" in in_child)
            assert (not sqlite, sqlite) == placed
            services.writer.submit(scenario_events()).result(timeout=30)
            assert 43 == stored(services)
            expiry = (in_child if sqlite else in_serve)["expire-events"]
            assert "cron 17 3 * * *" == expiry.schedule
            expiry.run()
            assert 0 == stored(services)

    def test_without_a_schedule_nobody_expires(self, db_url: str, tmp_path: Path) -> None:
        """`retention.schedule` empty: neither `serve` nor the child has an `expire-events`
        job."""
        settings = make_settings(
            db_url,
            tmp_path,
            REGISTRY_MONITOR_NOTIFICATIONS_APPLIER="process",
            REGISTRY_MONITOR_RETENTION_SCHEDULE="",
        )
        with running_services(settings) as services:
            assert not services.applier.runs("expire-events")
            assert "expire-events" not in serve_jobs(services)
            assert "expire-events" not in jobs_of_the_child(settings, services)

    def test_with_the_applier_on_a_thread_serve_expires(self, db_url: str, tmp_path: Path) -> None:
        """`notifications.applier: thread`: the `expire-events` job stays in `serve`'s table."""
        settings = make_settings(db_url, tmp_path, REGISTRY_MONITOR_NOTIFICATIONS_APPLIER="thread")
        with running_services(settings) as services:
            assert not services.applier.runs("expire-events")
            assert "expire-events" in serve_jobs(services)


def jobs_of_the_child(settings: Settings, services: Services) -> dict[str, Job]:
    """The jobs the applier's process builds from what `serve` hands it for `settings`, on
    `services`' writer."""
    jobs = child_jobs(
        applier_config(
            settings, receiver=services.replica, dialect=services.engine.url.get_backend_name()
        ),
        session_factory=services.session_factory,
        writer=services.writer,
        metrics=services.metrics,
        stopping=threading.Event(),
    )
    return {job.name: job for job in jobs}


def stored(services: Services) -> int:
    with services.engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM events")).scalar_one())


@contextlib.contextmanager
def running_services(settings: Settings) -> Iterator[Services]:
    """The services of `settings`, started, then stopped and their engine disposed."""
    services = started(settings)
    try:
        yield services
    finally:
        services.stop()
        services.engine.dispose()


def serve_jobs(services: Services) -> set[str]:
    """The names of the jobs `serve` itself runs with `services`."""
    return {job.name for job in job_table(services, stopping=threading.Event())}


def log_lines(services: Services) -> float:
    """Every line counted in `registry_monitor_log_lines_total`, whatever its result."""
    return sum(
        sample.value
        for metric in services.metrics.registry.collect()
        if metric.name == "registry_monitor_log_lines"
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if parent_of(int(entry.name)) == pid:
                    found.append(int(entry.name))
    return found


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def post_notification(monitor: MonitorProcess, n: int) -> None:
    response = httpx.post(
        f"{monitor.url}/v1/notifications",
        content=body(n),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": V1},
        timeout=10,
    )
    assert 200 == response.status_code


class TestServe:
    def test_the_first_child_is_forked_then_fresh_interpreters_replace_it(
        self, db_url: str, tmp_path: Path
    ) -> None:
        """`serve` forks its applier's first child at start-up (it shares `serve`'s loaded
        modules: same command line, no interpreter of its own); one that replaces it after it
        died is a fresh interpreter. Bodies are applied by both. (Reads on threads here: the
        read process is `serve`'s other child, tests/api/test_read_process.py.)"""
        with running_monitor(tmp_path, db_url, REGISTRY_MONITOR_HTTP_READS="thread") as monitor:
            assert monitor.process is not None
            serve = monitor.process.pid
            (first,) = children_of(serve)
            assert (
                Path(f"/proc/{first}/cmdline").read_bytes()
                == Path(f"/proc/{serve}/cmdline").read_bytes()
            )
            post_notification(monitor, 1)
            wait_until(lambda: len(monitor.all_events()) == 1, timeout=30, what="first applied")
            os.kill(first, signal.SIGKILL)
            wait_until(
                lambda: children_of(serve) not in ([], [first]), timeout=30, what="a new child"
            )
            (second,) = children_of(serve)
            assert b"monitor.pipeline.applier_child" in Path(f"/proc/{second}/cmdline").read_bytes()
            post_notification(monitor, 2)
            wait_until(lambda: len(monitor.all_events()) == 2, timeout=30, what="second applied")
