"""Expiry ends between two batches when `serve` stops, and its next run resumes it."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from monitor.main import build_services
from monitor.pipeline.applier import BATCH_BODIES
from monitor.pipeline.housekeeping import expire, rest_giving_way
from monitor.pipeline.jobs import job_table
from monitor.runtime import Services
from monitor.settings import Settings
from monitor.store.events import EXPIRE_BATCH
from monitor.store.schema import EventRow
from tests.conftest import make_settings
from tests.fixture_events import scenario_events
from tests.store.test_inbox import append, body

NOW = datetime(2026, 12, 1, tzinfo=UTC)
STORED = 43  # the scenario's events, all older than a day at NOW


def stored(services: Services) -> int:
    with services.session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(EventRow)) or 0)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    """The services of these tests expire what is older than a day."""
    return make_settings(db_url, tmp_path, REGISTRY_MONITOR_RETENTION_EVENTS_DAYS="1")


@pytest.fixture
def filled(services: Services) -> Services:
    services.writer.submit(scenario_events()).result(timeout=30)
    return services


class TestExpiryStops:
    def test_a_stop_ends_expiry_between_batches_and_the_next_run_resumes(
        self, filled: Services
    ) -> None:
        """Told to stop during the rest after its first batch, expiry leaves the other due
        events; the next run removes them."""
        rests: list[float] = []

        def stopping(seconds: float) -> bool:
            rests.append(seconds)
            return True

        first = expire(filled.writer.transact, now=NOW, days=1, batch=20, rest=stopping)
        assert (20, STORED - 20, 1) == (first, stored(filled), len(rests))
        second = expire(filled.writer.transact, now=NOW, days=1, batch=20)
        assert (STORED - 20, 0) == (second, stored(filled))

    def test_it_rests_after_each_full_batch_only(self, filled: Services) -> None:
        """43 events in batches of 20: a rest after each of the two full batches, none after
        the last, and none in the request log's expiry that follows."""
        rests: list[float] = []

        def resting(seconds: float) -> bool:
            rests.append(seconds)
            return False

        removed = expire(filled.writer.transact, now=NOW, days=1, batch=20, rest=resting)
        assert (STORED, 0, 2) == (removed, stored(filled), len(rests))
        assert all(0 < seconds <= 1.0 for seconds in rests)


class TestExpiryGivesWayToIntake:
    """After each batch, expiry rests as long as the batch took, then waits, up to a bound,
    while intake's applier is behind (the inbox would fill and answer the registry 503)."""

    def test_with_intake_keeping_up_it_rests_the_batch_time_only(self) -> None:
        rest = rest_giving_way(threading.Event(), lambda: False, most=5.0)
        started = time.monotonic()
        assert rest(0.05) is False
        assert 0.05 <= time.monotonic() - started < 1.0

    def test_it_waits_until_intake_has_caught_up(self) -> None:
        caught_up_at = time.monotonic() + 0.3
        rest = rest_giving_way(
            threading.Event(), lambda: time.monotonic() < caught_up_at, most=5.0, poll=0.01
        )
        assert rest(0.0) is False
        assert caught_up_at <= time.monotonic() < caught_up_at + 1.0

    def test_it_waits_no_longer_than_its_bound(self) -> None:
        rest = rest_giving_way(threading.Event(), lambda: True, most=0.2, poll=0.01)
        started = time.monotonic()
        assert rest(0.0) is False
        assert 0.2 <= time.monotonic() - started < 1.5

    def test_a_stop_ends_the_wait(self) -> None:
        stopping = threading.Event()
        threading.Timer(0.1, stopping.set).start()
        rest = rest_giving_way(stopping, lambda: True, most=30.0, poll=0.01)
        started = time.monotonic()
        assert rest(0.0) is True
        assert time.monotonic() - started < 5.0

    def test_a_batch_every_bound_under_a_flood(self, filled: Services) -> None:
        """With intake behind all along, expiry still removes every due event, a batch after
        each wait."""
        rest = rest_giving_way(threading.Event(), lambda: True, most=0.05, poll=0.01)
        removed = expire(filled.writer.transact, now=NOW, days=1, batch=20, rest=rest)
        assert (STORED, 0) == (removed, stored(filled))


class TestExpireJob:
    def test_the_job_expires_what_retention_says(self, filled: Services) -> None:
        """`serve`'s expire-events job removes the events older than `retention.events_days`."""
        (job,) = [
            j for j in job_table(filled, stopping=threading.Event()) if j.name == "expire-events"
        ]
        job.run()
        assert 0 == stored(filled)

    def test_the_job_gives_way_while_notifications_wait(self, settings: Settings) -> None:
        """With more notification bodies waiting in the inbox than the applier takes at once,
        `serve`'s own expire-events job waits after its first batch; stopped during that wait,
        it leaves the other due events to its next run."""
        services = build_services(settings, registry=CollectorRegistry(), migrate=True)
        services.writer.start()
        services.inbox.open()  # no applier: the bodies stay waiting
        try:
            due = [
                dataclasses.replace(event, event_id=f"{event.event_id}-{copy}")
                for copy in range(EXPIRE_BATCH // STORED + 1)
                for event in scenario_events()
            ]
            services.writer.submit(due).result(timeout=30)
            append(services, *(body(n) for n in range(BATCH_BODIES + 1)))
            assert services.inbox.backlog() > BATCH_BODIES
            stopping = threading.Event()
            (job,) = [
                j for j in job_table(services, stopping=stopping) if j.name == "expire-events"
            ]
            stop = threading.Timer(2.0, stopping.set)
            stop.start()
            job.run()
            stop.join()
            assert len(due) - EXPIRE_BATCH == stored(services)
        finally:
            services.inbox.close()
            services.writer.stop()
            services.engine.dispose()
