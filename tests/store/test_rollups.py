"""Daily roll-ups: expiry keeps counts per day, and the API answers across the cut."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, time

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select
from starlette.testclient import TestClient

from monitor.main import build_app, build_services
from monitor.pipeline import housekeeping
from monitor.runtime import Services
from monitor.settings import Settings
from monitor.store.events import expire_events
from monitor.store.rollups import daily_counts
from monitor.store.schema import EventRow
from tests.fixture_events import scenario_events

DAY = date(2026, 11, 27)
CUT = datetime(2026, 11, 27, 4, 52, 20, tzinfo=UTC)


def counts(services: Services) -> Counter[tuple[str, str, str]]:
    with services.session_factory() as session:
        rows = daily_counts(session, since=DAY, until=date(2026, 11, 28))
    assert {DAY} == {r.day for r in rows}
    return Counter({(r.repository, r.action, r.client): r.count for r in rows})


def expected() -> Counter[tuple[str, str, str]]:
    return Counter((e.repository or "", e.action.value, e.client.value) for e in scenario_events())


class TestRollups:
    def test_counts_survive_expiry(self, services: Services) -> None:
        """Before and after expiring part of the day, the day's counts are the same."""
        services.writer.submit(scenario_events()).result(timeout=30)
        assert expected() == counts(services)
        with services.session_factory() as session, session.begin():
            removed = expire_events(session, older_than=CUT)
        assert 0 < removed < 43
        assert expected() == counts(services)

    def test_expiry_in_small_batches_loses_no_count(self, services: Services) -> None:
        """Expiring 5 events at a time: after every batch the day's counts are unchanged, and
        the batches stop once nothing is due."""
        services.writer.submit(scenario_events()).result(timeout=30)
        due = sum(1 for e in scenario_events() if e.occurred_at < CUT)
        sizes: list[int] = []
        while not sizes or sizes[-1] == 5:
            with services.session_factory() as session, session.begin():
                sizes.append(expire_events(session, older_than=CUT, limit=5))
            assert expected() == counts(services)
        assert (due, [5] * (due // 5) + [due % 5]) == (sum(sizes), sizes)

    def test_expire_job_runs_its_batches_through_the_writer(self, services: Services) -> None:
        """The scheduled job expires everything due, in batches committed by the writer thread,
        and the roll-ups then hold every count."""
        services.writer.submit(scenario_events()).result(timeout=30)
        removed = housekeeping.expire(
            services.writer.transact, now=datetime(2026, 12, 1, tzinfo=UTC), days=1, batch=4
        )
        with services.session_factory() as session:
            left = session.scalar(select(func.count()).select_from(EventRow))
        assert (43, 0) == (removed, left)
        assert expected() == counts(services)

    def test_expire_job_without_a_writer(self, services: Services) -> None:
        """Where no writer runs (the command line), each batch is a transaction of its own."""
        services.writer.submit(scenario_events()).result(timeout=30)
        transact = housekeeping.transaction_runner(services.session_factory)
        removed = housekeeping.expire(
            transact, now=datetime(2026, 12, 1, tzinfo=UTC), days=1, batch=10
        )
        assert 43 == removed
        assert expected() == counts(services)

    def test_expiring_twice_counts_once(self, services: Services) -> None:
        """A second expiry with nothing left to expire adds nothing."""
        services.writer.submit(scenario_events()).result(timeout=30)
        for _ in range(2):
            with services.session_factory() as session, session.begin():
                expire_events(session, older_than=datetime(2026, 11, 28, tzinfo=UTC))
        assert expected() == counts(services)


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(build_app(services, with_jobs=False)) as test_client:
        yield test_client


class TestDailyApi:
    def test_daily_counts_by_repository(self, client: TestClient, services: Services) -> None:
        """GET /v1/stats/daily filters by repository and reports per action and client."""
        services.writer.submit(scenario_events()).result(timeout=30)
        answer = client.get(
            "/v1/stats/daily",
            params={"since": "2026-11-27", "until": "2026-11-28", "repository": "mirror/hello"},
        )
        assert {("mount", "skopeo", 1), ("push", "skopeo", 2)} == {
            (i["action"], i["client"], i["count"]) for i in answer.json()["items"]
        }

    def test_default_window_is_the_thirty_days_to_the_clocks_today(
        self, settings: Settings
    ) -> None:
        """Without since/until the answer covers the 30 days up to the services' clock's today."""
        for today, days in ((date(2026, 11, 27), {"2026-11-27"}), (date(2026, 12, 28), set())):
            noon = datetime.combine(today, time(12), tzinfo=UTC)

            def clock(noon: datetime = noon) -> datetime:
                return noon

            built = build_services(
                settings, registry=CollectorRegistry(), migrate=True, clock=clock
            )
            built.start()
            try:
                built.writer.submit(scenario_events()).result(timeout=30)
                with TestClient(build_app(built, with_jobs=False)) as test_client:
                    items = test_client.get("/v1/stats/daily").json()["items"]
            finally:
                built.stop()
                built.engine.dispose()
            assert days == {i["day"] for i in items}

    @pytest.mark.parametrize(
        "params",
        [{"since": "yesterday"}, {"since": "2026-11-28", "until": "2026-11-27"}],
    )
    def test_bad_days_are_400(self, client: TestClient, params: dict[str, str]) -> None:
        """Days are ISO dates and since comes before until."""
        assert 400 == client.get("/v1/stats/daily", params=params).status_code
