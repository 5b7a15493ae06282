"""The intake inbox: what intake answered for is applied once, across restarts and replicas,
whether it is applied in a child process (the default) or on a thread of the serving process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select, text
from starlette.testclient import TestClient

from monitor.errors import StoreUnavailable
from monitor.main import build_app, build_services
from monitor.runtime import Services
from monitor.settings import Settings
from monitor.store.inbox import BATCH_BYTES, ORPHAN_AFTER, inbox_path, within_bytes
from monitor.store.inbox_sqlite import BUSY_RETRY_SECONDS, WAL_LIMIT_BYTES, SqliteInbox
from monitor.store.inbox_turns import CHECKPOINT_BYTES, CHECKPOINT_EVERY
from monitor.store.schema import EventRow, QuarantineRow
from tests.conftest import MigratedStores, PostgresDatabases, make_settings
from tests.fixture_events import iter_posts
from tests.ingest.test_notification import push_event

V1 = "application/vnd.docker.distribution.events.v1+json"
AUTH = {"Authorization": "Bearer s3cret", "Content-Type": V1}


@pytest.fixture(params=["process", "thread"])
def applier(request: pytest.FixtureRequest) -> str:
    mode: str = request.param
    return mode


@pytest.fixture
def settings(db_url: str, tmp_path: Path, applier: str) -> Settings:
    return make_settings(db_url, tmp_path, REGISTRY_MONITOR_NOTIFICATIONS_APPLIER=applier)


def body(n: int) -> bytes:
    return json.dumps({"events": [push_event(id=f"inbox-{n}")]}).encode()


def append(services: Services, *bodies: bytes) -> None:
    async def run() -> None:
        for one in bodies:
            await services.inbox.append(one, V1, "127.0.0.1", datetime.now(UTC))

    asyncio.run(run())


def event_ids(services: Services) -> list[str]:
    with services.engine.connect() as connection:
        rows = connection.execute(text("SELECT event_id FROM events ORDER BY event_id"))
        return [row[0] for row in rows]


def started(settings: Settings) -> Services:
    built = build_services(settings, registry=CollectorRegistry(), migrate=True)
    built.start()
    return built


class TestApplying:
    def test_every_body_appended_is_applied_once(self, services: Services) -> None:
        """Bodies appended (one of them twice) become their events, each stored once, and the
        inbox is empty again."""
        append(services, body(1), body(2), body(1))
        assert services.applier.drain()
        assert ["inbox-1", "inbox-2"] == event_ids(services)
        assert 0 == services.inbox.backlog()

    def test_bodies_appended_together_are_each_applied_once(self, services: Services) -> None:
        """Forty bodies appended at once (commits shared by those waiting together, one
        body alone in the first) are all kept, and each becomes its event once."""

        async def run() -> None:
            now = datetime.now(UTC)
            await asyncio.gather(
                *(services.inbox.append(body(n), V1, "127.0.0.1", now) for n in range(40))
            )

        asyncio.run(run())
        assert services.applier.drain()
        assert sorted(f"inbox-{n}" for n in range(40)) == event_ids(services)

    def test_bodies_left_by_a_stopped_process_are_applied_at_the_next_start(
        self, settings: Settings
    ) -> None:
        """Appended, then the process stops before applying (the applier is not running):
        the next start applies them, once."""
        first = build_services(settings, registry=CollectorRegistry(), migrate=True)
        first.writer.start()
        first.inbox.open()  # no applier: the bodies stay in the inbox
        append(first, body(1), body(2))
        first.inbox.close()
        first.writer.stop()
        assert [] == event_ids(first)
        first.engine.dispose()

        second = started(settings)
        try:
            if second.engine.dialect.name == "postgresql":
                # Another receiver's bodies: applied once they are older than ORPHAN_AFTER.
                with second.engine.begin() as connection:
                    connection.execute(
                        text("UPDATE intake_inbox SET received_at = :at"),
                        {"at": datetime.now(UTC) - ORPHAN_AFTER - timedelta(seconds=1)},
                    )
            second.applier.wake()
            assert second.applier.drain()
            deadline = datetime.now(UTC) + timedelta(seconds=10)
            while event_ids(second) != ["inbox-1", "inbox-2"] and datetime.now(UTC) < deadline:
                second.applier.wake()
                second.applier.drain(1.0)
            assert ["inbox-1", "inbox-2"] == event_ids(second)
        finally:
            second.stop()
            second.engine.dispose()

    def test_a_restart_applies_nothing_twice(self, settings: Settings) -> None:
        """Applied bodies are not applied again after a restart: the quarantine (which is not
        deduplicated by event id) holds one row for one bad body."""
        for round_ in range(2):
            services = started(settings)
            try:
                if round_ == 0:
                    append(services, b"not json")
                    assert services.applier.drain()
                services.applier.wake()
                assert services.applier.drain()
                with services.engine.connect() as connection:
                    count = connection.execute(text("SELECT count(*) FROM quarantine")).scalar()
                assert 1 == count
            finally:
                services.stop()
                services.engine.dispose()


class TestReceivedAt:
    def test_events_keep_the_time_intake_received_them(self, settings: Settings) -> None:
        """An event applied an hour after intake answered for it is stored as received when
        intake accepted its body, not when it was applied."""
        accepted = datetime.now(UTC).replace(microsecond=0)
        now = [accepted]
        services = build_services(
            settings, clock=lambda: now[0], registry=CollectorRegistry(), migrate=True
        )

        def later() -> None:
            now[0] = accepted + timedelta(hours=1)

        stored = received_as_applied(services, body(1), accepted, EventRow.received_at, later)
        assert [accepted] == stored

    def test_a_quarantined_body_keeps_the_time_intake_received_it(self, settings: Settings) -> None:
        """A body that is quarantined when applied an hour later is listed as received when
        intake accepted it."""
        accepted = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        services = build_services(settings, registry=CollectorRegistry(), migrate=True)
        stored = received_as_applied(
            services, b"not json", accepted, QuarantineRow.received_at, lambda: None
        )
        assert [accepted] == stored


def received_as_applied(
    services: Services,
    payload: bytes,
    accepted: datetime,
    column: Any,
    before_applying: Callable[[], None],
) -> list[Any]:
    """Appends `payload` as received at `accepted`, runs `before_applying`, applies it, and
    returns `column` of what was stored; stops `services`."""
    services.writer.start()
    services.inbox.open()
    try:

        async def run() -> None:
            await services.inbox.append(payload, V1, "127.0.0.1", accepted)

        asyncio.run(run())
        before_applying()
        services.applier.start()
        assert services.applier.drain()
        with services.session_factory() as session:
            return list(session.scalars(select(column)).all())
    finally:
        services.stop()
        services.engine.dispose()


def sqlite_inbox(tmp_path: Path, applier: str) -> tuple[Settings, Path]:
    """Settings of a SQLite store in `tmp_path`, and its first inbox file's write-ahead log."""
    settings = make_settings(
        f"sqlite:///{tmp_path / 'store.db'}",
        tmp_path,
        REGISTRY_MONITOR_NOTIFICATIONS_APPLIER=applier,
    )
    return settings, inbox_path(str(tmp_path / "store.db")).with_name("store.db.intake-wal")


