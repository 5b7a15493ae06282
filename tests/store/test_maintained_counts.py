"""The roll-ups and the newest event per source, kept as events are inserted, equal what a
straight aggregation of the raw events gives, before and after expiry, on both stores."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    Date,
    Engine,
    cast,
    column,
    create_engine,
    delete,
    func,
    insert,
    select,
    table,
)
from sqlalchemy.orm import Session, sessionmaker

from monitor.events import Action, Client, Event, Source
from monitor.store.columns import UTCDateTime
from monitor.store.events import expire_events, insert_events
from monitor.store.migrate import upgrade
from monitor.store.rollups import daily_counts, newest_per_source
from monitor.store.schema import EventRollupRow, EventRow, EventSourceRow

START = datetime(2026, 11, 25, tzinfo=UTC)
RECEIVED = datetime(2026, 11, 29, tzinfo=UTC)
SPAN_US = 4 * 86_400 * 1_000_000

events = st.builds(
    Event,
    event_id=st.integers(0, 60).map(lambda i: f"e{i}"),
    source=st.sampled_from(list(Source)),
    action=st.sampled_from(list(Action)),
    occurred_at=st.integers(0, SPAN_US).map(lambda us: START + timedelta(microseconds=us)),
    repository=st.sampled_from([None, "team/app", "lib/base", "mirror/hello"]),
    client=st.sampled_from(list(Client)),
)
commits = st.lists(st.lists(events, max_size=12), max_size=5)
cuts = st.none() | st.integers(0, SPAN_US).map(lambda us: START + timedelta(microseconds=us))


def reference_daily(session: Session) -> Counter[tuple[date, str, str, str]]:
    """Events per UTC day, repository, action and client, aggregated from the raw rows."""
    day: Any = func.date(EventRow.occurred_at)  # SQLite keeps naive UTC text
    if session.get_bind().dialect.name == "postgresql":
        day = cast(func.timezone("UTC", EventRow.occurred_at), Date)
    repo = func.coalesce(EventRow.repository, "")
    query = select(day, repo, EventRow.action, EventRow.client, func.count()).group_by(
        day, repo, EventRow.action, EventRow.client
    )
    out: Counter[tuple[date, str, str, str]] = Counter()
    for d, r, a, c, n in session.execute(query):
        out[(d if isinstance(d, date) else date.fromisoformat(d), r, a, c)] = int(n)
    return out


def reference_newest(session: Session) -> dict[str, datetime]:
    query = select(EventRow.source, func.max(EventRow.occurred_at)).group_by(EventRow.source)
    out = {}
    for source, newest in session.execute(query):
        moment = datetime.fromisoformat(newest) if isinstance(newest, str) else newest
        out[source] = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    return out


def maintained_daily(session: Session) -> Counter[tuple[date, str, str, str]]:
    rows = daily_counts(session, since=date(2000, 1, 1), until=date(2100, 1, 1))
    return Counter({(r.day, r.repository, r.action, r.client): r.count for r in rows})


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    built = create_engine(db_url)
    upgrade(built)
    yield built
    built.dispose()


class TestMaintainedCounts:
    @settings(
        max_examples=30,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(batches=commits, cut=cuts)
    def test_equal_to_aggregating_raw_events(
        self, engine: Engine, batches: list[list[Event]], cut: datetime | None
    ) -> None:
        """Whatever the commits (duplicates included) and wherever the expiry cuts, the daily
        counts equal the raw aggregation taken before expiry, and the newest event per source
        equals the raw maximum over the events left."""
        factory = sessionmaker(engine)
        with factory() as session, session.begin():
            for table in (EventRow, EventRollupRow, EventSourceRow):
                session.execute(delete(table))
        for batch in batches:
            with factory() as session, session.begin():
                insert_events(session, batch, received_at=RECEIVED)
        with factory() as session:
            before = reference_daily(session)
        if cut is not None:
            with factory() as session, session.begin():
                expire_events(session, older_than=cut)
        with factory() as session:
            assert (before, reference_newest(session)) == (
                maintained_daily(session),
                newest_per_source(session),
            )


class TestUpgrade:
    def test_upgrade_counts_stored_events_once(self, empty_db_url: str) -> None:
        """A store from before the counts were kept at insert: the upgrade adds the events still
        stored to the roll-ups of expired days and records the newest event per source."""
        engine = create_engine(empty_db_url)
        upgrade(engine, "0006")
        stored = [
            Event(f"e{i}", Source.LOG, Action.PULL, START + timedelta(hours=7 * i))
            for i in range(9)
        ]
        expired = {"day": date(2026, 10, 1), "repository": "", "action": "pull", "client": "other"}
        with engine.begin() as connection:
            connection.execute(insert(EventRollupRow), [{**expired, "count": 4}])
        with sessionmaker(engine)() as session, session.begin():
            # the events table as it was at 0006 (the model has columns added later)
            events_0006 = table(
                "events",
                *(column(name) for name in ("event_id", "source", "action", "client")),
                column("occurred_at", UTCDateTime()),
                column("received_at", UTCDateTime()),
            )
            session.execute(
                insert(events_0006),
                [
                    {
                        "event_id": e.event_id,
                        "source": "log",
                        "action": "pull",
                        "client": "other",
                        "occurred_at": e.occurred_at,
                        "received_at": RECEIVED,
                    }
                    for e in stored
                ],
            )
        upgrade(engine)
        with sessionmaker(engine)() as session:
            expected = reference_daily(session) + Counter(
                {(date(2026, 10, 1), "", "pull", "other"): 4}
            )
            actual = (maintained_daily(session), newest_per_source(session))
        engine.dispose()
        assert (expected, {"log": stored[-1].occurred_at}) == actual
