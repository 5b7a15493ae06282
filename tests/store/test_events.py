"""Event rows: insert, filters, keyset pagination, expiry."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import ClauseElement, Connection, func, select
from sqlalchemy.sql.compiler import SQLCompiler

from monitor.detect.rulebase import EVENT_FIELDS
from monitor.errors import InvalidQuery
from monitor.events import Action, Client, Event, Source, TargetKind
from monitor.runtime import Services
from monitor.store.detector_state import events_after
from monitor.store.dialect import in_list_chunks
from monitor.store.events import (
    EventFilter,
    ExpiryKey,
    _rebuilt_probe,
    expire_event_batch,
    expire_events,
    insert_events,
    query_events,
    stored_event,
)
from monitor.store.judged import judged_event, judged_events_between
from monitor.store.pages import decode_cursor
from monitor.store.schema import EventRow
from tests.detect.fixture_events import log_events, log_events_31, notification_events
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


ScanCase = dict[str, object]
SCANNED_FILTERS: list[ScanCase] = [
    {"tag": "1.0"},
    {"tag": "no-such-tag"},
    {"source": "log"},
    {"source": "notification", "tag": "latest"},
    {"reconstructed": False},
    {"reconstructed": True},
    {"repository": "team/app", "tag": "1.0"},
    {"repository": "team/app", "action": "pull"},
    {"actor": "bob", "action": "pull", "tag": "1.0"},
    {"remote_ip": "127.0.0.1", "source": "log"},
    {"action": "push", "source": "notification"},
]


def matches(event: Event, where: ScanCase) -> bool:
    return all(
        (getattr(event, name).value if name in ("action", "source") else getattr(event, name))
        == value
        for name, value in where.items()
    )


class TestScannedPages:
    """A filter no index serves is checked on a bounded number of rows per page."""

    @pytest.mark.parametrize("where", SCANNED_FILTERS, ids=str)
    @pytest.mark.parametrize("ascending", [False, True])
    def test_following_cursors_gives_the_straightforward_answer(
        self, stored_mix: tuple[Services, list[Event]], where: ScanCase, ascending: bool
    ) -> None:
        """Pages of 3 that each examine at most 7 rows, followed to the end, hold exactly the
        events that match, in order: those a plain filter over every event keeps."""
        services, _ = stored_mix
        with services.session_factory() as session:
            everything, _ = query_events(
                session, where=EventFilter(), limit=1000, ascending=ascending
            )
            expected = [e.id for e in everything if matches(e.event, where)]
            seen: list[int] = []
            cursor = None
            for _ in range(200):
                page, cursor = query_events(
                    session,
                    where=EventFilter(**where),  # type: ignore[arg-type]
                    limit=3,
                    cursor=cursor,
                    ascending=ascending,
                    scan_rows=7,
                )
                assert len(page) <= 3
                seen.extend(e.id for e in page)
                if cursor is None:
                    break
        assert expected == seen

    def test_a_page_ends_once_it_examined_its_rows(self, stored: Services) -> None:
        """With nothing matching, each page examines 10 of the 43 events and comes back empty
        with a cursor, until the last one."""
        pages: list[tuple[int, bool]] = []
        cursor = None
        with stored.session_factory() as session:
            while True:
                page, cursor = query_events(
                    session,
                    where=EventFilter(tag="no-such-tag"),
                    limit=5,
                    cursor=cursor,
                    scan_rows=10,
                )
                pages.append((len(page), cursor is not None))
                if cursor is None:
                    break
        assert [(0, True)] * 4 + [(0, False)] == pages

    def test_a_page_that_fills_up_stops_there(self, stored: Services) -> None:
        """A page finds its `limit` events before its rows run out: the next page starts after
        its last event, as without the bound."""
        with stored.session_factory() as session:
            bounded, cursor = query_events(
                session, where=EventFilter(tag="1.0"), limit=2, scan_rows=1000
            )
            rest, _ = query_events(session, where=EventFilter(tag="1.0"), limit=1000, cursor=cursor)
            everything, _ = query_events(session, where=EventFilter(tag="1.0"), limit=1000)
        assert 2 == len(bounded) and cursor is not None
        assert [e.id for e in everything] == [e.id for e in bounded + rest]


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

    def test_batches_chained_by_their_keys_delete_every_due_event_once(
        self, stored: Services
    ) -> None:
        """Each batch starts after the key the previous one returned (the newest it deleted):
        batches of 4 take the due events oldest first, 4 at a time, and then stop."""
        due = keys_before(stored, CUT)
        after: ExpiryKey | None = None
        sizes: list[int] = []
        while not sizes or sizes[-1] == 4:
            with stored.session_factory() as session, session.begin():
                removed, after_next = expire_event_batch(
                    session, older_than=CUT, limit=4, after=after
                )
            sizes.append(removed)
            if removed == 4:
                assert due[sum(sizes) - 1] == after_next
            after = after_next
        assert (len(due), [4] * (len(due) // 4) + [len(due) % 4]) == (sum(sizes), sizes)
        assert [] == keys_before(stored, CUT)

    def test_a_batch_leaves_what_sorts_at_or_before_its_start(self, stored: Services) -> None:
        """Due events at or before `after` are not this run's (the next run starts from the
        index's beginning and takes them)."""
        due = keys_before(stored, CUT)
        with stored.session_factory() as session, session.begin():
            removed, _ = expire_event_batch(session, older_than=CUT, limit=1000, after=due[2])
        assert (len(due) - 3, due[:3]) == (removed, keys_before(stored, CUT))


