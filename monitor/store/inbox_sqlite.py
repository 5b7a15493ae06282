"""The intake inbox in SQLite files: beside an SQLite store (`<store>.intake` and
`<store>.intake-2`), or files of the replica's own (`notifications.inbox_file` and the same
name ending `-2`, either store), written only by the event loop, one file at a time (they take
turns, inbox_turns.py); the applied cursor is committed in the store (see inbox.py). Bodies are
numbered by the event loop across both files, so the applier reads them in order from both."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import bindparam
from sqlalchemy.orm import Session

from monitor import inbox_files
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
from monitor.store.inbox_turns import Turns
from monitor.store.schema import IntakeAppliedRow

log = structlog.get_logger(__name__)


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
The cut is one truncate, on the commit that starts the log over, which is the thread's of
inbox_turns.py: about 0.2 ms per MiB cut here (10.2 ms from 64 MiB, 121.6 ms from 640 MiB)."""

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

GAP_SECONDS = 2.0
"""How long the applier waits for a body numbered below one it found (committed to the other
file just after it read that one) before it takes the gap for ids never assigned."""

_SIZES = "SELECT id, length(body) FROM intake_inbox WHERE id > ? ORDER BY id LIMIT ?"
_ROWS = (
    "SELECT id, received_at, content_type, remote_ip, body FROM intake_inbox"
    " WHERE id > ? AND id <= ? ORDER BY id"
)


