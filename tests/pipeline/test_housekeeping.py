"""Expiry gives way to intake: it waits while the intake inbox is behind, still advances under
sustained intake, and ends between two batches when `serve` stops."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from monitor.main import build_services
from monitor.pipeline.housekeeping import IntakeFirst, Transact, expire
from monitor.pipeline.jobs import job_table
from monitor.runtime import Services
from monitor.store.schema import EventRow
from tests.conftest import make_settings
from tests.fixture_events import scenario_events

T = TypeVar("T")
NOW = datetime(2026, 12, 1, tzinfo=UTC)
STORED = 43  # the scenario's events, all older than a day at NOW


def stored(services: Services) -> int:
    with services.session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(EventRow)) or 0)


class Trace:
    """The inbox's backlog as a script, and what expiry did in order."""

    def __init__(self, backlog: Callable[[int], int], stop_at_wait: int | None = None) -> None:
        self.script = backlog
        self.stop_at_wait = stop_at_wait
        self.asked = 0
        self.steps: list[str] = []
        self.waited: list[float] = []

    def backlog(self) -> int:
        self.asked += 1
        level = self.script(self.asked)
        self.steps.append(f"backlog {level}")
        return level

    def wait(self, seconds: float) -> bool:
        self.waited.append(seconds)
        self.steps.append("wait")
        return self.stop_at_wait is not None and len(self.waited) >= self.stop_at_wait

    def transact(self, services: Services) -> Transact:
        def run(work: Callable[[Session], T], /) -> T:
            self.steps.append("batch")
            return services.writer.transact(work)

        return run


@pytest.fixture
def filled(services: Services) -> Services:
    services.writer.submit(scenario_events()).result(timeout=30)
    return services


class TestExpiryGivesWayToIntake:
    def test_no_batch_runs_while_the_inbox_is_behind(self, filled: Services) -> None:
        """With 5,000 bodies waiting for the first three looks, the first batch waits three
        steps; once the backlog is under the mark, batches run one after another."""
        trace = Trace(lambda asked: 5_000 if asked <= 3 else 0)
        intake = IntakeFirst(backlog=trace.backlog, wait=trace.wait, backlog_max=1_000)
        removed = expire(trace.transact(filled), now=NOW, days=1, batch=20, intake=intake)
        assert (STORED, 0) == (removed, stored(filled))
        assert ["backlog 5000", "wait"] * 3 + ["backlog 0", "batch"] == trace.steps[:8]
        batches = [i for i, step in enumerate(trace.steps) if step == "batch"]
        assert all(trace.steps[i - 1] == "backlog 0" for i in batches)

    def test_a_backlog_under_the_mark_never_delays_a_batch(self, filled: Services) -> None:
        """At the mark itself intake is not behind: expiry waits only its rests."""
        trace = Trace(lambda asked: 1_000)
        intake = IntakeFirst(backlog=trace.backlog, wait=trace.wait, backlog_max=1_000)
        expire(trace.transact(filled), now=NOW, days=1, batch=20, intake=intake)
        assert "backlog 1000" == trace.steps[0] and "batch" == trace.steps[1]
        assert 0 == stored(filled)

    def test_expiry_still_advances_under_sustained_intake(self, filled: Services) -> None:
        """A backlog that never drains holds each batch `max_seconds` at most, then it runs: the
        whole expiry happens, with one wait of 1 s (4 steps of 0.25 s) before each batch."""
        trace = Trace(lambda asked: 50_000)
        intake = IntakeFirst(
            backlog=trace.backlog, wait=trace.wait, backlog_max=1_000, max_seconds=1.0
        )
        removed = expire(trace.transact(filled), now=NOW, days=1, batch=20, intake=intake)
        assert (STORED, 0) == (removed, stored(filled))
        batches = trace.steps.count("batch")
        # 43 events: batches of 20, 20 and 3, then the request log's single batch.
        assert 4 == batches
        assert [0.25] * 4 * batches == [w for w in trace.waited if w == 0.25]

    def test_a_stop_ends_expiry_between_batches_and_the_next_run_resumes(
        self, filled: Services
    ) -> None:
        """Stopped during the rest after its first batch, expiry leaves the rest of the due
        events; the next run removes them."""
        trace = Trace(lambda asked: 0, stop_at_wait=1)
        intake = IntakeFirst(backlog=trace.backlog, wait=trace.wait)
        first = expire(trace.transact(filled), now=NOW, days=1, batch=20, intake=intake)
        assert (20, STORED - 20) == (first, stored(filled))
        assert 1 == trace.steps.count("batch")
        second = expire(filled.writer.transact, now=NOW, days=1, batch=20)
        assert (STORED - 20, 0) == (second, stored(filled))


@pytest.fixture
def retention_services(db_url: str, tmp_path: Path) -> Iterator[Services]:
    settings = make_settings(
        db_url,
        tmp_path,
        REGISTRY_MONITOR_RETENTION_EVENTS_DAYS="1",
        REGISTRY_MONITOR_NOTIFICATIONS_INBOX_MAX="50",
    )
    built = build_services(settings, registry=CollectorRegistry(), migrate=True)
    built.start()
    try:
        built.writer.submit(scenario_events()).result(timeout=30)
        yield built
    finally:
        built.stop()
        built.engine.dispose()


class TestExpireJob:
    def test_the_job_waits_on_serves_inbox_and_ends_when_serve_stops(
        self, retention_services: Services, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`serve`'s expire-events job asks the intake inbox: with more bodies waiting than a
        tenth of `notifications.inbox_max` it deletes nothing, and it returns as soon as the
        runner's stop is set."""
        services = retention_services
        monkeypatch.setattr(services.inbox, "backlog", lambda: 6)
        stopping = threading.Event()
        (job,) = [j for j in job_table(services, stopping=stopping) if j.name == "expire-events"]
        runner = threading.Thread(target=job.run)
        runner.start()
        runner.join(timeout=1.0)
        assert runner.is_alive()
        stopping.set()
        runner.join(timeout=5.0)
        assert not runner.is_alive()
        assert STORED == stored(services)

    def test_the_job_expires_when_the_inbox_has_caught_up(
        self, retention_services: Services, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With the backlog at a tenth of `notifications.inbox_max`, the job expires at once."""
        services = retention_services
        monkeypatch.setattr(services.inbox, "backlog", lambda: 5)
        (job,) = [
            j for j in job_table(services, stopping=threading.Event()) if j.name == "expire-events"
        ]
        job.run()
        assert 0 == stored(services)
