"""Reading ahead: the next batches of several open results fetched on a thread of their own.

A large read in order (cleanup planning's input: a million rows in three ordered reads) waits
for the database between batches: PostgreSQL sorts, then produces the rows of each fetch from
its server-side cursor; SQLite walks its b-tree. Neither holds the interpreter's lock while
it works, so a thread that fetches the next batches lets that work overlap the caller's
Python. One thread touches the results (and so the connection they share) while reading ahead;
the caller only takes the batches it fetched.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any, Protocol


class Fetching(Protocol):
    """What is read ahead: a result's `fetchmany` (SQLAlchemy's `Result`)."""

    def fetchmany(self, size: int, /) -> Sequence[Any]: ...


class ReadAhead:
    """Fetches `size` rows at a time from each of `results` on a thread of its own, at most
    `depth` batches ahead of the reader of each: memory holds at most `depth` batches per
    result beyond what the reader holds. `rows(i)` gives result i's rows in order; a fetch's
    error is raised there. `close()` (also on leaving a `with` block) stops the thread between
    two fetches and waits for it, after which the results may be closed."""

    def __init__(self, results: Sequence[Fetching], *, size: int, depth: int = 2) -> None:
        self._results = results
        self._size = size
        self._depth = depth
        self._batches: list[deque[Sequence[Any]]] = [deque() for _ in results]
        self._done = [False] * len(results)
        self._error: BaseException | None = None
        self._stopping = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._fetch_all, name="read-ahead", daemon=True)
        self._thread.start()

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def rows(self, index: int) -> Iterator[Any]:
        """The rows of result `index`, in order, as the thread fetches them."""
        batches, changed = self._batches[index], self._changed
        while True:
            with changed:
                while not batches and not self._done[index] and self._error is None:
                    changed.wait()
                if self._error is not None:
                    raise self._error
                if not batches:
                    return
                batch = batches.popleft()
                changed.notify_all()
            yield from batch

    def close(self) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        self._thread.join()

    def _next_to_fetch(self) -> int | None:
        """The unfinished result with the fewest batches waiting, if one has room (called with
        the condition held)."""
        waiting = [
            (len(batches), index)
            for index, batches in enumerate(self._batches)
            if not self._done[index] and len(batches) < self._depth
        ]
        return min(waiting)[1] if waiting else None

    def _fetch_all(self) -> None:
        changed = self._changed
        try:
            while True:
                with changed:
                    index = self._next_to_fetch()
                    while not self._stopping and index is None and not all(self._done):
                        changed.wait()
                        index = self._next_to_fetch()
                    if self._stopping or index is None:
                        return
                batch = self._results[index].fetchmany(self._size)  # without the condition
                with changed:
                    if batch:
                        self._batches[index].append(batch)
                    # a short batch is the last: no round trip to learn that nothing follows
                    self._done[index] = len(batch) < self._size
                    changed.notify_all()
        except BaseException as exc:  # handed to the reader, who raises it
            with changed:
                self._error = exc
                changed.notify_all()
