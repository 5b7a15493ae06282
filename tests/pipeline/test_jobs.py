"""The job table `serve` runs, and the runner: interval loops, failures counted, stop."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from monitor.main import build_services
from monitor.pipeline.jobs import job_table
from monitor.pipeline.scheduler import Job, JobRunner
from monitor.runtime import Services
from tests.conftest import make_settings

EVERYTHING = {
    "REGISTRY_MONITOR_ALERTING_SLACK_WEBHOOK_URL": "http://127.0.0.1:9/hook",
    "REGISTRY_MONITOR_CLEANUP_REGISTRY_URL": "http://127.0.0.1:5000",
    "REGISTRY_MONITOR_CLEANUP_APPLY_ON_SCHEDULE": "true",
    "REGISTRY_MONITOR_AUDIT_URL": "http://127.0.0.1:5000",
}


@contextlib.contextmanager
def unstarted(tmp_path: Path, **env: str) -> Iterator[Services]:
    settings = make_settings(f"sqlite:///{tmp_path / 'store.db'}", tmp_path, **env)
    services = build_services(settings, registry=CollectorRegistry(), migrate=False)
    try:
        yield services
    finally:
        services.engine.dispose()


def rows(services: Services) -> list[tuple[str, str, timedelta | None]]:
    table = job_table(services, stopping=threading.Event())
    return [(job.name, job.schedule, job.lease) for job in table]


class TestJobTable:
    def test_every_job_with_its_schedule_and_lease(self, tmp_path: Path) -> None:
        """With Slack, followed logs, cleanup (applying on schedule) and the audit configured,
        the table holds every job of `serve`, each with its schedule and lease."""
        policies = tmp_path / "policies.yml"
        policies.write_text("[]\n")
        env = {
            **EVERYTHING,
            "REGISTRY_MONITOR_LOGS_PATHS": str(tmp_path / "*.log"),
            "REGISTRY_MONITOR_CLEANUP_POLICIES_FILE": str(policies),
        }
        hour = timedelta(hours=1)
        expected = [
            ("heartbeat", "every 15s", None),
            ("tag-gauges", "every 60s", None),
            ("detect", "every 1s", None),
            ("deliver", "every 1s", None),
            ("follow-logs", "every 0.25s", None),
            ("expire-events", "cron 17 3 * * *", None),
            ("cleanup-reconcile", "cron 0 */6 * * *", hour),
            ("cleanup-plan", "cron 0 4 * * *", hour),
            ("cleanup-apply", "cron 30 4 * * *", hour),
            ("registry-audit", "every 3600s", hour * 0.9),
            ("reconcile-events", "every 30s", timedelta(seconds=27)),
        ]
        with unstarted(tmp_path, **env) as services:
            assert expected == rows(services)

    def test_only_what_the_settings_ask_for(self, tmp_path: Path) -> None:
        """Without Slack, log paths, cleanup or audit settings: heartbeat, the tag gauges' count,
        detection, expiry;
        reconciling the log with notifications unless its interval is 0."""
        expected = [
            ("heartbeat", "every 15s", None),
            ("tag-gauges", "every 60s", None),
            ("detect", "every 1s", None),
            ("expire-events", "cron 17 3 * * *", None),
        ]
        env = {"REGISTRY_MONITOR_RECONCILE_INTERVAL_SECONDS": "0"}
        with unstarted(tmp_path, **env) as services:
            assert expected == rows(services)
        with unstarted(tmp_path) as services:
            assert [*expected, ("reconcile-events", "every 30s", timedelta(seconds=27))] == rows(
                services
            )

    @pytest.mark.parametrize(("interval", "cron"), [(None, None), (1.0, "* * * * *")])
    def test_a_job_has_one_schedule(self, interval: float | None, cron: str | None) -> None:
        """A job runs on an interval or on a cron schedule: neither or both is an error."""
        with pytest.raises(ValueError, match="interval or a cron"):
            Job("x", lambda: None, interval=interval, cron=cron)


class TestJobRunner:
    def test_interval_jobs_run_until_stopped_and_failures_are_counted(
        self, services: Services
    ) -> None:
        """A job asking for no wait runs again at once; a failing one is counted under its
        operation and does not stop the others; stop closes what the jobs hold."""
        calls: list[int] = []
        enough, failed = threading.Event(), threading.Event()
        closed: list[str] = []

        def tick() -> float | None:
            calls.append(1)
            if len(calls) < 3:
                return 0.0
            enough.set()
            return None

        def broken() -> None:
            failed.set()
            raise RuntimeError("store down")

        runner = JobRunner(
            [
                Job("tick", tick, interval=3600, close=lambda: closed.append("tick")),
                Job("broken", broken, interval=3600, errors="detect"),
            ],
            session_factory=services.session_factory,
            holder="a",
            clock=services.clock,
            metrics=services.metrics,
        )
        runner.start()
        ran = (enough.wait(30), failed.wait(30))
        runner.stop()
        errors = services.metrics.registry.get_sample_value(
            "registry_monitor_store_errors_total", {"operation": "detect"}
        )
        assert ((True, True), 1.0, ["tick"]) == (ran, errors, closed)

    def test_a_job_may_first_run_one_interval_after_start(self, services: Services) -> None:
        """`first_after_interval` (the log reconcile): the job first waits its interval, while
        a job without it runs at start; both end at stop."""
        ran: list[str] = []
        started = threading.Event()
        stopping = WaitsSeen()

        def now() -> None:
            ran.append("now")
            started.set()

        runner = JobRunner(
            [
                Job("later", lambda: ran.append("later"), interval=3600, first_after_interval=True),
                Job("now", now, interval=3600),
            ],
            session_factory=services.session_factory,
            holder="a",
            clock=services.clock,
            metrics=services.metrics,
            stopping=stopping,
        )
        runner.start()
        ran_at_start = started.wait(30)
        runner.stop()
        assert (True, ["now"]) == (ran_at_start, ran)
        assert (3600, 0.0) == (stopping.first["job-later"], stopping.first["job-now"])


class WaitsSeen(threading.Event):
    """A stop signal that notes the first wait each thread asks of it."""

    def __init__(self) -> None:
        super().__init__()
        self.first: dict[str, float | None] = {}

    def wait(self, timeout: float | None = None) -> bool:
        self.first.setdefault(threading.current_thread().name, timeout)
        return super().wait(timeout)
