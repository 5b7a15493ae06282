"""The intake applier's batches: bodies gathered after a wake-up, full batches back to back."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry

from monitor.observability.metrics import make_metrics
from monitor.pipeline.applier import IntakeApplier
from monitor.store.inbox import Fetched, InboxItem

NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
GATHER = 0.2


class ListInbox:
    """The part of an inbox the applier reads: bodies waiting in a list, fetched in order;
    `woken` is called after each append, as intake wakes the applier."""

    def __init__(self) -> None:
        self.waiting_items: list[InboxItem] = []
        self.next_id = 1
        self.lock = threading.Lock()
        self.woken: Callable[[], None] = lambda: None
        self.cut = 1_000_000

    def put(self, count: int) -> None:
        with self.lock:
            for _ in range(count):
                body = b'{"events": []}'
                item = InboxItem(self.next_id, NOW, "application/json", "127.0.0.1", body)
                self.waiting_items.append(item)
                self.next_id += 1
        self.woken()

    def backlog(self) -> int:
        with self.lock:
            return len(self.waiting_items)

    def waiting(self, limit: int, now: datetime) -> int:
        return min(self.backlog(), limit)

    def fetch(self, limit: int, now: datetime) -> Fetched:
        """At most `limit`, and at most `cut` (standing for the byte bound of large bodies)."""
        with self.lock:
            taken = min(limit, self.cut)
            items, self.waiting_items = self.waiting_items[:taken], self.waiting_items[taken:]
            return Fetched(items, more=bool(self.waiting_items))

    def record_applied(self, session: Any, items: Sequence[InboxItem], now: datetime) -> None:
        pass

    def applied(self, items: Sequence[InboxItem]) -> None:
        pass


class CommittingWriter:
    """Commits at once; `during` runs inside the first commit (bodies arriving meanwhile)."""

    def __init__(self, during: Callable[[], None] = lambda: None) -> None:
        self.during = during
        self.commits = 0

    def submit(self, events: Any, quarantined: Any, **_: Any) -> concurrent.futures.Future[Any]:
        self.commits += 1
        if self.commits == 1:
            self.during()
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()
        done.set_result(SimpleNamespace(quarantined=0, quarantine_rows=[], inserted=[]))
        return done


def make_applier(
    inbox: ListInbox,
    writer: CommittingWriter,
    batch_bodies: int,
    gather: float,
    on_applied: Callable[[list[InboxItem]], None],
) -> IntakeApplier:
    applier = IntakeApplier(
        inbox,  # type: ignore[arg-type]
        writer,  # type: ignore[arg-type]
        metrics=make_metrics(CollectorRegistry()),
        clock=lambda: NOW,
        skew=timedelta(minutes=5),
        max_events=100,
        batch_bodies=batch_bodies,
        gather_seconds=gather,
        on_applied=on_applied,
    )
    inbox.woken = applier.wake
    return applier


def apply_until_empty(applier: IntakeApplier) -> None:
    """One wake-up, then every batch until the inbox is empty."""
    applier.start()
    try:
        applier.wake()
        assert applier.drain(timeout=10)
    finally:
        applier.stop()


def applied_batches(
    inbox: ListInbox, writer: CommittingWriter, batch_bodies: int, gather: float = GATHER
) -> list[Any]:
    """(size, when) of each batch applied after one wake-up, until the inbox is empty."""
    batches: list[tuple[int, float]] = []
    apply_until_empty(
        make_applier(
            inbox,
            writer,
            batch_bodies,
            gather,
            lambda items: batches.append((len(items), time.monotonic())),
        )
    )
    return batches


def test_bodies_arriving_while_a_batch_is_applied_wait_for_the_next_gathering() -> None:
    inbox = ListInbox()
    inbox.put(3)
    batches = applied_batches(inbox, CommittingWriter(during=lambda: inbox.put(2)), 10)

    assert [size for size, _ in batches] == [3, 2]
    assert batches[1][1] - batches[0][1] >= GATHER


def test_full_batches_are_applied_one_after_another_until_one_is_not() -> None:
    inbox = ListInbox()
    inbox.put(5)
    batches = applied_batches(inbox, CommittingWriter(), 2)

    assert [size for size, _ in batches] == [2, 2, 1]
    assert inbox.backlog() == 0


def test_batches_cut_by_their_bytes_are_applied_one_after_another() -> None:
    inbox = ListInbox()
    inbox.cut = 2
    inbox.put(5)
    batches = applied_batches(inbox, CommittingWriter(), 5, gather=2.0)

    assert [size for size, _ in batches] == [2, 2, 1]
    assert batches[-1][1] - batches[0][1] < 2.0  # no gathering between them


def test_the_applier_is_behind_while_its_batches_are_cut_short() -> None:
    """`behind()` (what expiry gives way to) holds from a fetch that left bodies waiting until
    a batch takes all that waits."""
    inbox = ListInbox()
    inbox.put(5)
    seen: list[bool] = []
    applier = make_applier(
        inbox, CommittingWriter(), 2, 0.0, lambda items: seen.append(applier.behind())
    )
    assert applier.behind() is False
    apply_until_empty(applier)
    assert [True, True, False] == seen
    assert applier.behind() is False
