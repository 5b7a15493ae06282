from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.ingest.tailer import (
    MAX_LINE_BYTES,
    Checkpoint,
    Follower,
    LineBatch,
    read_lines,
)


class MemoryCheckpoints:
    """An in-memory `CheckpointStore`, as the SQL one behaves: last save per path wins.

    `save` stands for the store writer committing a batch's checkpoint with its events."""

    def __init__(self) -> None:
        self.saved: dict[str, Checkpoint] = {}

    def load(self, path: str) -> Checkpoint | None:
        return self.saved.get(path)

    def save(self, checkpoint: Checkpoint) -> None:
        self.saved[checkpoint.path] = checkpoint


Follow = Callable[..., Follower]


@pytest.fixture
def follow() -> Iterator[Follow]:
    """Makes followers and closes them after the test."""
    made: list[Follower] = []

    def make(*args: Any, **kwargs: Any) -> Follower:
        follower = Follower(*args, **kwargs)
        made.append(follower)
        return follower

    yield make
    for follower in made:
        follower.close()


def _store() -> MemoryCheckpoints:
    return MemoryCheckpoints()


def _append(path: Path, text: str) -> None:
    with path.open("ab") as handle:
        handle.write(text.encode())


def _drain(follower: Follower, store: MemoryCheckpoints | None = None) -> list[str]:
    """Poll until nothing new arrives (bounded); the lines read. With `store`, each batch is
    committed there (its checkpoint saved), as the writer does with the batch's events."""
    lines: list[str] = []
    for _ in range(100):
        batches = follower.poll()
        if not batches:
            return lines
        for batch in batches:
            lines.extend(batch.lines)
            if store is not None:
                store.save(batch.checkpoint)
    raise AssertionError("follower kept returning batches")


