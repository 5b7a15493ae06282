"""Event queries: filters, keyset pagination, expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitor.errors import InvalidQuery
from monitor.runtime import Services
from monitor.store.events import EventFilter, expire_events, query_events
from monitor.store.pages import decode_cursor
from tests.fixture_events import scenario_events


@pytest.fixture
def stored(services: Services) -> Services:
    services.writer.submit(scenario_events()).result(timeout=30)
    return services


class TestQueryEvents:
    @pytest.mark.parametrize(
        ("where", "count"),
        [
            (EventFilter(), 43),
            (EventFilter(action="pull"), 22),
            (EventFilter(repository="team/app"), 23),
            (EventFilter(action="push", repository="library/hello"), 4),
            (EventFilter(tag="1.0"), 6),
            (EventFilter(actor="bob"), 17),
            (EventFilter(remote_ip="127.0.0.1"), 43),
            (EventFilter(remote_ip="10.0.0.1"), 0),
            (EventFilter(source="notification"), 43),
            (EventFilter(source="log"), 0),
        ],
    )
    def test_filters(self, stored: Services, where: EventFilter, count: int) -> None:
        """Each filter narrows to the events that match it."""
        with stored.session_factory() as session:
            page, _ = query_events(session, where=where, limit=1000)
        assert count == len(page)

    def test_time_range_is_half_open(self, stored: Services) -> None:
        """since is inclusive, until exclusive."""
        events = sorted(scenario_events(), key=lambda e: e.occurred_at)
        first, last = events[0].occurred_at, events[-1].occurred_at
        with stored.session_factory() as session:
            page, _ = query_events(session, where=EventFilter(since=first, until=last), limit=1000)
        assert len([e for e in events if first <= e.occurred_at < last]) == len(page)

    @pytest.mark.parametrize("ascending", [False, True])
    def test_pages_cover_everything_once(self, stored: Services, ascending: bool) -> None:
        """Following next_cursor visits every event exactly once, in order."""
        seen: list[int] = []
        cursor = None
        with stored.session_factory() as session:
            for _ in range(20):
                page, cursor = query_events(
                    session, where=EventFilter(), limit=7, cursor=cursor, ascending=ascending
                )
                seen.extend(e.id for e in page)
                if cursor is None:
                    break
            all_rows, _ = query_events(
                session, where=EventFilter(), limit=1000, ascending=ascending
            )
        assert [e.id for e in all_rows] == seen
        assert 43 == len(set(seen))

    @pytest.mark.parametrize("cursor", ["", "!!!", "WzFd", "eyJhIjoxfQ"])
    def test_foreign_cursors_are_refused(self, cursor: str) -> None:
        """A cursor this server did not issue is an InvalidQuery, not a crash."""
        with pytest.raises(InvalidQuery):
            decode_cursor(cursor)


class TestExpiry:
    def test_old_events_go_and_tag_state_stays(self, stored: Services) -> None:
        """Expiry deletes raw events before the cut and nothing else."""
        cut = datetime(2026, 11, 27, 4, 52, 20, tzinfo=UTC)
        before = sum(1 for e in scenario_events() if e.occurred_at < cut)
        with stored.session_factory() as session, session.begin():
            removed = expire_events(session, older_than=cut)
        with stored.session_factory() as session:
            page, _ = query_events(session, where=EventFilter(), limit=1000)
        assert (before, 43 - before) == (removed, len(page))
        assert all(e.event.occurred_at >= cut for e in page)
        assert cut - timedelta(days=1) < cut
