"""PostgreSQL's intake inbox appends its rows through libpq's asynchronous interface
(monitor/store/inbox_append.py): what is stored is exactly what intake was given, appends made
together share statements of at most ROWS_PER_STATEMENT rows, a large body goes whole, and a
statement the server refuses answers StoreUnavailable with the server's error as its cause and
never leaves the connection in use."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, text

from monitor.errors import StoreUnavailable
from monitor.store import inbox_postgres
from monitor.store.engine import make_session_factory
from monitor.store.inbox_append import ROWS_PER_STATEMENT, Appender, parameters, statement
from monitor.store.inbox_postgres import PostgresInbox
from tests.conftest import MigratedStores, PostgresDatabases, _libpq
from tests.harness import wait_until

V1 = "application/vnd.docker.distribution.events.v1+json"


@pytest.fixture
def pg_url(migrated_stores: MigratedStores, postgres: PostgresDatabases) -> Iterator[str]:
    url = migrated_stores.checkout(postgres)
    try:
        yield url
    finally:
        migrated_stores.checkin(postgres, url)


def make_inbox(url: str) -> PostgresInbox:
    engine = create_engine(url)
    return PostgresInbox(_libpq(url), receiver="r-1", session_factory=make_session_factory(engine))


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql))]
    finally:
        engine.dispose()


def stored(url: str) -> list[tuple[Any, ...]]:
    return query(
        url,
        "SELECT receiver, received_at, content_type, remote_ip, body FROM intake_inbox ORDER BY id",
    )


def statement_sizes(url: str) -> list[int]:
    """Rows of intake_inbox by the transaction that wrote them (`xmin`), in order."""
    sql = "SELECT count(*) FROM intake_inbox GROUP BY xmin::text::bigint ORDER BY min(id)"
    return [int(row[0]) for row in query(url, sql)]


class TestStatement:
    def test_placeholders_number_every_column_of_every_row(self) -> None:
        assert statement(2).endswith(b"VALUES ($1,$2,$3,$4,$5),($6,$7,$8,$9,$10)")
        assert ROWS_PER_STATEMENT * 5 <= 65_535  # parameters: PostgreSQL's limit

    def test_parameters_are_text_but_the_body_and_null_for_none(self) -> None:
        at = datetime(2026, 12, 4, 13, 5, 6, 123456, tzinfo=UTC)
        assert [b"r", b"2026-12-04T13:05:06.123456+00:00", None, b"::1", b"\x00{}"] == (
            parameters([("r", at, None, "::1", b"\x00{}")])
        )


class TestAppend:
    def test_rows_are_stored_exactly_as_given(self, pg_url: str) -> None:
        """Text, NULLs, times to the microsecond, and bodies byte for byte (NUL bytes, invalid
        UTF-8, a body of 4 MiB that the socket takes in several parts)."""
        inbox = make_inbox(pg_url)
        at = datetime(2026, 12, 4, 13, 5, 6, 123456, tzinfo=UTC)
        large = os.urandom(4 * 1024 * 1024)
        given = [
            (b'{"events": []}', V1, "127.0.0.1"),
            (b"\x00\xff\xfe not utf-8", None, None),
            (large, "application/json; charset=ütf-8", "2001:db8::1"),
        ]

        async def run() -> None:
            for one, content_type, remote_ip in given:
                await inbox.append(one, content_type, remote_ip, at)

        asyncio.run(run())
        inbox.close()
        assert [("r-1", at, c, r, b) for b, c, r in given] == [
            (receiver, received_at, content_type, remote_ip, bytes(body))
            for receiver, received_at, content_type, remote_ip, body in stored(pg_url)
        ]

    def test_appends_made_together_share_statements_of_a_bounded_size(
        self, pg_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """25 appends awaited together, with statements of at most 10 rows: 3 statements
        (one transaction each), every row once and in order."""
        monkeypatch.setattr(inbox_postgres, "ROWS_PER_STATEMENT", 10)
        inbox = make_inbox(pg_url)
        at = datetime.now(UTC)

        async def run() -> None:
            await inbox.append(b"alone", V1, None, at)
            await asyncio.gather(*(inbox.append(b"%d" % n, V1, None, at) for n in range(25)))

        asyncio.run(run())
        inbox.close()
        assert [1, 10, 10, 5] == statement_sizes(pg_url)
        assert [b"alone"] + [b"%d" % n for n in range(25)] == [
            bytes(row[4]) for row in stored(pg_url)
        ]

    def test_a_connection_postgresql_ended_meanwhile_is_replaced_without_a_refusal(
        self, pg_url: str
    ) -> None:
        """Between two appends PostgreSQL ends the session (a restart, a failover, an idle
        timeout): the next append is sent again on a new connection and stored, once."""
        inbox = make_inbox(pg_url)
        retries: list[str] = []
        inbox.on_retry(retries.append)
        libpq = _libpq(pg_url)
        at = datetime.now(UTC)

        async def run() -> None:
            await inbox.append(b"before", V1, None, at)
            with psycopg.connect(libpq, autocommit=True) as admin:
                ended = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchone()
            assert ended is not None
            assert 1 == ended[0]
            await inbox.append(b"after", V1, None, at)

        try:
            asyncio.run(run())
        finally:
            inbox.close()
        assert [b"before", b"after"] == [bytes(row[4]) for row in stored(pg_url)]
        assert ["reconnected"] == retries

    def test_a_refused_statement_is_unavailable_and_the_next_append_reconnects(
        self, pg_url: str
    ) -> None:
        """The database set read-only (a failover's standby): the append answers
        StoreUnavailable, caused by the server's own error class (its ended connection
        replaced first), as does the next; set writable again, the next append succeeds."""
        inbox = make_inbox(pg_url)
        libpq = _libpq(pg_url)
        name = psycopg.conninfo.conninfo_to_dict(libpq)["dbname"]
        at = datetime.now(UTC)

        def read_only(on: bool) -> None:
            with psycopg.connect(libpq, autocommit=True) as admin:
                admin.execute("SET default_transaction_read_only = off")  # this session's
                admin.execute(
                    f'ALTER DATABASE "{name}" SET default_transaction_read_only = {"on" if on else "off"}'
                )
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )

        async def run() -> None:
            await inbox.append(b"before", V1, None, at)
            read_only(True)
            for _ in range(2):  # the terminated connection, then a read-only one
                with pytest.raises(StoreUnavailable) as refused:
                    await inbox.append(b"refused", V1, None, at)
            assert isinstance(refused.value.__cause__, psycopg.errors.ReadOnlySqlTransaction)
            read_only(False)
            await inbox.append(b"after", V1, None, at)

        try:
            asyncio.run(run())
        finally:
            inbox.close()
            read_only(False)
        assert [b"before", b"after"] == [bytes(row[4]) for row in stored(pg_url)]

    def test_an_append_cut_short_marks_its_connection_broken(self, pg_url: str) -> None:
        """Cancelled while the server waits on a lock, an append leaves its connection out of
        step: the appender says so (PostgresInbox then replaces it). The lock released, the
        INSERT the server had received commits all the same."""
        libpq = _libpq(pg_url)
        at = datetime.now(UTC)

        async def run() -> None:
            connection = await psycopg.AsyncConnection.connect(libpq, autocommit=True)
            appender = Appender(connection)
            await appender.append([("r-1", at, V1, None, b"first")])
            assert not appender.broken
            with psycopg.connect(libpq) as locker:
                locker.execute("LOCK TABLE intake_inbox IN ACCESS EXCLUSIVE MODE")
                task = asyncio.create_task(appender.append([("r-1", at, V1, None, b"cut")]))
                await asyncio.sleep(0.3)
                assert not task.done()
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert appender.broken
            await connection.close()

        asyncio.run(run())
        wait_until(lambda: len(stored(pg_url)) == 2, timeout=10, what="the INSERT committed")
        assert [b"first", b"cut"] == [bytes(row[4]) for row in stored(pg_url)]

    def test_a_lone_row_goes_by_a_statement_prepared_once_per_connection(self, pg_url: str) -> None:
        """The registry's serial pace appends one row at a time: that INSERT is prepared on the
        connection's first append and reused; several rows go by a statement of their own."""
        at = datetime.now(UTC)

        async def run() -> list[tuple[Any, ...]]:
            connection = await psycopg.AsyncConnection.connect(_libpq(pg_url), autocommit=True)
            appender = Appender(connection)
            for n in range(3):
                await appender.append([("r-1", at, V1, None, b"%d" % n)])
            await appender.append([("r-1", at, V1, None, b"3"), ("r-1", at, V1, None, b"4")])
            cursor = await connection.execute("SELECT name, statement FROM pg_prepared_statements")
            prepared = await cursor.fetchall()
            await connection.close()
            return prepared

        prepared = asyncio.run(run())
        assert [("intake_append", statement(1).decode())] == prepared
        assert [b"0", b"1", b"2", b"3", b"4"] == [bytes(row[4]) for row in stored(pg_url)]

    def test_a_failed_statement_raises_the_class_of_its_sqlstate(self, pg_url: str) -> None:
        """The table gone (renamed here): UndefinedTable, with the server's message, and the
        appender broken."""
        libpq = _libpq(pg_url)
        at = datetime.now(UTC)

        async def run() -> None:
            connection = await psycopg.AsyncConnection.connect(libpq, autocommit=True)
            appender = Appender(connection)
            with pytest.raises(psycopg.errors.UndefinedTable, match="intake_inbox"):
                await appender.append([("r-1", at, V1, None, b"lost")])
            assert appender.broken
            await connection.close()

        with psycopg.connect(libpq, autocommit=True) as admin:
            admin.execute("ALTER TABLE intake_inbox RENAME TO intake_inbox_away")
            try:
                asyncio.run(run())
            finally:
                admin.execute("ALTER TABLE intake_inbox_away RENAME TO intake_inbox")