def _lines(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{n}" for n in range(count)]


def _text(lines: list[str]) -> str:
    return "".join(f"{line}\n" for line in lines)


class TestFollower:
    def test_appended_lines_are_read_once(self, tmp_path: Path, follow: Follow) -> None:
        """Lines appended between polls come out once, in order."""
        log = tmp_path / "registry.log"
        log.write_text(_text(_lines("a", 3)))
        follower = follow([str(tmp_path / "*.log")], _store())
        first = _drain(follower)
        _append(log, _text(_lines("b", 2)))
        second = _drain(follower)
        assert _lines("a", 3) + _lines("b", 2) == first + second

    def test_partial_last_line_waits_for_its_newline(self, tmp_path: Path, follow: Follow) -> None:
        """A line without its newline is not returned until the newline is written."""
        log = tmp_path / "registry.log"
        log.write_text("one\ntw")
        follower = follow([str(log)], _store())
        assert _drain(follower) == ["one"]
        _append(log, "o\r\nthree\n")
        assert _drain(follower) == ["two", "three"]

    def test_rotation_by_rename_and_create(self, tmp_path: Path, follow: Follow) -> None:
        """Lines written to the renamed file after our last poll are read before the new file."""
        log = tmp_path / "registry.log"
        log.write_text(_text(_lines("old", 2)))
        follower = follow([str(log)], _store())
        before = _drain(follower)
        with log.open("ab") as writer:
            log.rename(tmp_path / "registry.log.1")
            writer.write(b"old-2\nold-3-unterminated")
        log.write_text(_text(_lines("new", 2)))
        after = _drain(follower)
        expected = [*_lines("old", 4)[:3], "old-3-unterminated", *_lines("new", 2)]
        assert expected == before + after
        assert follower.rotations == 1

    def test_copytruncate(self, tmp_path: Path, follow: Follow) -> None:
        """A file truncated in place is read again from its start."""
        log = tmp_path / "registry.log"
        log.write_text(_text(_lines("a", 5)))
        follower = follow([str(log)], _store())
        _drain(follower)
        os.truncate(log, 0)
        _append(log, _text(_lines("b", 2)))
        assert _lines("b", 2) == _drain(follower)
        assert follower.truncations == 1

    def test_truncated_and_regrown_past_the_offset(self, tmp_path: Path, follow: Follow) -> None:
        """A truncated file that grew past our offset is recognised by its first bytes."""
        log = tmp_path / "registry.log"
        log.write_text(_text(_lines("a", 2)))
        follower = follow([str(log)], _store())
        _drain(follower)
        log.write_text(_text(_lines("bbbbbbbb", 4)))
        assert _lines("bbbbbbbb", 4) == _drain(follower)

    def test_restart_resumes_after_the_last_commit(self, tmp_path: Path, follow: Follow) -> None:
        """A new follower with the saved checkpoints reads only what came after the commit."""
        log = tmp_path / "registry.log"
        log.write_text(_text(_lines("a", 3)))
        store = _store()
        first = follow([str(log)], store)
        read = _drain(first, store)
        first.close()
        _append(log, _text(_lines("b", 2)))
        second = follow([str(log)], store)
        assert _lines("a", 3) + _lines("b", 2) == read + _drain(second, store)

    def test_uncommitted_lines_are_read_again_after_restart(
        self, tmp_path: Path, follow: Follow
    ) -> None:
        """Lines polled but never committed come back after a restart."""
        log = tmp_path / "registry.log"
        log.write_text(_text(_lines("a", 2)))
        store = _store()
        first = follow([str(log)], store)
        _drain(first)
        first.close()
        assert _lines("a", 2) == _drain(follow([str(log)], store), store)

    def test_file_replaced_while_down(self, tmp_path: Path, follow: Follow) -> None:
        """After a rotation while stopped, the old file's unread tail comes before the new file."""
        log = tmp_path / "registry.log"
        log.write_text(_text(_lines("a", 2)))
        store = _store()
        first = follow([str(log)], store)
        _drain(first, store)
        first.close()
        _append(log, _text(_lines("tail", 2)))
        log.rename(tmp_path / "registry.log.1")
        log.write_text(_text(_lines("new", 1)))
        second = follow([str(log)], store)
        assert _lines("tail", 2) + _lines("new", 1) == _drain(second, store)
        assert (second.rotations, second.missed_rotations) == (1, 0)

    def test_file_replaced_and_old_one_gone(self, tmp_path: Path, follow: Follow) -> None:
        """When the checkpointed file is gone, the new file is read from its start and counted."""
        log = tmp_path / "registry.log"
        log.write_text(_text(_lines("a", 2)))
        store = _store()
        _drain(follow([str(log)], store), store)
        log.unlink()
        log.write_text(_text(_lines("new", 2)))
        second = follow([str(log)], store)
        assert _lines("new", 2) == _drain(second, store)
        assert second.missed_rotations == 1

    def test_truncated_while_down(self, tmp_path: Path, follow: Follow) -> None:
        """A file shorter than its checkpoint at start-up is read from its start."""
        log = tmp_path / "registry.log"
        log.write_text(_text(_lines("a", 5)))
        store = _store()
        _drain(follow([str(log)], store), store)
        with log.open("r+b") as handle:
            handle.truncate(0)
            handle.write(_text(_lines("b", 1)).encode())
        assert _lines("b", 1) == _drain(follow([str(log)], store), store)

    def test_start_at_end_skips_existing_lines(self, tmp_path: Path, follow: Follow) -> None:
        """Without a checkpoint, `start_at_end` reads only lines written after start."""
        log = tmp_path / "registry.log"
        log.write_text(_text(_lines("a", 3)))
        follower = follow([str(log)], _store(), start_at_end=True)
        assert _drain(follower) == []
        _append(log, "b\n")
        assert _drain(follower) == ["b"]

    def test_batches_are_bounded(self, tmp_path: Path, follow: Follow) -> None:
        """No batch holds more than `max_batch_bytes`; all lines still arrive."""
        log = tmp_path / "registry.log"
        log.write_text(_text(_lines("line", 100)))
        follower = follow([str(log)], _store(), max_batch_bytes=64)
        batches: list[LineBatch] = []
        for _ in range(200):
            found = follower.poll()
            if not found:
                break
            batches.extend(found)
        assert all(batch.end - batch.start <= 64 for batch in batches)
        assert _lines("line", 100) == [line for batch in batches for line in batch.lines]

    def test_checkpoint_reports_identity_offset_and_head(
        self, tmp_path: Path, follow: Follow
    ) -> None:
        """A batch's checkpoint names the file by device and inode, with the offset after it."""
        log = tmp_path / "registry.log"
        log.write_text("x\n")
        [batch] = follow([str(log)], _store()).poll()
        stat = log.stat()
        expected = (str(log), stat.st_dev, stat.st_ino, 2, 2)
        checkpoint = batch.checkpoint
        assert expected == (
            checkpoint.path,
            checkpoint.device,
            checkpoint.inode,
            checkpoint.offset,
            checkpoint.head_len,
        )

    def test_new_files_matching_the_glob_are_followed(self, tmp_path: Path, follow: Follow) -> None:
        """A file that appears later and matches the glob is read too."""
        follower = follow([str(tmp_path / "*.log")], _store())
        assert _drain(follower) == []
        (tmp_path / "b.log").write_text("hello\n")
        assert _drain(follower) == ["hello"]

    @settings(
        max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        st.lists(
            st.tuples(
                st.text(alphabet="ab\n", min_size=1, max_size=30),
                st.sampled_from(["append", "rename", "restart"]),
            ),
            min_size=1,
            max_size=15,
        )
    )
    def test_nothing_lost_or_repeated(
        self, tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, str]]
    ) -> None:
        """Writes in any pieces, renames and restarts yield every complete line exactly once."""
        directory = tmp_path_factory.mktemp("follow")
        log = directory / "registry.log"
        log.write_bytes(b"")
        store = _store()
        follower = Follower([str(log)], store)
        try:
            self._run(follower, store, log, steps)
        finally:
            follower.close()

    def _run(
        self,
        follower: Follower,
        store: MemoryCheckpoints,
        log: Path,
        steps: list[tuple[str, str]],
    ) -> None:
        directory = log.parent
        written = ""
        read: list[str] = []
        rotations = 0
        for text, action in steps:
            if action == "rename" and written.endswith("\n"):
                rotations += 1
                log.rename(directory / f"registry.log.{rotations}")
                log.write_bytes(b"")
            elif action == "restart":
                follower.close()  # the next poll resumes from the store, as a new process would
            _append(log, text)
            written += text
            read.extend(_drain(follower, store))
        _append(log, "\n")
        written += "\n"
        read.extend(_drain(follower, store))
        assert written.splitlines() == read


class TestReadLines:
    def test_lines_across_chunks(self) -> None:
        """Lines split across read chunks come out whole; CRLF and a last line without newline."""
        stream = io.BytesIO(b"first\r\nsecond line\nthird")
        assert list(read_lines(stream, chunk_bytes=4)) == ["first", "second line", "third"]

    def test_invalid_utf8_is_replaced(self) -> None:
        """Bytes that are not UTF-8 become U+FFFD instead of failing."""
        assert list(read_lines(io.BytesIO(b"a\xffb\n"))) == ["a\ufffdb"]

    def test_overlong_line_is_cut(self) -> None:
        """A line longer than the limit is returned in pieces, so memory stays bounded."""
        data = b"x" * (MAX_LINE_BYTES + 10) + b"\nend\n"
        pieces = list(read_lines(io.BytesIO(data), chunk_bytes=1 << 16))
        assert [len(piece) for piece in pieces] == [MAX_LINE_BYTES, 10, 3]
