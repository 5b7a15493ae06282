"""The intake inbox: notification bodies made durable before they are answered.

`POST /v1/notifications` appends the raw body here and answers once it is committed; the
applier (monitor/pipeline/applier.py) parses the bodies and writes their events through the
store writer, and each body leaves the inbox in the transaction (or, with SQLite, with the
cursor committed in the transaction) that stored its events. So the answer costs one small
append whatever the store holds and whatever else writes to it (retention, detection, log
ingestion), and a crash at any point applies every accepted body exactly once.

- SQLite: the inbox is two database files of its own beside the store (`<store>.intake` and
  `<store>.intake-2`, taking turns: inbox_turns.py), written only by the event loop (appends
  of one loop turn share a commit), so an append never waits for the store's write lock. The
  applied cursor lives in the store (`intake_applied`); applied bodies are deleted by later
  appends, a bounded range at a time, and when a file is started over.
- PostgreSQL: the `intake_inbox` table of the store, appended by an asynchronous connection on
  the event loop (inbox_append.py). Each replica applies the bodies it received, and any body
  older than `ORPHAN_AFTER` (left by a replica that stopped), deleting them as their events
  commit.
- `notifications.inbox_file`, either store: an SQLite file of the replica's own, as beside an
  SQLite store, its cursor in `intake_applied` keyed by an identity kept in the file. Beside
  PostgreSQL its applier also adopts the table's orphaned bodies (inbox_adopting.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.orm import Session

from monitor import inbox_files
from monitor.errors import StoreUnavailable

ORPHAN_AFTER = timedelta(seconds=10)
BATCH_BYTES = 8 * 1024 * 1024  # bodies fetched at once, at most (beyond the first body)
DELETE_PER_APPEND = 512  # applied bodies deleted with one append, at most
SQLITE_INBOX = "notifications"  # the key of the SQLite inbox's cursor in `intake_applied`


@dataclasses.dataclass(frozen=True, slots=True)
class InboxItem:
    id: int
    received_at: datetime
    content_type: str | None
    remote_ip: str | None
    body: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Fetched:
    """A batch of bodies to apply. `more`: when they were fetched the inbox held bodies beyond
    them (the batch was cut at its `limit` or at BATCH_BYTES), so the applier fetches again at
    once; otherwise it was all that waited, and what comes meanwhile waits for the next
    gathering."""

    items: list[InboxItem]
    more: bool


class Inbox(Protocol):
    """What intake, the applier and readiness use; built by `make_inbox`."""

    def open(self) -> None:
        """Ready to append and fetch (idempotent; the applier's thread or before it starts)."""

    def open_applying(self) -> None:
        """Ready to fetch only: the applier's side in a process of its own, which never writes
        the inbox itself (the appending process opened it first)."""

    async def append(
        self, body: bytes, content_type: str | None, remote_ip: str | None, received_at: datetime
    ) -> None:
        """Durably store one body (raises StoreUnavailable when it cannot)."""

    def backlog(self) -> int:
        """Bodies accepted by this process and not yet applied (no query: for `/metrics`)."""

    def waiting(self, limit: int, now: datetime) -> int:
        """Bodies the applier would fetch now, counted up to `limit` (a query, on the
        applier's thread)."""

    def fetch(self, limit: int, now: datetime) -> Fetched:
        """The next bodies to apply, oldest first, at most `limit` and BATCH_BYTES of them
        (at least one): large bodies never make a batch that does not fit in memory."""

    def record_applied(self, session: Session, items: Sequence[InboxItem], now: datetime) -> None:
        """In the transaction storing the events of `items`: mark them applied."""

    def applied(self, items: Sequence[InboxItem]) -> None:
        """After that transaction committed (the applier's side; calls `note_applied`)."""

    def note_applied(self, count: int, last_id: int) -> None:
        """`count` bodies up to `last_id` were applied (by this process or its applier's)."""

    def readiness(self) -> str | None:
        """None when an append would succeed now; otherwise why not."""

    def on_append(self, callback: Callable[[], None]) -> None:
        """`callback` runs (on the event loop) after each commit of appended bodies."""

    def on_retry(self, callback: Callable[[str], None]) -> None:
        """`callback(reason)` runs (on the event loop) each time a commit of appended bodies is
        tried again instead of refused: `locked` (an inbox file refused it as locked) or
        `reconnected` (PostgreSQL's connection had failed; sent again on a new one)."""

    def close(self) -> None: ...


class Pending:
    """Appends waiting for the next commit, each with the future its request awaits."""

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self.futures: list[asyncio.Future[None]] = []

    def split(self, size: int) -> list[Pending]:
        """These appends in parts of at most `size`, in order."""
        parts = []
        for start in range(0, len(self.futures), size):
            part = Pending()
            part.rows = self.rows[start : start + size]
            part.futures = self.futures[start : start + size]
            parts.append(part)
        return parts

    def settle(self, error: BaseException | None) -> None:
        for future in self.futures:
            if future.done():  # the client went away; the body is stored all the same
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)


def fetched(items: list[InboxItem], sizes: Sequence[tuple[int, int]], limit: int) -> Fetched:
    """`items`, the bodies `sizes` (the first `limit` waiting, by id) held within BATCH_BYTES:
    more waited if `sizes` was cut at `limit` or if `items` stop short of it."""
    return Fetched(items, len(sizes) >= limit or len(items) < len(sizes))


def within_bytes(sizes: Sequence[tuple[int, int]], limit: int = BATCH_BYTES) -> int | None:
    """The last id of the (id, size) prefix that fits in `limit` bytes (the first always does);
    None for no rows."""
    last: int | None = None
    total = 0
    for id_, size in sizes:
        total += size
        if last is not None and total > limit:
            break
        last = id_
    return last


def unavailable(exc: BaseException) -> StoreUnavailable:
    """The answer's error for a commit `exc` refused; `exc` stays its cause, for the log."""
    error = StoreUnavailable(
        "the intake inbox could not commit", details={"error": type(exc).__name__}
    )
    error.__cause__ = exc
    return error


def inbox_path(database: str) -> Path:
    """Where the SQLite store at `database` keeps its intake inbox: `<store>.intake`."""
    return inbox_files.beside_store(Path(database))
