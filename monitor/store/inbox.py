"""The intake inbox: notification bodies made durable before they are answered.

`POST /v1/notifications` appends the raw body here and answers once it is committed; the
applier (monitor/pipeline/applier.py) parses the bodies and writes their events through the
store writer, and each body leaves the inbox in the transaction (or, with SQLite, with the
cursor committed in the transaction) that stored its events. So the answer costs one small
append whatever the store holds and whatever else writes to it (retention, detection, log
ingestion), and a crash at any point applies every accepted body exactly once.

- SQLite: the inbox is a database file of its own beside the store (`<store>.intake`), written
  only by the event loop (appends of one loop turn share a commit), so an append never waits
  for the store's write lock. The applied cursor lives in the store (`intake_applied`); applied
  bodies are deleted by later appends, a bounded range at a time.
- PostgreSQL: the `intake_inbox` table of the store, appended by an asynchronous connection on
  the event loop. Each replica applies the bodies it received, and any body older than
  `ORPHAN_AFTER` (left by a replica that stopped), deleting them as their events commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import psycopg
from sqlalchemy import Engine, bindparam, delete, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from monitor.errors import ConfigError, StoreUnavailable
from monitor.store.engine import SessionFactory
from monitor.store.schema import IntakeAppliedRow, IntakeInboxRow

ORPHAN_AFTER = timedelta(seconds=10)
DELETE_PER_APPEND = 512  # applied bodies deleted with one append, at most
SQLITE_INBOX = "notifications"  # the key of the SQLite inbox's cursor in `intake_applied`


@dataclasses.dataclass(frozen=True, slots=True)
class InboxItem:
    id: int
    received_at: datetime
    content_type: str | None
    remote_ip: str | None
    body: bytes


class Inbox(Protocol):
    """What intake, the applier and readiness use; built by `open_inbox`."""

    async def append(
        self, body: bytes, content_type: str | None, remote_ip: str | None, received_at: datetime
    ) -> None:
        """Durably store one body (raises StoreUnavailable when it cannot)."""

    def backlog(self) -> int:
        """Bodies accepted by this process and not yet applied."""

    def fetch(self, limit: int, now: datetime) -> list[InboxItem]:
        """The next bodies to apply, oldest first (the applier's thread)."""

    def record_applied(self, session: Session, items: Sequence[InboxItem], now: datetime) -> None:
        """In the transaction storing the events of `items`: mark them applied."""

    def applied(self, items: Sequence[InboxItem]) -> None:
        """After that transaction committed."""

    def readiness(self) -> str | None:
        """None when an append would succeed now; otherwise why not."""

    def on_append(self, callback: Callable[[], None]) -> None:
        """`callback` runs (on the event loop) after each commit of appended bodies."""

    def close(self) -> None: ...


class _Pending:
    """Appends waiting for the next commit, each with the future its request awaits."""

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self.futures: list[asyncio.Future[None]] = []

    def settle(self, error: BaseException | None) -> None:
        for future in self.futures:
            if future.done():  # the client went away; the body is stored all the same
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)


def _unavailable(exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(
        "the intake inbox could not commit", details={"error": type(exc).__name__}
    )


def _save_cursor() -> Any:
    statement = sqlite.insert(IntakeAppliedRow).values(
        inbox=bindparam("inbox"), last_id=bindparam("last_id"), applied_at=bindparam("applied_at")
    )
    return statement.on_conflict_do_update(
        index_elements=["inbox"],
        set_={"last_id": statement.excluded.last_id, "applied_at": statement.excluded.applied_at},
    )


_SAVE_CURSOR = _save_cursor()  # built once: compiling it per batch cost more than running it


class SqliteInbox:
    def __init__(self, path: Path, *, synchronous: str, session_factory: SessionFactory) -> None:
        self.path = path
        self._synchronous = synchronous.upper()
        self._session_factory = session_factory
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._pending = _Pending()
        self._callbacks: list[Callable[[], None]] = []
        self._last_id = 0  # newest body committed (event loop)
        self._applied_id = 0  # newest body applied (applier thread)
        self._deleted_id = 0  # bodies up to here are gone from the file (event loop)

    def open(self) -> None:
        """Creates or opens the file and resumes after the applied cursor (idempotent)."""
        if self._writer is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = self._connect()
        self._writer.executescript(
            "CREATE TABLE IF NOT EXISTS intake_inbox ("
            " id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " received_at REAL NOT NULL, content_type TEXT, remote_ip TEXT,"
            " body BLOB NOT NULL)"
        )
        # Checkpoints run on the applier's connection, never inside an answer's commit.
        self._writer.execute("PRAGMA wal_autocheckpoint=0")
        self._reader = self._connect()
        with self._session_factory() as session:
            applied = session.get(IntakeAppliedRow, SQLITE_INBOX)
        self._applied_id = applied.last_id if applied is not None else 0
        sequence = self._writer.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'intake_inbox'"
        ).fetchone()
        self._last_id = sequence[0] if sequence else 0
        if self._last_id < self._applied_id:
            # A new or replaced file: new bodies must number above what was applied.
            self._writer.execute(
                "INSERT OR REPLACE INTO sqlite_sequence (name, seq) VALUES ('intake_inbox', ?)",
                (self._applied_id,),
            )
            self._last_id = self._applied_id
        self._writer.execute("DELETE FROM intake_inbox WHERE id <= ?", (self._applied_id,))
        self._deleted_id = self._applied_id

    def _connect(self) -> sqlite3.Connection:
        # Only this process writes the file, so a lock held elsewhere is an outage: fail at
        # once (503, the registry retries) rather than hold the event loop waiting.
        connection = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=0.0
        )
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={self._synchronous}")
        return connection

    def on_append(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    async def append(
        self, body: bytes, content_type: str | None, remote_ip: str | None, received_at: datetime
    ) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if not self._pending.futures:
            loop.call_soon(self._commit)
        self._pending.rows.append((received_at.timestamp(), content_type, remote_ip, body))
        self._pending.futures.append(future)
        await future

    def _commit(self) -> None:
        """Every body appended during this turn of the loop, in one transaction."""
        pending, self._pending = self._pending, _Pending()
        connection = self._writer
        if connection is None:
            pending.settle(StoreUnavailable("the intake inbox is closed"))
            return
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                upto = min(self._applied_id, self._deleted_id + DELETE_PER_APPEND)
                if upto > self._deleted_id:
                    connection.execute("DELETE FROM intake_inbox WHERE id <= ?", (upto,))
                cursor = connection.executemany(
                    "INSERT INTO intake_inbox (received_at, content_type, remote_ip, body)"
                    " VALUES (?, ?, ?, ?)",
                    pending.rows,
                )
                last = cursor.lastrowid
                connection.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            pending.settle(_unavailable(exc))
            return
        self._deleted_id = max(self._deleted_id, upto)
        if last:
            self._last_id = max(self._last_id, last)
        else:  # executemany leaves lastrowid unset on some versions; ids are dense here
            self._last_id += len(pending.rows)
        pending.settle(None)
        for callback in self._callbacks:
            callback()

    def backlog(self) -> int:
        return max(self._last_id - self._applied_id, 0)

    def fetch(self, limit: int, now: datetime) -> list[InboxItem]:
        assert self._reader is not None, "open() first"
        rows = self._reader.execute(
            "SELECT id, received_at, content_type, remote_ip, body FROM intake_inbox"
            " WHERE id > ? ORDER BY id LIMIT ?",
            (self._applied_id, limit),
        ).fetchall()
        return [
            InboxItem(
                id=row[0],
                received_at=datetime.fromtimestamp(row[1], UTC),
                content_type=row[2],
                remote_ip=row[3],
                body=bytes(row[4]),
            )
            for row in rows
        ]

    def record_applied(self, session: Session, items: Sequence[InboxItem], now: datetime) -> None:
        session.execute(
            _SAVE_CURSOR,
            {"inbox": SQLITE_INBOX, "last_id": max(item.id for item in items), "applied_at": now},
        )

    def applied(self, items: Sequence[InboxItem]) -> None:
        self._applied_id = max(self._applied_id, max(item.id for item in items))
        if self._reader is not None:
            # Keep the file's write-ahead log short, off the event loop.
            with contextlib.suppress(sqlite3.Error):
                self._reader.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def readiness(self) -> str | None:
        if self._writer is None:
            return "the intake inbox is closed"
        try:
            if self._writer.execute("PRAGMA query_only").fetchone()[0]:
                return "the intake inbox is query-only"
        except sqlite3.Error as exc:
            return f"the intake inbox does not answer ({type(exc).__name__})"
        for target in (self.path, self.path.parent):
            if target.exists() and not os.access(target, os.W_OK):
                return f"{target} is not writable"
        return None

    def close(self) -> None:
        """Closes the file (on the event loop's thread, or once no request is being answered)."""
        if self._pending.futures:
            self._commit()
        for connection in (self._writer, self._reader):
            if connection is not None:
                connection.close()
        self._writer = self._reader = None


class PostgresInbox:
    def __init__(self, conninfo: str, *, receiver: str, session_factory: SessionFactory) -> None:
        self._conninfo = conninfo
        self._receiver = receiver
        self._session_factory = session_factory
        self._connection: psycopg.AsyncConnection[Any] | None = None
        self._pending = _Pending()
        self._flushing: asyncio.Task[None] | None = None
        self._callbacks: list[Callable[[], None]] = []
        self._appended = 0
        self._applied = 0

    def open(self) -> None:
        """Checks that the store has the inbox table; appends connect on first use."""
        table = IntakeInboxRow.__table__
        with self._session_factory() as session:
            session.execute(select(table.c.id).limit(1)).all()

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
                pending, self._pending = self._pending, _Pending()
                try:
                    connection = await self._connect()
                    async with connection.cursor() as cursor:
                        await cursor.executemany(
                            "INSERT INTO intake_inbox"
                            " (receiver, received_at, content_type, remote_ip, body)"
                            " VALUES (%s, %s, %s, %s, %s)",
                            pending.rows,
                        )
                except psycopg.Error as exc:
                    await self._discard()
                    pending.settle(_unavailable(exc))
                    continue
                self._appended += len(pending.rows)
                pending.settle(None)
                for callback in self._callbacks:
                    callback()
        finally:
            self._flushing = None

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        if self._connection is None or self._connection.closed:
            self._connection = await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, connect_timeout=5
            )
        return self._connection

    async def _discard(self) -> None:
        """A failed connection (down, read-only, failed over) is never used again."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(psycopg.Error):
                await connection.close()

    def backlog(self) -> int:
        return max(self._appended - self._applied, 0)

    def fetch(self, limit: int, now: datetime) -> list[InboxItem]:
        table = IntakeInboxRow.__table__
        with self._session_factory() as session:
            rows = session.execute(
                select(
                    table.c.id,
                    table.c.received_at,
                    table.c.content_type,
                    table.c.remote_ip,
                    table.c.body,
                )
                .where(
                    (table.c.receiver == self._receiver)
                    | (table.c.received_at < now - ORPHAN_AFTER)
                )
                .order_by(table.c.id)
                .limit(limit)
            ).all()
        return [
            InboxItem(
                id=row.id,
                received_at=row.received_at,
                content_type=row.content_type,
                remote_ip=row.remote_ip,
                body=bytes(row.body),
            )
            for row in rows
        ]

    def record_applied(self, session: Session, items: Sequence[InboxItem], now: datetime) -> None:
        session.execute(
            delete(IntakeInboxRow).where(IntakeInboxRow.id.in_([item.id for item in items]))
        )

    def applied(self, items: Sequence[InboxItem]) -> None:
        self._applied += len(items)

    def readiness(self) -> str | None:
        return None  # the store's own check covers the same database

    def close(self) -> None:
        """Closes the appending connection (once no request is being answered)."""
        connection, self._connection = self._connection, None
        if connection is not None and not connection.closed:
            connection.pgconn.finish()


def inbox_path(database: str) -> Path:
    """Where the SQLite store at `database` keeps its intake inbox: `<store>.intake`."""
    path = Path(database)
    return path.with_name(path.name + ".intake")


def make_inbox(
    engine: Engine, session_factory: SessionFactory, *, synchronous: str, receiver: str
) -> SqliteInbox | PostgresInbox:
    """The inbox beside the store `engine` opens (not opened yet)."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            raise ConfigError(
                "database.url",
                "notifications need an SQLite store in a file (the intake inbox is kept beside it)",
            )
        return SqliteInbox(
            inbox_path(database), synchronous=synchronous, session_factory=session_factory
        )
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return PostgresInbox(conninfo, receiver=receiver, session_factory=session_factory)