def logs(wal: Path) -> list[Path]:
    """Both inbox files' write-ahead logs, the first one's being `wal`."""
    return [wal, wal.with_name(wal.name.replace("-wal", "-2-wal"))]


def turns_of(services: Services) -> list[int]:
    """How many times each inbox file was started over while resting (its `user_version`)."""
    inbox = services.inbox
    assert isinstance(inbox, SqliteInbox)
    found = []
    for path in inbox.paths:
        with contextlib.closing(sqlite3.connect(path)) as connection:
            found.append(int(connection.execute("PRAGMA user_version").fetchone()[0]))
    return found


def settle_turns(services: Services, expected: int) -> None:
    """Waits (up to 10 s) until the files were started over `expected` times in all."""
    deadline = time.monotonic() + 10
    while sum(turns_of(services)) < expected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sum(turns_of(services)) >= expected


def own_file(db_url: str, tmp_path: Path, applier: str, name: str = "a") -> Settings:
    """Settings whose intake inbox is the file `<tmp_path>/<name>/inbox` (a replica's own)."""
    return make_settings(
        db_url,
        tmp_path,
        REGISTRY_MONITOR_NOTIFICATIONS_APPLIER=applier,
        REGISTRY_MONITOR_NOTIFICATIONS_INBOX_FILE=str(tmp_path / name / "inbox"),
    )


def quarantined(services: Services) -> list[tuple[str, int]]:
    with services.engine.connect() as connection:
        rows = connection.execute(text("SELECT reason, count FROM quarantine ORDER BY id"))
        return [(row[0], row[1]) for row in rows]


def cursors(services: Services) -> dict[str, int]:
    with services.engine.connect() as connection:
        rows = connection.execute(text("SELECT inbox, last_id FROM intake_applied"))
        return {row[0]: row[1] for row in rows}


class TestOwnFile:
    """`notifications.inbox_file`: the bodies wait in a file of the replica's own, on either
    store, and are applied once, across restarts, beside other replicas' files."""

    def test_bodies_wait_in_the_named_file_and_are_applied_once_at_the_next_start(
        self, db_url: str, tmp_path: Path, applier: str
    ) -> None:
        """Appended while nothing applies them: they are in the named file and nowhere else
        (not the PostgreSQL table, not beside an SQLite store); the next start applies them,
        at once, and a third start applies nothing again."""
        settings = own_file(db_url, tmp_path, applier)
        first = build_services(settings, registry=CollectorRegistry(), migrate=True)
        first.writer.start()
        first.inbox.open()  # no applier: the bodies stay in the inbox
        append(first, body(1), b"not json")
        first.inbox.close()
        first.writer.stop()
        with sqlite3.connect(tmp_path / "a" / "inbox") as inbox:
            assert 2 == inbox.execute("SELECT count(*) FROM intake_inbox").fetchone()[0]
        with first.engine.connect() as connection:
            if first.engine.dialect.name == "postgresql":
                held = connection.execute(text("SELECT count(*) FROM intake_inbox")).scalar()
                assert 0 == held
        assert not inbox_path(str(tmp_path / "store.db")).exists()
        assert ([], {}) == (event_ids(first), cursors(first))
        first.engine.dispose()

        for _ in range(2):
            services = started(settings)
            try:
                services.applier.wake()
                assert services.applier.drain()
                assert ["inbox-1"] == event_ids(services)
                assert [("invalid_json", 1)] == quarantined(services)
                ((key, last),) = cursors(services).items()
                assert (True, 2) == (key.startswith("file:"), last)
            finally:
                services.stop()
                services.engine.dispose()

    def test_each_replica_file_keeps_a_cursor_of_its_own(
        self, db_url: str, tmp_path: Path, applier: str
    ) -> None:
        """Two replicas on one store, each with its own file: the first body of the second
        file is applied although the first file's cursor is past it; a file replaced by a
        new one starts a cursor of its own, and its bodies are applied."""
        a = started(own_file(db_url, tmp_path, applier, "a"))
        b = started(own_file(db_url, tmp_path, applier, "b"))
        try:
            append(a, body(1), body(2), body(3))
            assert a.applier.drain()
            append(b, body(4))
            assert b.applier.drain()
            assert ["inbox-1", "inbox-2", "inbox-3", "inbox-4"] == event_ids(a)
            assert [1, 3] == sorted(cursors(a).values())
        finally:
            b.stop()
            b.engine.dispose()
        for leftover in (tmp_path / "b").iterdir():
            leftover.unlink()
        b = started(own_file(db_url, tmp_path, applier, "b"))
        try:
            append(b, body(5))
            assert b.applier.drain()
            assert ["inbox-1", "inbox-2", "inbox-3", "inbox-4", "inbox-5"] == event_ids(b)
            assert [1, 1, 3] == sorted(cursors(b).values())
        finally:
            b.stop()
            b.engine.dispose()
            a.stop()
            a.engine.dispose()


