"""Following registry log files across rotation, with checkpoints; the only file I/O of ingest.

`Follower(globs, checkpoints).poll()` returns the complete lines appended since the last poll as
`LineBatch`es, each with the `Checkpoint` after it (device, inode, offset, a hash of the first
bytes). The caller saves that checkpoint in the transaction that commits what it made of the
batch, and a new follower loads it: a restart resumes exactly after the last committed line,
nothing lost, nothing repeated.

Handled: rotation by rename + create (the rest of the old file is read through the still-open
descriptor first), copytruncate (the file shrinks or its first bytes change: start again at 0), a
partial last line (left for the next poll until its newline arrives), and a file replaced while we
were down (the checkpointed file is looked for among its siblings, e.g. `registry.log.1`, and its
tail is read before the new file). Memory is bounded by `max_batch_bytes` per file and poll.

`read_lines(stream)` reads a whole file or stdin for backfill.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
import threading
from collections.abc import Iterable, Iterator
from typing import BinaryIO, Protocol

HEAD_BYTES = 1024
DEFAULT_BATCH_BYTES = 1 << 20
MAX_LINE_BYTES = 1 << 20


@dataclasses.dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where reading of the file at `path` stopped: identity, offset and a hash of its head.

    `head_hash` is the SHA-256 of the first `head_len` bytes (at most `HEAD_BYTES`), which tells
    a truncated-and-rewritten or a new file with a reused inode from the file we read.
    """

    path: str
    device: int
    inode: int
    offset: int
    head_len: int
    head_hash: str


class CheckpointStore(Protocol):
    """Where checkpoints live between runs (the SQL store in production).

    The follower only loads them. Whoever processes a `LineBatch` saves its `checkpoint` with
    the result (the store writer commits it with the batch's events).
    """

    def load(self, path: str) -> Checkpoint | None: ...


@dataclasses.dataclass(frozen=True, slots=True)
class LineBatch:
    """Complete lines read from one file, `start`..`end` bytes, and the checkpoint after them.

    `source` is the file actually read (differs from `path` for a rotated file's tail).
    """

    path: str
    source: str
    lines: tuple[str, ...]
    start: int
    end: int
    checkpoint: Checkpoint


@dataclasses.dataclass(slots=True)
class _Open:
    path: str
    source: str
    file: BinaryIO
    device: int
    inode: int
    offset: int
    head_len: int = 0
    head_hash: str = ""

    def checkpoint(self) -> Checkpoint:
        return Checkpoint(
            self.path, self.device, self.inode, self.offset, self.head_len, self.head_hash
        )


class Follower:
    """Follows every file matching `globs`; see the module docstring.

    `poll` and `commit` may be called from a worker thread; they are serialised by a lock.
    A file without a checkpoint is read from its start, or from its end when `start_at_end`.
    """

    def __init__(
        self,
        globs: Iterable[str],
        checkpoints: CheckpointStore,
        *,
        start_at_end: bool = False,
        max_batch_bytes: int = DEFAULT_BATCH_BYTES,
    ) -> None:
        self._globs = tuple(globs)
        self._checkpoints = checkpoints
        self._start_at_end = start_at_end
        self._max_batch_bytes = max_batch_bytes
        self._open: dict[str, _Open] = {}
        self._lock = threading.Lock()
        self.rotations = 0
        self.truncations = 0
        # Checkpointed files found neither at their path nor beside it: their unread tail is lost.
        self.missed_rotations = 0

    def paths(self) -> list[str]:
        """The files the globs match now, sorted."""
        found: set[str] = set()
        for pattern in self._globs:
            found.update(path for path in glob.glob(pattern) if os.path.isfile(path))
        return sorted(found)

    def poll(self) -> list[LineBatch]:
        """Read what was appended since the last poll; at most one batch size per file."""
        with self._lock:
            batches: list[LineBatch] = []
            matched = self.paths()
            for path in matched:
                batches.extend(self._poll_path(path))
            for path in sorted(set(self._open) - set(matched)):
                batches.extend(self._drain(self._open.pop(path)))
            return batches

    def close(self) -> None:
        """Close every open file; a later poll opens them again from the committed checkpoints."""
        with self._lock:
            for state in self._open.values():
                state.file.close()
            self._open.clear()

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------------ one path

    def _poll_path(self, path: str) -> list[LineBatch]:
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            return []
        state = self._open.get(path)
        batches: list[LineBatch] = []
        if state is None:
            state, batches = self._resume(path, stat)
            if state is None:
                return batches
            self._open[path] = state
        elif (stat.st_dev, stat.st_ino) != (state.device, state.inode):
            self.rotations += 1
            batches.extend(self._drain(state))
            state = self._open_at(path, path, 0)
            if state is None:
                self._open.pop(path, None)
                return batches
            self._open[path] = state
        elif stat.st_size < state.offset or not self._head_matches(state):
            self.truncations += 1
            state.offset = 0
            state.head_len, state.head_hash = 0, ""
        batch = self._read(state, final=False)
        if batch is not None:
            batches.append(batch)
        return batches

    def _resume(self, path: str, stat: os.stat_result) -> tuple[_Open | None, list[LineBatch]]:
        saved = self._checkpoints.load(path)
        batches: list[LineBatch] = []
        if saved is not None:
            if (stat.st_dev, stat.st_ino) == (saved.device, saved.inode):
                state = self._open_at(path, path, saved.offset, saved)
                if state is not None:
                    return state, batches
                self.truncations += 1
            else:
                old = self._find_rotated(path, saved)
                if old is None:
                    self.missed_rotations += 1
                else:
                    self.rotations += 1
                    batches.extend(self._drain(old))
        offset = stat.st_size if saved is None and self._start_at_end else 0
        state = self._open_at(path, path, offset)
        if state is not None and offset:
            self._fill_head(state)
        return state, batches

    def _find_rotated(self, path: str, saved: Checkpoint) -> _Open | None:
        directory = os.path.dirname(path) or "."
        base = os.path.basename(path)
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            return None
        for name in names:
            if name == base or not name.startswith(base):
                continue
            candidate = os.path.join(directory, name)
            try:
                stat = os.stat(candidate)
            except OSError:
                continue
            if (stat.st_dev, stat.st_ino) == (saved.device, saved.inode):
                return self._open_at(path, candidate, saved.offset, saved)
        return None

    def _open_at(
        self, path: str, source: str, offset: int, saved: Checkpoint | None = None
    ) -> _Open | None:
        """Open `source` at `offset`; None when it is gone, or shorter or different than saved."""
        try:
            handle = open(source, "rb")  # noqa: SIM115 - kept open across polls on purpose
        except OSError:
            return None
        stat = os.fstat(handle.fileno())
        state = _Open(path, source, handle, stat.st_dev, stat.st_ino, offset)
        if saved is not None:
            state.head_len, state.head_hash = saved.head_len, saved.head_hash
            if stat.st_size < offset or not self._head_matches(state):
                handle.close()
                return None
        return state

    def _head_matches(self, state: _Open) -> bool:
        if not state.head_len:
            return True
        state.file.seek(0)
        return hashlib.sha256(state.file.read(state.head_len)).hexdigest() == state.head_hash

    def _fill_head(self, state: _Open) -> None:
        if state.head_len >= HEAD_BYTES or state.offset <= state.head_len:
            return
        state.head_len = min(HEAD_BYTES, state.offset)
        state.file.seek(0)
        state.head_hash = hashlib.sha256(state.file.read(state.head_len)).hexdigest()

    def _drain(self, state: _Open) -> list[LineBatch]:
        """All that is left in a file no longer at its path, a last partial line included."""
        batches: list[LineBatch] = []
        try:
            while True:
                batch = self._read(state, final=True)
                if batch is None:
                    break
                batches.append(batch)
        finally:
            state.file.close()
        return batches

    def _read(self, state: _Open, *, final: bool) -> LineBatch | None:
        state.file.seek(state.offset)
        data = state.file.read(self._max_batch_bytes)
        if not data:
            return None
        cut = data.rfind(b"\n")
        if cut >= 0:
            data = data[: cut + 1]
        elif not final and len(data) < min(self._max_batch_bytes, MAX_LINE_BYTES):
            return None
        start = state.offset
        state.offset = start + len(data)
        self._fill_head(state)
        return LineBatch(
            path=state.path,
            source=state.source,
            lines=tuple(_split_lines(data)),
            start=start,
            end=state.offset,
            checkpoint=state.checkpoint(),
        )


def _split_lines(data: bytes) -> list[str]:
    """The lines of `data` (its last line break optional), decoded, without `\r` at their end.

    Decoding the whole chunk at once is the same as line by line: UTF-8 never uses the byte of
    `\n` inside a multi-byte character.
    """
    text = data.decode("utf-8", "replace")
    if text.endswith("\n"):
        text = text[:-1]
    lines = text.split("\n")
    if "\r" in text:
        lines = [line.rstrip("\r") for line in lines]
    return lines


def read_lines(stream: BinaryIO, *, chunk_bytes: int = DEFAULT_BATCH_BYTES) -> Iterator[str]:
    """Every line of a binary stream (a file, or `sys.stdin.buffer`), decoded, bounded memory.

    A line longer than `MAX_LINE_BYTES` is cut into pieces of that size.
    """
    pending = b""
    while True:
        chunk = stream.read(chunk_bytes)
        if not chunk:
            break
        pending += chunk
        cut = pending.rfind(b"\n")
        if cut < 0:
            while len(pending) >= MAX_LINE_BYTES:
                yield pending[:MAX_LINE_BYTES].decode("utf-8", "replace")
                pending = pending[MAX_LINE_BYTES:]
            continue
        yield from _split_lines(pending[: cut + 1])
        pending = pending[cut + 1 :]
    if pending:
        yield from _split_lines(pending)
