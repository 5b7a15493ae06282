"""An inbox file of the replica's own (`notifications.inbox_file`) beside PostgreSQL, which
also applies what the store's `intake_inbox` table holds for no running replica: bodies a
replica answered for through the table and left when it stopped (before it was given a file,
or one still without a file). Without this, every replica of a deployment that moved to
files would leave those bodies in the table for good.

The table is looked at by the applier, at most once every `ORPHAN_AFTER` (one query; never
on the event loop, never on an answer's path), for bodies older than that and for any under
this replica's own receiver name, as a replica appending to the table adopts them. Its
bodies go to the applier with id 0, so a report of what was applied never moves the file's
cursor; they leave the table in the transaction that stored their events.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from monitor.store.inbox import ORPHAN_AFTER, Fetched, InboxItem
from monitor.store.inbox_postgres import PostgresInbox
from monitor.store.inbox_sqlite import SqliteInbox


class AdoptingInbox:
    """`file` takes every append; the applier's batches come from it, and from `table` when
    it holds orphaned bodies."""

    def __init__(self, file: SqliteInbox, table: PostgresInbox) -> None:
        self.file = file
        self._table = table
        self._table_due: datetime | None = None  # next look at the table (None: at once)
        self._adopted: tuple[list[InboxItem], list[InboxItem]] | None = None  # (given, real)

    def open(self) -> None:
        self.file.open()
        self._table.open()

    def open_applying(self) -> None:
        self.file.open_applying()
        self._table.open_applying()

    async def append(
        self, body: bytes, content_type: str | None, remote_ip: str | None, received_at: datetime
    ) -> None:
        await self.file.append(body, content_type, remote_ip, received_at)

    def backlog(self) -> int:
        return self.file.backlog()

    def waiting(self, limit: int, now: datetime) -> int:
        return self.file.waiting(limit, now)

    def fetch(self, limit: int, now: datetime) -> Fetched:
        if self._table_due is None or now >= self._table_due:
            orphans = self._table.fetch(limit, now)
            # While the table yields bodies, look again at the next fetch.
            self._table_due = now if orphans.items else now + ORPHAN_AFTER
            if orphans.items:
                given = [dataclasses.replace(item, id=0) for item in orphans.items]
                self._adopted = (given, orphans.items)
                return Fetched(given, more=True)  # the file's bodies come next, at once
        return self.file.fetch(limit, now)

    def _real(self, items: Sequence[InboxItem]) -> list[InboxItem] | None:
        """The table's bodies behind `items` when they are the batch adopted from it."""
        if self._adopted is not None and items is self._adopted[0]:
            return self._adopted[1]
        return None

    def record_applied(self, session: Session, items: Sequence[InboxItem], now: datetime) -> None:
        real = self._real(items)
        if real is None:
            self.file.record_applied(session, items, now)
        else:
            self._table.record_applied(session, real, now)

    def applied(self, items: Sequence[InboxItem]) -> None:
        if self._real(items) is None:
            self.file.applied(items)
        else:
            self._adopted = None

    def note_applied(self, count: int, last_id: int) -> None:
        self.file.note_applied(count, last_id)

    def readiness(self) -> str | None:
        return self.file.readiness()

    def on_append(self, callback: Callable[[], None]) -> None:
        self.file.on_append(callback)

    def on_retry(self, callback: Callable[[str], None]) -> None:
        self.file.on_retry(callback)

    def close(self) -> None:
        self.file.close()
        self._table.close()
