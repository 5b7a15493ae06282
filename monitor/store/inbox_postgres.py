"""The PostgreSQL intake inbox: the store's `intake_inbox` table, appended through an
asynchronous connection on the event loop (inbox_append.py); rows leave with the transaction
that stored their events (see inbox.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from monitor.store.engine import SessionFactory
from monitor.store.inbox import (
    ORPHAN_AFTER,
    Fetched,
    InboxItem,
    Pending,
    fetched,
    unavailable,
    within_bytes,
)
from monitor.store.inbox_append import ROWS_PER_STATEMENT, Appender
from monitor.store.schema import IntakeInboxRow


class PostgresInbox:
    def __init__(self, conninfo: str, *, receiver: str, session_factory: SessionFactory) -> None:
        self._conninfo = conninfo
        self._receiver = receiver
        self._session_factory = session_factory
        self._appender: Appender | None = None
        self._pending = Pending()
        self._flushing: asyncio.Task[None] | None = None
        self._callbacks: list[Callable[[], None]] = []
        self._retry_callbacks: list[Callable[[str], None]] = []
        self._appended = 0
        self._applied = 0

    def open(self) -> None:
        """Checks that the store has the inbox table; appends connect on first use."""
        table = IntakeInboxRow.__table__
        with self._session_factory() as session:
            session.execute(select(table.c.id).limit(1)).all()

    def open_applying(self) -> None:
        self.open()

    def on_retry(self, callback: Callable[[str], None]) -> None:
        self._retry_callbacks.append(callback)

    def on_append(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    async def append(
        self, body: bytes, content_type: str | None, remote_ip: str | None, received_at: datetime
    ) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending.rows.append((self._receiver, received_at, content_type, remote_ip, body))
        self._pending.futures.append(future)
        if self._flushing is None:
            self._flushing = loop.create_task(self._flush())
        await future

    async def _flush(self) -> None:
        """Commits what is pending; appends made meanwhile go into the next commit."""
        try:
            while self._pending.futures:
                pending, self._pending = self._pending, Pending()
                for part in pending.split(ROWS_PER_STATEMENT):
                    error = await self._append(part.rows)
                    if error is not None:
                        part.settle(unavailable(error))
                        continue
                    self._appended += len(part.rows)
                    part.settle(None)
                    for callback in self._callbacks:
                        callback()
        finally:
            self._flushing = None

    async def _append(self, rows: list[tuple[Any, ...]]) -> psycopg.Error | None:
        """Appends `rows`; the error when they could not be. A connection that was already
        open when it failed (PostgreSQL restarted or failed over meanwhile, or ended the
        session as idle) is replaced and the rows sent once more on the new one, so that
        neither costs the registry a refused delivery. Should the first attempt have committed
        before its answer was lost, the body is in the inbox twice and its events are stored
        once (they are keyed by their id)."""
        current = self._appender
        reused = current is not None and not current.broken and not current.connection.closed
        error = await self._attempt(rows)
        if error is not None and reused:
            for callback in self._retry_callbacks:
                callback("reconnected")
            error = await self._attempt(rows)  # on a new connection
        return error

    async def _attempt(self, rows: list[tuple[Any, ...]]) -> psycopg.Error | None:
        try:
            appender = await self._connect()
            await appender.append(rows)
        except psycopg.Error as exc:
            await self._discard()
            return exc
        return None

    async def _connect(self) -> Appender:
        if self._appender is not None and self._appender.broken:  # cut short by a cancel
            self.close()
        if self._appender is None or self._appender.connection.closed:
            connection = await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, connect_timeout=5
            )
            self._appender = Appender(connection)
        return self._appender

    async def _discard(self) -> None:
        """A failed connection (down, read-only, failed over, or a statement cut short) is
        never used again."""
        appender, self._appender = self._appender, None
        if appender is not None:
            with contextlib.suppress(psycopg.Error):
                await appender.connection.close()

    def backlog(self) -> int:
        return max(self._appended - self._applied, 0)

    def _mine(self, now: datetime) -> Any:
        """This replica's bodies, and those a stopped replica left (older than ORPHAN_AFTER)."""
        table = IntakeInboxRow.__table__
        return (table.c.receiver == self._receiver) | (table.c.received_at < now - ORPHAN_AFTER)

    def waiting(self, limit: int, now: datetime) -> int:
        table = IntakeInboxRow.__table__
        mine = select(table.c.id).where(self._mine(now)).limit(limit).subquery()
        with self._session_factory() as session:
            return int(session.execute(select(func.count()).select_from(mine)).scalar_one())

    def fetch(self, limit: int, now: datetime) -> Fetched:
        table = IntakeInboxRow.__table__
        with self._session_factory() as session:
            sizes = session.execute(
                select(table.c.id, func.octet_length(table.c.body))
                .where(self._mine(now))
                .order_by(table.c.id)
                .limit(limit)
            ).all()
            last = within_bytes([(row[0], row[1]) for row in sizes])
            if last is None:
                return Fetched([], more=False)
            rows = session.execute(
                select(
                    table.c.id,
                    table.c.received_at,
                    table.c.content_type,
                    table.c.remote_ip,
                    table.c.body,
                )
                .where(self._mine(now), table.c.id <= last)
                .order_by(table.c.id)
            ).all()
        items = [
            InboxItem(
                id=row.id,
                received_at=row.received_at,
                content_type=row.content_type,
                remote_ip=row.remote_ip,
                body=bytes(row.body),
            )
            for row in rows
        ]
        return fetched(items, sizes, limit)

    def record_applied(self, session: Session, items: Sequence[InboxItem], now: datetime) -> None:
        session.execute(
            delete(IntakeInboxRow).where(IntakeInboxRow.id.in_([item.id for item in items]))
        )

    def applied(self, items: Sequence[InboxItem]) -> None:
        self.note_applied(len(items), max(item.id for item in items))

    def note_applied(self, count: int, last_id: int) -> None:
        self._applied += count

    def readiness(self) -> str | None:
        return None  # the store's own check covers the same database

    def close(self) -> None:
        """Closes the appending connection (once no request is being answered)."""
        appender, self._appender = self._appender, None
        if appender is not None and not appender.connection.closed:
            appender.connection.pgconn.finish()