CUT = datetime(2026, 11, 27, 4, 52, 20, tzinfo=UTC)


def keys_before(services: Services, cut: datetime) -> list[ExpiryKey]:
    """(occurred_at, id) of the stored events before `cut`, in expiry order."""
    row = EventRow
    with services.session_factory() as session:
        found = session.execute(
            select(row.occurred_at, row.id)
            .where(row.occurred_at < cut)
            .order_by(row.occurred_at, row.id)
        )
        return [(at, key) for at, key in found]


def judged(event: Event) -> Event:
    """`event` with only the fields detection reads; the others at their defaults."""
    return Event(**{name: getattr(event, name) for name in EVENT_FIELDS})


@pytest.fixture
def stored_mix(services: Services) -> tuple[Services, list[Event]]:
    """The notification capture and the failures and listings of the registry log."""
    events = scenario_events() + log_events()
    services.writer.submit(events).result(timeout=30)
    return services, events


class TestJudgedEvents:
    def test_each_column_becomes_its_field(self) -> None:
        """A row of JUDGED_COLUMNS, each value telling its column, gives each field its own
        value (judged_event unpacks by position)."""
        row: dict[str, object] = {name: f"value of {name}" for name in EVENT_FIELDS}
        row |= {
            "source": "log",
            "action": "auth_failure",
            "occurred_at": "2026-11-30 12:00:00.000001",
            "target_kind": "blob",
            "size": 7,
            "http_status": 401,
            "client": "scanner",
        }
        event = judged_event([row[name] for name in EVENT_FIELDS])
        expected = {
            **row,
            "source": Source.LOG,
            "action": Action.AUTH_FAILURE,
            "occurred_at": datetime(2026, 11, 30, 12, 0, 0, 1, tzinfo=UTC),
            "target_kind": TargetKind.BLOB,
            "client": Client.SCANNER,
        }
        assert expected == {name: getattr(event, name) for name in EVENT_FIELDS}

    def test_detection_reads_the_fields_rules_read(self, stored_mix) -> None:
        """The events a detection pass reads are the stored ones with every field of
        EVENT_FIELDS (the others at their defaults), in id order."""
        services, events = stored_mix
        received_before = datetime.now(UTC) + timedelta(days=1)
        with services.session_factory() as session:
            read = events_after(session, 0, received_before=received_before, limit=1000)
        by_id = {e.event_id: judged(e) for e in events}
        expected = ([by_id[s.event.event_id] for s in read], len(events))
        assert expected == ([s.event for s in read], len(read))

    def test_judged_batches_cover_the_span_once_in_time_order(self, stored_mix) -> None:
        """Batches of 7 hold every event of [since, until) once, in (time, id) order: the
        order of the ascending event pages."""
        services, events = stored_mix
        ordered = sorted(events, key=lambda e: e.occurred_at)
        since, until = ordered[3].occurred_at, ordered[-2].occurred_at
        with services.session_factory() as session:
            batches = list(judged_events_between(session, since=since, until=until, batch=7))
            page, _ = query_events(
                session, where=EventFilter(since=since, until=until), limit=1000, ascending=True
            )
        expected = ([judged(s.event) for s in page], True)
        actual = ([e for b in batches for e in b], all(0 < len(b) <= 7 for b in batches))
        assert expected == actual