class TestOwnFileBesidePostgresql:
    def test_bodies_left_in_the_table_are_applied_by_a_replica_with_a_file(
        self,
        tmp_path: Path,
        applier: str,
        migrated_stores: MigratedStores,
        postgres: PostgresDatabases,
    ) -> None:
        """A replica answered through PostgreSQL's `intake_inbox` table and stopped before
        applying; the replica after it has a file. It applies those bodies once they are older
        than ORPHAN_AFTER, once, and they leave the table; its own bodies, appended after,
        are applied too, and its file's cursor counts only them."""
        url = migrated_stores.checkout(postgres)
        try:
            table_settings = make_settings(
                url, tmp_path, REGISTRY_MONITOR_NOTIFICATIONS_APPLIER=applier
            )
            gone = build_services(table_settings, registry=CollectorRegistry(), migrate=True)
            gone.writer.start()
            gone.inbox.open()  # no applier: the bodies stay in the table
            append(gone, body(1), body(2), body(3))
            gone.inbox.close()
            gone.writer.stop()
            with gone.engine.begin() as connection:
                connection.execute(
                    text("UPDATE intake_inbox SET received_at = :at"),
                    {"at": datetime.now(UTC) - ORPHAN_AFTER - timedelta(seconds=1)},
                )
            gone.engine.dispose()

            services = started(own_file(url, tmp_path, applier))
            try:
                deadline = datetime.now(UTC) + timedelta(seconds=10)
                while len(event_ids(services)) < 3 and datetime.now(UTC) < deadline:
                    services.applier.wake()
                    services.applier.drain(1.0)
                assert ["inbox-1", "inbox-2", "inbox-3"] == event_ids(services)
                for n in (4, 5, 6):
                    append(services, body(n))
                    assert services.applier.drain()
                assert [f"inbox-{n}" for n in range(1, 7)] == event_ids(services)
                with services.engine.connect() as connection:
                    left = connection.execute(text("SELECT count(*) FROM intake_inbox")).scalar()
                assert 0 == left
                ((key, last),) = cursors(services).items()
                assert (True, 3) == (key.startswith("file:"), last)
            finally:
                services.stop()
                services.engine.dispose()
        finally:
            migrated_stores.checkin(postgres, url)