class SqliteInbox:
    """`own`: files named by `notifications.inbox_file` rather than the ones beside an SQLite
    store; its cursor in the store is keyed by an identity the first file is given when it is
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
        self.paths = (path, inbox_files.second(path))
        self._synchronous = synchronous.upper()
        self._session_factory = session_factory
        self._save_cursor = _SAVE_CURSOR[dialect]
        self._own = own
        self.key = SQLITE_INBOX  # the cursor's key in `intake_applied` (an own file's: opened)
        self._writers: list[sqlite3.Connection] = []
        self._readers: list[sqlite3.Connection] = []
        self._turns: Turns | None = None
        self._pending = Pending()
        self._callbacks: list[Callable[[], None]] = []
        self._retry_callbacks: list[Callable[[str], None]] = []
        self._last_id = 0  # newest body committed (event loop)
        self._applied_id = 0  # newest body applied (applier thread)
        self._busy_since: float | None = None  # when the file first refused the pending commit
        self._busy_tries = 0
        self._gap_since: float | None = None  # when the applier first found a gap (its side)

    def open(self) -> None:
        """Creates or opens the files and resumes after the applied cursor (idempotent)."""
        if self._writers:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writers = [self._create(path) for path in self.paths]
        first = self._writers[0]
        if self._own:
            first.execute("CREATE TABLE IF NOT EXISTS intake_identity (key TEXT NOT NULL)")
            if first.execute("SELECT key FROM intake_identity").fetchone() is None:
                first.execute(
                    "INSERT INTO intake_identity (key) VALUES (?)", (f"file:{uuid.uuid4().hex}",)
                )
        self._readers = [self._connect(path) for path in self.paths]
        self.key = self._identity(self._readers[0])
        with self._session_factory() as session:
            applied = session.get(IntakeAppliedRow, self.key)
        self._applied_id = applied.last_id if applied is not None else 0
        # A new or replaced file: new bodies number above what was applied.
        self._last_id = max(self._applied_id, *(_newest(w) for w in self._writers))
        for writer in self._writers:
            writer.execute("DELETE FROM intake_inbox WHERE id <= ?", (self._applied_id,))
        self._turns = Turns(self.paths, self._writers, lambda: self._applied_id)
        self._turns.deleted_upto = [self._applied_id, self._applied_id]
        self._turns.start()

    def open_applying(self) -> None:
        """Opens the files to read and resumes after the applied cursor (idempotent)."""
        if self._readers:
            return
        self._readers = [self._connect(path) for path in self.paths]
        self.key = self._identity(self._readers[0])
        with self._session_factory() as session:
            applied = session.get(IntakeAppliedRow, self.key)
        self._applied_id = applied.last_id if applied is not None else 0

    def _create(self, path: Path) -> sqlite3.Connection:
        connection = self._connect(path)
        connection.execute(
            "CREATE TABLE IF NOT EXISTS intake_inbox ("
            " id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " received_at REAL NOT NULL, content_type TEXT, remote_ip TEXT,"
            " body BLOB NOT NULL)"
        )
        # Checkpoints run on the thread of inbox_turns.py, never inside an answer's commit.
        connection.execute("PRAGMA wal_autocheckpoint=0")
        return connection

    def _identity(self, connection: sqlite3.Connection) -> str:
        if not self._own:
            return SQLITE_INBOX
        row = connection.execute("SELECT key FROM intake_identity").fetchone()
        if row is None:
            raise StoreUnavailable(f"the intake inbox {self.path} has no identity")
        return str(row[0])

    def _connect(self, path: Path) -> sqlite3.Connection:
        # Only this process writes the files: a lock held elsewhere never holds the event loop
        # waiting; the commit is tried again by later callbacks (`BUSY_RETRY_SECONDS`), then
        # answered 503 (the registry sends it again).
        connection = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=0.0
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
        """Every body appended during this turn of the loop, in one transaction of the file
        whose turn it is, numbered after the last one committed to either file."""
        pending, self._pending = self._pending, Pending()
        turns = self._turns
        if turns is None:
            pending.settle(StoreUnavailable("the intake inbox is closed"))
            return
        connection, index = turns.writer(), turns.current
        first = self._last_id + 1
        rows = [(first + n, *row) for n, row in enumerate(pending.rows)]
        deleted = turns.deleted_upto[index]
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                upto = min(self._applied_id, deleted + DELETE_PER_APPEND)
                if upto > deleted:
                    connection.execute("DELETE FROM intake_inbox WHERE id <= ?", (upto,))
                connection.executemany(
                    "INSERT INTO intake_inbox (id, received_at, content_type, remote_ip, body)"
                    " VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
                connection.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            # A commit that failed may still have reached the file: never number again what it
            # holds.
            with contextlib.suppress(sqlite3.Error):
                self._last_id = max(self._last_id, _newest(connection))
            if not (_locked(exc) and self._try_again(pending)):
                self._busy_since, self._busy_tries = None, 0
                pending.settle(unavailable(exc))
            return
        self._busy_since, self._busy_tries = None, 0
        turns.deleted_upto[index] = max(deleted, upto)
        self._last_id = first + len(rows) - 1
        pending.settle(None)
        for callback in self._callbacks:
            callback()
        turns.committed(sum(len(row[3]) for row in pending.rows))

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

    def backlog(self) -> int:
        return max(self._last_id - self._applied_id, 0)

    def waiting(self, limit: int, now: datetime) -> int:
        assert self._readers, "open() first"
        return min(
            sum(
                int(
                    reader.execute(
                        "SELECT count(*) FROM (SELECT 1 FROM intake_inbox WHERE id > ? LIMIT ?)",
                        (self._applied_id, limit),
                    ).fetchone()[0]
                )
                for reader in self._readers
            ),
            limit,
        )

    def fetch(self, limit: int, now: datetime) -> Fetched:
        assert self._readers, "open() first"
        found = heapq.merge(
            *(r.execute(_SIZES, (self._applied_id, limit)).fetchall() for r in self._readers)
        )
        sizes = list(self._in_order(found, limit))
        last = within_bytes(sizes)
        if last is None:
            return Fetched([], more=self._gap_since is not None)
        rows = heapq.merge(
            *(r.execute(_ROWS, (self._applied_id, last)).fetchall() for r in self._readers)
        )
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
        batch = fetched(items, sizes, limit)
        return Fetched(batch.items, batch.more or self._gap_since is not None)

    def _in_order(self, found: Iterator[tuple[int, int]], limit: int) -> Iterator[tuple[int, int]]:
        """The bodies `found` (by id, from both files) that follow the applied cursor without
        a gap, at most `limit`. A gap is a body committed to the other file after that file
        was read: it is waited for (`more`) up to GAP_SECONDS, then taken for ids never
        assigned."""
        expected = self._applied_id + 1
        for count, (id_, size) in enumerate(found):
            if count >= limit:
                return
            if id_ != expected:
                now = time.monotonic()
                if self._gap_since is None:
                    self._gap_since = now
                if now - self._gap_since < GAP_SECONDS:
                    return
                log.warning("intake_inbox_gap", after=expected - 1, next=id_)
            self._gap_since = None
            expected = id_ + 1
            yield id_, size
        self._gap_since = None

    def record_applied(self, session: Session, items: Sequence[InboxItem], now: datetime) -> None:
        session.execute(
            self._save_cursor,
            {"inbox": self.key, "last_id": max(item.id for item in items), "applied_at": now},
        )

    def applied(self, items: Sequence[InboxItem]) -> None:
        # No checkpoint here: one that caught up with the file taking commits would have the
        # next commit start its log over, and that answer wait for the log header's sync too.
        # The file left behind at each turn is checkpointed by the thread of inbox_turns.py.
        self.note_applied(len(items), max(item.id for item in items))

    def note_applied(self, count: int, last_id: int) -> None:
        self._applied_id = max(self._applied_id, last_id)

    def readiness(self) -> str | None:
        if not self._writers:
            return "the intake inbox is closed"
        try:
            if self._writers[0].execute("PRAGMA query_only").fetchone()[0]:
                return "the intake inbox is query-only"
        except sqlite3.Error as exc:
            return f"the intake inbox does not answer ({type(exc).__name__})"
        for target in (*self.paths, self.path.parent):
            if target.exists() and not os.access(target, os.W_OK):
                return f"{target} is not writable"
        return None

    def close(self) -> None:
        """Closes the files (on the event loop's thread, or once no request is being answered)."""
        if self._pending.futures:
            self._commit()
        if self._turns is not None:
            self._turns.stop()
            self._turns = None
        for connection in (*self._writers, *self._readers):
            connection.close()
        self._writers, self._readers = [], []


def _newest(connection: sqlite3.Connection) -> int:
    """The highest id the file has numbered (its rows, or its sequence once they are gone)."""
    rows = connection.execute("SELECT max(id) FROM intake_inbox").fetchone()[0]
    sequence = connection.execute(
        "SELECT seq FROM sqlite_sequence WHERE name = 'intake_inbox'"
    ).fetchone()
    return max(int(rows or 0), int(sequence[0]) if sequence else 0)


def _locked(exc: sqlite3.Error) -> bool:
    """SQLITE_BUSY, whatever its extended code: another connection holds the lock."""
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY
