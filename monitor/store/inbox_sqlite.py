"""The intake inbox in an SQLite file: beside an SQLite store (`<store>.intake`), or a file of
the replica's own (`notifications.inbox_file`, either store), written only by the event loop;
the applied cursor is committed in the store (see inbox.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy.orm import Session

from monitor.errors import StoreUnavailable
from monitor.store.dialect import upsert
from monitor.store.engine import SessionFactory
from monitor.store.inbox import (
    DELETE_PER_APPEND,
    SQLITE_INBOX,
    Fetched,
    InboxItem,
    Pending,
    fetched,
    unavailable,
    within_bytes,
)
from monitor.store.schema import IntakeAppliedRow


def _save_cursor(dialect: str) -> Any:
    statement = upsert(dialect, IntakeAppliedRow).values(
        inbox=bindparam("inbox"), last_id=bindparam("last_id"), applied_at=bindparam("applied_at")
    )
    return statement.on_conflict_do_update(
        index_elements=["inbox"],
        set_={"last_id": statement.excluded.last_id, "applied_at": statement.excluded.applied_at},
    )


# Built once: compiling it per batch cost more than running it.
_SAVE_CURSOR = {dialect: _save_cursor(dialect) for dialect in ("sqlite", "postgresql")}

INBOX_CACHE_KIB = 256
"""SQLite's page cache for each connection to the file (its default is 2,000 KiB). The file
is written at its end and read just behind it, so the pages in use are the last few commit
groups'; older ones are read again from the operating system's cache. With the default, the
writer's and the applier's connections each grew to 2 MiB once the applier fell behind."""

WAL_LIMIT_BYTES = 16 * 1024 * 1024
"""What the file's write-ahead log is cut back to when it starts over after it grew (while a
reader kept it from starting over); otherwise it would stay at its largest on disk, reused.
The cut is one truncate, on the commit that starts the log over: about 0.2 ms per MiB cut here
(10.2 ms from 64 MiB, 121.6 ms from 640 MiB)."""

BUSY_RETRY_SECONDS = 0.5
"""How long a commit the file refuses as locked is tried again before its answers are `503`.
Only `serve` writes the file, but SQLite's other connections to it (the applier reading it, a
checkpoint) take its write lock for a moment when they read the log's index header while a
commit is rewriting it (wal.c, `walIndexReadHdr`: "it might have been due to a race with a
writer. So get a WRITE lock and try again"); a reader descheduled in that moment holds the lock
longer. One such refusal answered `503` in a busy phase of `bench.scale intake`. Each try is a
callback of its own (`BUSY_RETRY_STEPS`), so the event loop never waits on the lock."""

BUSY_RETRY_STEPS = (0.001, 0.002, 0.005, 0.01, 0.02)
"""Seconds before each try again (the last one repeats)."""

CHECKPOINT_EVERY = 256
CHECKPOINT_BYTES = 4 * 1024 * 1024
"""The event loop checkpoints the file itself (see `SqliteInbox._checkpoint`) after this many
commits, or bodies of this many bytes, since its last checkpoint."""


class SqliteInbox:
    """`own`: a file named by `notifications.inbox_file` rather than the one beside an SQLite
    store; its cursor in the store is keyed by an identity the file is given when it is
    created, so the files of several replicas (the same path on different machines) never
    share one, and a file replaced by a new one starts a cursor of its own."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str,
        session_factory: SessionFactory,
        dialect: str = "sqlite",
        own: bool = False,
    ) -> None:
        self.path = path
        self._synchronous = synchronous.upper()
        self._session_factory = session_factory
        self._save_cursor = _SAVE_CURSOR[dialect]
        self._own = own
        self.key = SQLITE_INBOX  # the cursor's key in `intake_applied` (an own file's: opened)
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._pending = Pending()
        self._callbacks: list[Callable[[], None]] = []
        self._retry_callbacks: list[Callable[[str], None]] = []
        self._last_id = 0  # newest body committed (event loop)
        self._applied_id = 0  # newest body applied (applier thread)
        self._deleted_id = 0  # bodies up to here are gone from the file (event loop)
        self._commits_since_checkpoint = 0  # since the event loop's last checkpoint
        self._bytes_since_checkpoint = 0
        self._busy_since: float | None = None  # when the file first refused the pending commit
        self._busy_tries = 0

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
        if self._own:
            self._writer.execute("CREATE TABLE IF NOT EXISTS intake_identity (key TEXT NOT NULL)")
            if self._writer.execute("SELECT key FROM intake_identity").fetchone() is None:
                self._writer.execute(
                    "INSERT INTO intake_identity (key) VALUES (?)", (f"file:{uuid.uuid4().hex}",)
                )
        self._reader = self._connect()
        self.key = self._identity(self._reader)
        with self._session_factory() as session:
            applied = session.get(IntakeAppliedRow, self.key)
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

    def open_applying(self) -> None:
        """Opens the file to read and resumes after the applied cursor (idempotent)."""
        if self._reader is not None:
            return
        self._reader = self._connect()
        self.key = self._identity(self._reader)
        with self._session_factory() as session:
            applied = session.get(IntakeAppliedRow, self.key)
        self._applied_id = applied.last_id if applied is not None else 0

    def _identity(self, connection: sqlite3.Connection) -> str:
        if not self._own:
            return SQLITE_INBOX
        row = connection.execute("SELECT key FROM intake_identity").fetchone()
        if row is None:
            raise StoreUnavailable(f"the intake inbox {self.path} has no identity")
        return str(row[0])

    def _connect(self) -> sqlite3.Connection:
        # Only this process writes the file: a lock held elsewhere never holds the event loop
        # waiting; the commit is tried again by later callbacks (`BUSY_RETRY_SECONDS`), then
        # answered 503 (the registry sends it again).
        connection = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=0.0
        )
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={self._synchronous}")
        connection.execute(f"PRAGMA cache_size=-{INBOX_CACHE_KIB}")
        connection.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
        return connection

    def on_retry(self, callback: Callable[[str], None]) -> None:
        self._retry_callbacks.append(callback)

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
        pending, self._pending = self._pending, Pending()
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
            if not (_locked(exc) and self._try_again(pending)):
                self._busy_since, self._busy_tries = None, 0
                pending.settle(unavailable(exc))
            return
        self._busy_since, self._busy_tries = None, 0
        self._deleted_id = max(self._deleted_id, upto)
        if last:
            self._last_id = max(self._last_id, last)
        else:  # executemany leaves lastrowid unset on some versions; ids are dense here
            self._last_id += len(pending.rows)
        pending.settle(None)
        for callback in self._callbacks:
            callback()
        self._commits_since_checkpoint += 1
        self._bytes_since_checkpoint += sum(len(row[3]) for row in pending.rows)
        if (
            self._commits_since_checkpoint >= CHECKPOINT_EVERY
            or self._bytes_since_checkpoint >= CHECKPOINT_BYTES
        ):
            self._commits_since_checkpoint = self._bytes_since_checkpoint = 0
            with contextlib.suppress(RuntimeError):  # no running loop: closing
                asyncio.get_running_loop().call_soon(self._checkpoint)

    def _try_again(self, pending: Pending) -> bool:
        """Puts `pending` back to be committed by a later callback, with what is appended
        meanwhile, while `BUSY_RETRY_SECONDS` have not passed since the first refusal."""
        now = time.monotonic()
        if self._busy_since is None:
            self._busy_since = now
        elif now - self._busy_since >= BUSY_RETRY_SECONDS:
            return False
        pending.rows.extend(self._pending.rows)
        pending.futures.extend(self._pending.futures)
        self._pending = pending
        delay = BUSY_RETRY_STEPS[min(self._busy_tries, len(BUSY_RETRY_STEPS) - 1)]
        self._busy_tries += 1
        asyncio.get_running_loop().call_later(delay, self._commit)
        for callback in self._retry_callbacks:
            callback("locked")
        return True

    def _checkpoint(self) -> None:
        """Brings the file up to date with its write-ahead log, so that the next commit starts
        the log over and writes over the file's first pages instead of lengthening it.

        The applier's checkpoints alone do not get there while appends keep coming: one that
        an append overtakes leaves the log ahead of the file, and the log grows (639 MB in
        15 minutes of 1,000 appends a second), each commit then lengthening the file, which
        makes its sync wait for the file system's journal. Run here, between two commits, it
        finds only what was appended since the applier's last one: 0.5 ms at the median and
        3.1 ms at most at c=1 on an empty store; 1.0, 6.1 (p99) and 13.2 ms over the 3,858 of
        a busy phase on 10M events. It runs after the answers of the commit before it are on
        their way. A checkpoint already running (the applier's) makes it give up at once,
        and a reader in the log makes it stop short: the next one tries again."""
        if self._writer is not None:
            with contextlib.suppress(sqlite3.Error):
                self._writer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def backlog(self) -> int:
        return max(self._last_id - self._applied_id, 0)

    def waiting(self, limit: int, now: datetime) -> int:
        assert self._reader is not None, "open() first"
        row = self._reader.execute(
            "SELECT count(*) FROM (SELECT 1 FROM intake_inbox WHERE id > ? LIMIT ?)",
            (self._applied_id, limit),
        ).fetchone()
        return int(row[0])

    def fetch(self, limit: int, now: datetime) -> Fetched:
        assert self._reader is not None, "open() first"
        sizes = self._reader.execute(
            "SELECT id, length(body) FROM intake_inbox WHERE id > ? ORDER BY id LIMIT ?",
            (self._applied_id, limit),
        ).fetchall()
        last = within_bytes(sizes)
        if last is None:
            return Fetched([], more=False)
        rows = self._reader.execute(
            "SELECT id, received_at, content_type, remote_ip, body FROM intake_inbox"
            " WHERE id > ? AND id <= ? ORDER BY id",
            (self._applied_id, last),
        ).fetchall()
        items = [
            InboxItem(
                id=row[0],
                received_at=datetime.fromtimestamp(row[1], UTC),
                content_type=row[2],
                remote_ip=row[3],
                body=bytes(row[4]),
            )
            for row in rows
        ]
        return fetched(items, sizes, limit)

    def record_applied(self, session: Session, items: Sequence[InboxItem], now: datetime) -> None:
        session.execute(
            self._save_cursor,
            {"inbox": self.key, "last_id": max(item.id for item in items), "applied_at": now},
        )

    def applied(self, items: Sequence[InboxItem]) -> None:
        self.note_applied(len(items), max(item.id for item in items))
        if self._reader is not None:
            # Keep the file's write-ahead log short, off the event loop.
            with contextlib.suppress(sqlite3.Error):
                self._reader.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def note_applied(self, count: int, last_id: int) -> None:
        self._applied_id = max(self._applied_id, last_id)

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


def _locked(exc: sqlite3.Error) -> bool:
    """SQLITE_BUSY, whatever its extended code: another connection holds the lock."""
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY
