"""Reading ahead gives each result's rows in order and complete, holds a bounded number of
batches, hands a fetch's error to the reader, and stops when closed."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from itertools import zip_longest

import pytest

from monitor.store.readahead import ReadAhead


class Rows:
    """A result's `fetchmany` over `count` rows; counts its fetches, fails at `fail_at`."""

    def __init__(self, name: str, count: int, fail_at: int | None = None) -> None:
        self.rows = [(name, i) for i in range(count)]
        self.fetches = 0
        self.fail_at = fail_at
        self.taken = 0

    def fetchmany(self, size: int, /) -> Sequence[tuple[str, int]]:
        self.fetches += 1
        if self.fail_at is not None and self.fetches == self.fail_at:
            raise RuntimeError("connection lost")
        batch = self.rows[self.taken : self.taken + size]
        self.taken += len(batch)
        return batch


class TestReadAhead:
    def test_each_result_comes_back_in_order_and_complete_read_in_turn(self) -> None:
        results = [Rows("tags", 25), Rows("pulls", 0), Rows("manifests", 73)]
        with ReadAhead(results, size=10) as ahead:
            streams = [ahead.rows(i) for i in range(3)]
            got: list[list[tuple[str, int]]] = [[], [], []]
            for row in zip_longest(*streams):
                for i, value in enumerate(row):
                    if value is not None:
                        got[i].append(value)
        assert [r.rows for r in results] == got

    def test_a_result_read_alone_to_its_end_while_the_others_wait(self) -> None:
        """Reading one result to its end never waits on the others' full buffers."""
        results = [Rows("a", 100), Rows("b", 100)]
        with ReadAhead(results, size=10, depth=2) as ahead:
            assert results[1].rows == list(ahead.rows(1))
            assert results[0].rows == list(ahead.rows(0))

    def test_it_fetches_at_most_depth_batches_ahead_of_the_reader(self) -> None:
        result = Rows("a", 1_000)
        with ReadAhead([result], size=10, depth=3) as ahead:
            rows = ahead.rows(0)
            next(rows)  # the first batch is the reader's now
            for _ in range(100):  # let the thread run as far as it may
                threading.Event().wait(0.001)
            assert result.fetches <= 1 + 3
        assert result.fetches <= 1 + 3

    def test_a_short_batch_ends_a_result_without_another_fetch(self) -> None:
        result = Rows("a", 25)
        with ReadAhead([result], size=10) as ahead:
            assert 25 == len(list(ahead.rows(0)))
        assert 3 == result.fetches

    def test_a_fetch_error_reaches_the_reader(self) -> None:
        results = [Rows("a", 100, fail_at=3), Rows("b", 5)]
        with ReadAhead(results, size=10) as ahead, pytest.raises(RuntimeError, match="lost"):
            list(ahead.rows(0))

    def test_closing_before_the_end_stops_the_thread(self) -> None:
        results = [Rows("a", 10_000), Rows("b", 10_000)]
        ahead = ReadAhead(results, size=10, depth=2)
        next(ahead.rows(0))
        ahead.close()
        assert not any(t.name == "read-ahead" and t.is_alive() for t in threading.enumerate())
        fetched = [r.fetches for r in results]
        assert all(n <= 3 for n in fetched)
        threading.Event().wait(0.05)
        assert fetched == [r.fetches for r in results]  # nothing fetched once closed
