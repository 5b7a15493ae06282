"""Intake coverage: heartbeats become intervals; silences become gaps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from monitor.runtime import Services
from monitor.store.coverage import covered_intervals, gaps, record_heartbeat

T0 = datetime(2026, 11, 1, tzinfo=UTC)
GAP = timedelta(seconds=40)


def beat(services: Services, replica: str, *seconds: int) -> None:
    for s in seconds:
        with services.session_factory() as session, session.begin():
            record_heartbeat(
                session,
                replica=replica,
                source="notification",
                now=T0 + timedelta(seconds=s),
                max_gap=GAP,
            )


def at(s: int) -> datetime:
    return T0 + timedelta(seconds=s)


class TestCoverage:
    def test_regular_heartbeats_make_one_interval(self, services: Services) -> None:
        """Heartbeats closer than max_gap extend one interval."""
        beat(services, "a", 0, 15, 30, 45)
        with services.session_factory() as session:
            assert [(at(0), at(45))] == covered_intervals(
                session, source="notification", since=at(0), until=at(100)
            )

    def test_a_silence_is_a_gap(self, services: Services) -> None:
        """A restart (no heartbeat for longer than max_gap) splits coverage."""
        beat(services, "a", 0, 15, 100, 115)
        with services.session_factory() as session:
            covered = covered_intervals(session, source="notification", since=at(0), until=at(115))
        assert [(at(0), at(15)), (at(100), at(115))] == covered
        assert [(at(15), at(100))] == gaps(covered, since=at(0), until=at(115))

    def test_replicas_cover_for_each_other(self, services: Services) -> None:
        """Two replicas' intervals merge; coverage holds while either was up."""
        beat(services, "a", 0, 15, 30)
        beat(services, "b", 20, 35, 50, 65)
        with services.session_factory() as session:
            covered = covered_intervals(session, source="notification", since=at(0), until=at(65))
        assert [] == gaps(covered, since=at(0), until=at(65))

    def test_gaps_at_both_ends(self) -> None:
        """Time before the first and after the last interval is uncovered."""
        assert [(at(0), at(10)), (at(20), at(30))] == gaps(
            [(at(10), at(20))], since=at(0), until=at(30)
        )