class TestLateNotifications:
    def test_a_shared_request_id_is_looked_up_among_rebuilt_events_only(
        self, services: Services
    ) -> None:
        """Whether a batch's request ids have an event rebuilt from the log (asked for every
        batch) is read from the index of rebuilt events: 300 stored notifications sharing a
        request id are not walked to find none is rebuilt."""
        base = notification_events()[0]
        shared = [
            dataclasses.replace(base, event_id=f"shared-{n}", request_id="shared")
            for n in range(300)
        ]
        rebuilt = dataclasses.replace(
            base, event_id="log:1", request_id="rebuilt", reconstructed=True
        )
        with services.session_factory() as session, session.begin():
            insert_events(session, [*shared, rebuilt], received_at=datetime.now(UTC))
        size, params = next(in_list_chunks("r", ["shared", "rebuilt"]))
        with services.session_factory() as session, session.begin():
            connection = session.connection()
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql("ANALYZE events")
                connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = query_plan(connection, _rebuilt_probe(size), params)
        assert "ix_events_rebuilt_request_id" in plan, plan


def query_plan(connection: Connection, statement: ClauseElement, params: dict[str, Any]) -> str:
    """The database's plan for `statement` with `params`, as text."""
    compiled = statement.compile(dialect=connection.dialect)
    assert isinstance(compiled, SQLCompiler)
    values = {**compiled.params, **params}
    if connection.dialect.name == "sqlite":
        assert compiled.positiontup is not None
        rows = connection.exec_driver_sql(
            "EXPLAIN QUERY PLAN " + str(compiled),
            tuple(values[name] for name in compiled.positiontup),
        ).all()
    else:
        rows = connection.exec_driver_sql("EXPLAIN " + str(compiled), values).all()
    return "\n".join(" ".join(str(field) for field in row) for row in rows)


class TestInsertEvents:
    @staticmethod
    def every_kind() -> list[Event]:
        """Notifications of both captures, and events read from the 2.8 log: between them
        every column is set in some and empty in others."""
        return [*notification_events(), *scenario_events(), *log_events(), *log_events_31()]

    def test_every_field_comes_back_as_it_went_in(self, services: Services) -> None:
        """Each event inserted is read back equal, with the time it was received."""
        received = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
        events = list({e.event_id: e for e in self.every_kind()}.values())
        with services.session_factory() as session, session.begin():
            inserted = insert_events(session, events, received_at=received)
        assert len(events) == len(inserted)
        with services.session_factory() as session:
            rows = [stored_event(row) for row in session.scalars(select(EventRow))]
        assert sorted(events, key=lambda e: e.event_id) == sorted(
            (s.event for s in rows), key=lambda e: e.event_id
        )
        assert {received} == {s.received_at for s in rows}

    def test_unusual_text_and_extreme_values_come_back_as_they_went_in(
        self, services: Services
    ) -> None:
        """Quotes, backslashes, an escape character, line separators and characters beyond the BMP in the
        text columns, the largest size, a time in another zone with its last microsecond:
        read back equal."""
        base = notification_events()[0]
        odd = dataclasses.replace(
            base,
            event_id="odd-\"'\\-\u2028",
            repository="team/🐳-repo",
            actor="a\x1bb",
            user_agent='"quoted" \\ back\\slash \u2029 \U0001f600',
            detail="line one\nline two\r\n\ttab",
            size=2**63 - 1,
            occurred_at=datetime(
                2026, 12, 2, 23, 59, 59, 999_999, tzinfo=timezone(timedelta(hours=5))
            ),
        )
        received = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
        with services.session_factory() as session, session.begin():
            assert [odd] == insert_events(session, [odd], received_at=received)
        with services.session_factory() as session:
            (row,) = session.scalars(select(EventRow))
            assert odd == stored_event(row).event

    def test_a_batch_is_numbered_in_its_own_order(self, services: Services) -> None:
        """Rows take ids in the order of their batch (detection and the event cursors read
        by id), whatever the order of their event ids."""
        events = sorted(
            {e.event_id: e for e in self.every_kind()}.values(),
            key=lambda e: e.event_id,
            reverse=True,
        )
        received = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
        with services.session_factory() as session, session.begin():
            insert_events(session, events, received_at=received)
        with services.session_factory() as session:
            stored = session.scalars(select(EventRow.event_id).order_by(EventRow.id)).all()
        assert [e.event_id for e in events] == stored

    def test_only_the_events_not_stored_yet_are_inserted_and_returned(
        self, services: Services
    ) -> None:
        """A batch holding stored events, new ones and a repeated one inserts and returns
        each new event once."""
        events = list({e.event_id: e for e in self.every_kind()}.values())
        first, rest = events[::2], events[1::2]
        received = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
        with services.session_factory() as session, session.begin():
            assert first == insert_events(session, first, received_at=received)
        with services.session_factory() as session, session.begin():
            again = insert_events(session, [*events, rest[0]], received_at=received)
        assert rest == again
        with services.session_factory() as session:
            assert len(events) == session.scalar(select(func.count()).select_from(EventRow))
