"""The SQLite inbox's two files taking turns, so that no answer waits for a checkpoint.

A file in write-ahead-log mode must be checkpointed (its log copied into it and synced) before
its log can start over; otherwise the log grows with every commit. Done between two commits on
the event loop, as the inbox did with one file, the commit after it waited for four syncs of
the disk instead of one: the checkpoint's sync of the log, its sync of the file, the sync of the
log's new header, and its own (`fdatasync` calls of `serve`'s event-loop thread, traced). When
each sync of a busy disk took 40 ms, that answer took 100 ms and more.

Here commits go to one file at a time. After `CHECKPOINT_EVERY` commits or `CHECKPOINT_BYTES`
of bodies, they go to the other file, and a thread of its own brings the one left behind up to
date and starts its log over with a small commit (deleting the bodies applied meanwhile and
counting the turn in the file's `user_version`), so those syncs are that thread's. Nothing
else writes the resting file, so its checkpoint completes at once; the applier reading it only
holds it back for a moment. If the other file is not ready when the turn is due, commits stay
where they are and the turn is tried again at the next one.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import structlog

CHECKPOINT_EVERY = 256
CHECKPOINT_BYTES = 4 * 1024 * 1024
"""A file takes this many commits, or bodies of this many bytes, before the other takes over."""

RETRY_SECONDS = 0.001
RETRY_MAX_SECONDS = 0.05
"""How long the thread waits before checkpointing a resting file again that a reader held
back, or that refused it as locked: twice as long each time, up to 50 ms."""

log = structlog.get_logger(__name__)


class Turns:
    """Which of the two files takes commits (`current`), and the thread that prepares the other.

    `committed` is called on the event loop after each commit; the thread only ever touches the
    connection of the file that is resting, which the event loop no longer uses until the
    thread has handed it back."""

    def __init__(
        self,
        paths: Sequence[Path],
        writers: Sequence[sqlite3.Connection],
        applied: Callable[[], int],
    ) -> None:
        self._paths = list(paths)
        self._writers = list(writers)
        self._applied = applied
        self.current = 0
        self._commits = 0
        self._bytes = 0
        self._resting: int | None = None  # the file the thread is preparing
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.turns = 0  # files started over by the thread
        self.deleted_upto = [0, 0]  # bodies up to here are gone from each file

    def writer(self) -> sqlite3.Connection:
        return self._writers[self.current]

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="inbox-turns", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def committed(self, size: int) -> None:
        """After a commit of `size` bytes of bodies to the current file: hands over to the
        other file when this one has taken its share and the other is ready."""
        self._commits += 1
        self._bytes += size
        if self._commits < CHECKPOINT_EVERY and self._bytes < CHECKPOINT_BYTES:
            return
        with self._lock:
            if self._resting is not None or self._stopping or self._thread is None:
                return  # the other file is not ready yet: try again at the next commit
            self._resting = self.current
            self.current = 1 - self.current
            self._commits = self._bytes = 0
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._lock:
                while self._resting is None and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                resting = self._resting
            assert resting is not None
            self._start_over(resting)
            with self._lock:
                self._resting = None

    def _start_over(self, index: int) -> None:
        """Checkpoints the resting file until its log is all in it, then commits to it once so
        that its log starts over (and its header is synced) here; again if a reader that was
        in the log kept it from starting over."""
        connection = self._writers[index]
        delay = RETRY_SECONDS
        while not self._stopping:
            try:
                _busy, frames, copied = connection.execute(
                    "PRAGMA wal_checkpoint(PASSIVE)"
                ).fetchone()
                if frames == copied:
                    before = _log_sequence(self._paths[index])
                    upto = self._applied()
                    connection.execute("BEGIN IMMEDIATE")
                    try:
                        connection.execute("DELETE FROM intake_inbox WHERE id <= ?", (upto,))
                        turn = connection.execute("PRAGMA user_version").fetchone()[0]
                        connection.execute(f"PRAGMA user_version = {(int(turn) + 1) % 2**31}")
                        connection.execute("COMMIT")
                    except BaseException:
                        with contextlib.suppress(sqlite3.Error):
                            connection.execute("ROLLBACK")
                        raise
                    self.deleted_upto[index] = max(self.deleted_upto[index], upto)
                    if frames == 0 or _log_sequence(self._paths[index]) != before:
                        self.turns += 1
                        return
            except sqlite3.Error as exc:
                if delay == RETRY_SECONDS:  # once a turn; then less and less often
                    log.warning("intake_inbox_turn_retry", file=index, error=type(exc).__name__)
            time.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)


def _log_sequence(path: Path) -> bytes:
    """The write-ahead log's checkpoint sequence (bytes 12-16 of its header), which SQLite
    counts up each time the log starts over; empty while the log has no header."""
    with contextlib.suppress(OSError), open(f"{path}-wal", "rb") as log_file:
        return log_file.read(16)[12:16]
    return b""