class TestSqliteFile:
    def test_a_replaced_inbox_file_numbers_new_bodies_after_the_applied_ones(
        self, tmp_path: Path, applier: str
    ) -> None:
        """If the inbox file is deleted, new bodies still number above the stored cursor, so
        none is taken for already applied."""
        settings = make_settings(
            f"sqlite:///{tmp_path / 'store.db'}",
            tmp_path,
            REGISTRY_MONITOR_NOTIFICATIONS_APPLIER=applier,
        )
        services = started(settings)
        try:
            append(services, body(1), body(2))
            assert services.applier.drain()
        finally:
            services.stop()
            services.engine.dispose()
        path = inbox_path(str(tmp_path / "store.db"))
        for leftover in path.parent.glob(path.name + "*"):
            leftover.unlink()
        services = started(settings)
        try:
            append(services, body(3))
            assert services.applier.drain()
            assert ["inbox-1", "inbox-2", "inbox-3"] == event_ids(services)
        finally:
            services.stop()
            services.engine.dispose()

    def test_after_a_burst_the_write_ahead_logs_are_cut_back_to_their_limit(
        self, tmp_path: Path, applier: str
    ) -> None:
        """Bodies appended while a reader holds both files grow a write-ahead log past
        WAL_LIMIT_BYTES; once they are applied and the files take their turns again, each log
        starts over cut back to the limit instead of kept at its largest."""
        settings, wal = sqlite_inbox(tmp_path, applier)
        large = json.dumps({"events": [push_event(id="large")], "pad": "x" * 4_000_000}).encode()
        services = started(settings)
        try:
            services.applier.stop()
            with contextlib.ExitStack() as pins:
                for path in logs(wal):
                    pin = pins.enter_context(
                        contextlib.closing(sqlite3.connect(path.with_name(path.name[:-4])))
                    )
                    pin.execute("BEGIN")
                    pin.execute("SELECT count(*) FROM intake_inbox").fetchall()
                append(services, *[large] * 2 * (WAL_LIMIT_BYTES // len(large) + 2))
                grown = max(path.stat().st_size for path in logs(wal))
            services.applier.start()
            assert services.applier.drain()
            for n in (1, 2, 3, 4):  # each body past CHECKPOINT_BYTES: a turn after each
                append(services, large if n < 4 else body(n))
                assert services.applier.drain()
            deadline = time.monotonic() + 10  # the file left behind is started over soon after
            while max(p.stat().st_size for p in logs(wal)) > WAL_LIMIT_BYTES:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            after = [path.stat().st_size for path in logs(wal)]
            assert ["inbox-4", "large"] == event_ids(services)
        finally:
            services.stop()
            services.engine.dispose()
        assert grown > WAL_LIMIT_BYTES >= max(after)

    def test_while_appends_never_pause_the_files_take_turns_and_start_over(
        self, tmp_path: Path, applier: str
    ) -> None:
        """With nothing applied and no pause between appends, the files hand over every
        CHECKPOINT_EVERY commits, and the one left is started over off the event loop (its
        turn counted in its `user_version`; the appends wait at each turn for it): three times
        as many appends leave neither log much longer than one file's share."""
        settings, wal = sqlite_inbox(tmp_path, applier)
        services = started(settings)
        try:
            services.applier.stop()
            append(services, *[body(n) for n in range(CHECKPOINT_EVERY + 1)])
            settle_turns(services, 1)
            assert [1, 0] == turns_of(services)
            one_round = max(path.stat().st_size for path in logs(wal))
            for turn in (2, 3):
                append(services, *[body(n) for n in range(CHECKPOINT_EVERY)])
                settle_turns(services, turn)
            assert [2, 1] == turns_of(services)
            three_rounds = max(path.stat().st_size for path in logs(wal))
        finally:
            services.stop()
            services.engine.dispose()
        assert three_rounds < 1.5 * one_round  # a round more would double it

    def test_bodies_are_applied_once_in_order_across_both_files(
        self, tmp_path: Path, applier: str
    ) -> None:
        """Bodies numbered across the two files as they take turns are applied once each, in
        the order they were answered."""
        settings, _wal = sqlite_inbox(tmp_path, applier)
        services = started(settings)
        count = 2 * CHECKPOINT_EVERY + 10
        try:
            services.applier.stop()
            append(services, *[body(n) for n in range(count)])
            settle_turns(services, 1)
            services.applier.start()
            assert services.applier.drain()
            with services.session_factory() as session:
                stored = session.scalars(select(EventRow.event_id).order_by(EventRow.id)).all()
        finally:
            services.stop()
            services.engine.dispose()
        assert [f"inbox-{n}" for n in range(count)] == stored

    def test_large_bodies_hand_over_every_few_mib(self, tmp_path: Path, applier: str) -> None:
        """Commits of large bodies hand over to the other file every CHECKPOINT_BYTES or so,
        however few they are: ten bodies of 1.5 MiB leave logs of under two such spans (the
        appends wait at each turn for the file left to be started over)."""
        settings, wal = sqlite_inbox(tmp_path, applier)
        large = json.dumps({"events": [push_event(id="large")], "pad": "x" * 1_500_000}).encode()
        services = started(settings)
        try:
            services.applier.stop()
            for turn in (1, 2, 3):  # three bodies pass CHECKPOINT_BYTES
                append(services, *[large] * 3)
                settle_turns(services, turn)
            append(services, large)
            size = max(path.stat().st_size for path in logs(wal))
        finally:
            services.stop()
            services.engine.dispose()
        assert 10 * len(large) > 2 * CHECKPOINT_BYTES > size

    def test_a_lock_held_elsewhere_for_a_moment_is_waited_out_off_the_event_loop(
        self, tmp_path: Path
    ) -> None:
        """Another connection holding the file's write lock for a moment (SQLite's readers
        take it when they find the log's index header mid-commit): the commit is tried again
        by later callbacks, the event loop turning meanwhile, and the body is kept; nothing is
        refused; each try again is counted."""
        settings, wal = sqlite_inbox(tmp_path, "thread")
        registry = CollectorRegistry()
        services = build_services(settings, registry=registry, migrate=True)
        services.inbox.open()
        holder = sqlite3.connect(wal.with_suffix(".intake"), isolation_level=None, timeout=0)
        turns = 0  # of the event loop, while the lock was held

        async def run() -> None:
            nonlocal turns
            holder.execute("BEGIN IMMEDIATE")
            asyncio.get_running_loop().call_later(BUSY_RETRY_SECONDS / 5, holder.rollback)
            appending = asyncio.create_task(
                services.inbox.append(body(1), V1, "127.0.0.1", datetime.now(UTC))
            )
            while holder.in_transaction:
                turns += 1
                await asyncio.sleep(0.005)
            await appending

        try:
            asyncio.run(run())
            held = holder.execute("SELECT count(*) FROM intake_inbox").fetchone()[0]
        finally:
            holder.close()
            services.inbox.close()
            services.engine.dispose()
        assert (1, True) == (held, turns > 1)
        retries = registry.get_sample_value(
            "registry_monitor_intake_inbox_retries_total", {"reason": "locked"}
        )
        assert retries is not None
        assert retries >= 1

    def test_a_lock_held_elsewhere_beyond_the_retries_is_refused_then_released(
        self, tmp_path: Path
    ) -> None:
        """Held past BUSY_RETRY_SECONDS, the lock is an outage: the append fails (intake
        answers 503, the registry sends it again), its cause in the log; once released, the
        next append is kept."""
        settings, wal = sqlite_inbox(tmp_path, "thread")
        services = build_services(settings, registry=CollectorRegistry(), migrate=True)
        services.inbox.open()
        holder = sqlite3.connect(wal.with_suffix(".intake"), isolation_level=None, timeout=0)
        try:
            holder.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreUnavailable) as refused:
                append(services, body(1))
            holder.rollback()
            append(services, body(2))
            held = holder.execute("SELECT count(*) FROM intake_inbox").fetchone()[0]
        finally:
            holder.close()
            services.inbox.close()
            services.engine.dispose()
        assert ("database is locked", 1) == (str(refused.value.__cause__), held)


class TestBound:
    def test_beyond_inbox_max_intake_answers_503_until_applied(
        self, db_url: str, tmp_path: Path, applier: str
    ) -> None:
        """With the applier stopped, the inbox takes `inbox_max` bodies and then answers 503
        with Retry-After (the registry keeps the event); once applied, 200 again."""
        settings = make_settings(
            db_url,
            tmp_path,
            REGISTRY_MONITOR_NOTIFICATIONS_INBOX_MAX="3",
            REGISTRY_MONITOR_NOTIFICATIONS_APPLIER=applier,
        )
        services = started(settings)
        try:
            services.applier.stop()
            with TestClient(build_app(services, with_jobs=False)) as client:
                services.applier.stop()
                posts = [body for _name, _headers, body in iter_posts()][:4]
                codes = [
                    client.post("/v1/notifications", content=one, headers=AUTH).status_code
                    for one in posts
                ]
                full = client.post("/v1/notifications", content=posts[3], headers=AUTH)
                services.applier.start()
                assert services.applier.drain()
                again = client.post("/v1/notifications", content=posts[3], headers=AUTH)
            assert ([200, 200, 200, 503], 503, "intake_backlog") == (
                codes,
                full.status_code,
                full.json()["error"]["details"]["reason"],
            )
            assert "1" == full.headers["retry-after"]
            assert 200 == again.status_code
        finally:
            services.stop()
            services.engine.dispose()


class TestBatchBytes:
    def test_a_batch_is_cut_where_its_bodies_pass_the_byte_bound(self) -> None:
        """The first body always fits; the next ones while the total stays within the bound."""
        assert within_bytes([], 10) is None
        assert 1 == within_bytes([(1, 50)], 10)
        assert 2 == within_bytes([(1, 4), (2, 6), (3, 1)], 10)
        assert 3 == within_bytes([(1, 4), (2, 3), (3, 3), (4, 1)], 10)

    def test_large_bodies_are_fetched_a_few_at_a_time(self, db_url: str, tmp_path: Path) -> None:
        """Three bodies of 3 MiB wait: the applier fetches two (6 MiB within BATCH_BYTES), told
        that more wait, then the third, told that it was the last, never the 9 MiB at once."""
        settings = make_settings(db_url, tmp_path)
        services = build_services(settings, registry=CollectorRegistry(), migrate=True)
        services.writer.start()
        services.inbox.open()  # no applier: fetched by hand below
        try:
            large = b"x" * (3 * 1024 * 1024)
            assert 3 * len(large) > BATCH_BYTES >= 2 * len(large)
            append(services, large, large, large)
            now = datetime.now(UTC)
            first = services.inbox.fetch(256, now)
            services.writer.submit(
                [],
                [],
                also=lambda session: services.inbox.record_applied(session, first.items, now),
            ).result()
            services.inbox.applied(first.items)
            second = services.inbox.fetch(256, now)
        finally:
            services.inbox.close()
            services.writer.stop()
            services.engine.dispose()
        assert (2, True) == (len(first.items), first.more)
        assert (1, False) == (len(second.items), second.more)

    def test_a_batch_cut_at_its_limit_says_more_wait(self, db_url: str, tmp_path: Path) -> None:
        settings = make_settings(db_url, tmp_path)
        services = build_services(settings, registry=CollectorRegistry(), migrate=True)
        services.inbox.open()  # no applier: fetched by hand below
        try:
            append(services, body(1), body(2), body(3))
            now = datetime.now(UTC)
            cut, whole = services.inbox.fetch(2, now), services.inbox.fetch(4, now)
        finally:
            services.inbox.close()
            services.engine.dispose()
        assert (2, True) == (len(cut.items), cut.more)
        assert (3, False) == (len(whole.items), whole.more)


class TestOrderAcrossFiles:
    """The applier's side reads both files and takes bodies in the order they were numbered."""

    @staticmethod
    def inbox_with(tmp_path: Path, db_url: str, first: list[int], second: list[int]) -> Any:
        settings = make_settings(db_url, tmp_path)
        services = build_services(settings, registry=CollectorRegistry(), migrate=True)
        inbox = SqliteInbox(
            tmp_path / "inbox",
            synchronous="FULL",
            session_factory=services.session_factory,
            own=True,
        )
        inbox.open()
        for path, ids in zip(inbox.paths, (first, second), strict=True):
            with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as connection:
                for id_ in ids:
                    connection.execute(
                        "INSERT INTO intake_inbox (id, received_at, body) VALUES (?, 0, ?)",
                        (id_, body(id_)),
                    )
        services.engine.dispose()
        return inbox

    def test_bodies_of_both_files_come_in_id_order(self, tmp_path: Path, db_url: str) -> None:
        inbox = self.inbox_with(tmp_path, db_url, [1, 2, 5], [3, 4, 6])
        try:
            fetched = inbox.fetch(100, datetime.now(UTC))
        finally:
            inbox.close()
        assert [1, 2, 3, 4, 5, 6] == [item.id for item in fetched.items]
        assert not fetched.more

    def test_a_gap_is_waited_for_then_taken_for_ids_never_assigned(
        self, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Body 3 missing (committed to the other file after it was read): bodies stop before
        it and `more` says to fetch again at once; once the gap has lasted GAP_SECONDS, the
        bodies after it are taken."""
        inbox = self.inbox_with(tmp_path, db_url, [1, 2], [4, 5])
        try:
            waiting = inbox.fetch(100, datetime.now(UTC))
            monkeypatch.setattr("monitor.store.inbox_sqlite.GAP_SECONDS", 0.0)
            taken = inbox.fetch(100, datetime.now(UTC))
        finally:
            inbox.close()
        assert ([1, 2], True) == ([item.id for item in waiting.items], waiting.more)
        assert ([1, 2, 4, 5], False) == ([item.id for item in taken.items], taken.more)
