"""The intake writer: one thread that commits what concurrent requests hand it, in groups.

Requests submit events (and quarantined inputs, a followed log file's checkpoint, and other
rows of the same transaction) and wait for the commit. While one transaction is being
committed, new submissions queue up and go into the next one, so the number of fsyncs grows
with commits, not with requests (group commit). A submission's future resolves only after its
transaction committed; if the store is unavailable it resolves with StoreUnavailable and
nothing of that submission is stored.

A submission the store refuses for another reason (a value it will not take) is never failed
as a whole, since its sender would retry it forever: its events are split in halves until each
part is stored or is one event, which is quarantined. The submission's quarantined items, its
checkpoint and its `also` rows are committed after that, so a followed file's checkpoint only
moves once every event of its lines is stored or quarantined.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import itertools
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TypeVar

import orjson
import structlog
from sqlalchemy.orm import Session

from monitor.clock import Clock
from monitor.errors import StoreUnavailable
from monitor.events import Action, Event, TargetKind
from monitor.ingest.tailer import Checkpoint
from monitor.observability.metrics import PULL_METHODS, Metrics
from monitor.store.checkpoints import save_checkpoint
from monitor.store.engine import SessionFactory
from monitor.store.events import insert_events
from monitor.store.failures import is_conflict, is_outage
from monitor.store.inventory import learn_manifests
from monitor.store.quarantine import Quarantined, add_quarantined
from monitor.store.tags import apply_events
from monitor.store.transaction import ATTEMPTS

log = structlog.get_logger("monitor.store.writer")

T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class CommitResult:
    inserted: tuple[Event, ...]
    duplicates: int
    quarantined: int  # items quarantined (a row may hold several)
    quarantine_rows: tuple[Quarantined, ...] = ()  # the rows written


@dataclasses.dataclass(slots=True)
class _Submission:
    events: Sequence[Event]
    quarantined: Sequence[Quarantined]
    checkpoint: Checkpoint | None
    also: Callable[[Session], None] | None
    future: concurrent.futures.Future[CommitResult]
    received: Mapping[str, datetime] | None = None


_STOP = object()
_INTAKE, _BACKGROUND, _STOPPING = 0, 1, 2


class StoreWriter:
    """Commits submissions in groups on its own thread. `start()` before use, `stop()` after."""

    def __init__(
        self,
        session_factory: SessionFactory,
        *,
        metrics: Metrics,
        clock: Clock,
        batch_max: int = 512,
        quarantine_max_rows: int | None = None,
    ) -> None:
        self._session_factory = session_factory
        self._metrics = metrics
        self._clock = clock
        self._batch_max = batch_max
        self._quarantine_max_rows = quarantine_max_rows
        # (priority, order, item): intake before background work (expiry, detection outcomes),
        # and stop after both; each in the order submitted.
        self._queue: queue.PriorityQueue[tuple[int, int, _Submission | object]] = (
            queue.PriorityQueue()
        )
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then end the thread."""
        if self._thread is not None:
            self._put(_STOPPING, _STOP)
            self._thread.join(timeout)
            self._thread = None

    def submit(
        self,
        events: Sequence[Event],
        quarantined: Sequence[Quarantined] = (),
        *,
        checkpoint: Checkpoint | None = None,
        also: Callable[[Session], None] | None = None,
        background: bool = False,
        received: Mapping[str, datetime] | None = None,
    ) -> concurrent.futures.Future[CommitResult]:
        """Queue a submission; intake's are committed in groups, a `background` one alone and
        only when no intake submission is waiting. `checkpoint` (where a followed log file was
        read up to) is saved in the transaction of the events its lines produced; `also` writes
        the rows that belong with them (a log batch's request records). `received` gives, by
        event id, when an event was received (the commit's time for the others)."""
        future: concurrent.futures.Future[CommitResult] = concurrent.futures.Future()
        if self._thread is None:
            future.set_exception(StoreUnavailable("the store writer is not running"))
            return future
        self._put(
            _BACKGROUND if background else _INTAKE,
            _Submission(events, quarantined, checkpoint, also, future, received),
        )
        return future

    def _put(self, priority: int, item: _Submission | object) -> None:
        self._queue.put((priority, next(self._order), item))

    async def write(
        self,
        events: Sequence[Event],
        quarantined: Sequence[Quarantined] = (),
        *,
        checkpoint: Checkpoint | None = None,
        also: Callable[[Session], None] | None = None,
    ) -> CommitResult:
        """Submit and wait (without blocking the event loop) until committed."""
        return await asyncio.wrap_future(
            self.submit(events, quarantined, checkpoint=checkpoint, also=also)
        )

    def transact(self, work: Callable[[Session], T], timeout: float = 300.0) -> T:
        """Run `work` in a transaction of the writer thread and return its result (blocking).

        Jobs that write much (expiry) go through here in small pieces: a piece runs alone, only
        when no notification is waiting, instead of contending for the store's write lock.
        """
        box: list[T] = []
        self.submit((), also=lambda s: box.append(work(s)), background=True).result(timeout)
        return box[-1]

    def _run(self) -> None:
        while True:
            priority, _, first = self._queue.get()
            if first is _STOP:
                break
            assert isinstance(first, _Submission)
            batch = [first]
            size = len(first.events) + len(first.quarantined)
            while priority == _INTAKE and size < self._batch_max:
                try:
                    queued = self._queue.get_nowait()
                except queue.Empty:
                    break
                if queued[0] != _INTAKE:  # background work or stop: after this group
                    self._queue.put(queued)
                    break
                item = queued[2]
                assert isinstance(item, _Submission)
                batch.append(item)
                size += len(item.events) + len(item.quarantined)
            self._commit_group(batch)
        # Anything submitted after stop was requested is refused, never silently dropped.
        while True:
            try:
                _, _, item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Submission):
                item.future.set_exception(StoreUnavailable("the store writer stopped"))

    def _commit_group(self, batch: list[_Submission]) -> None:
        try:
            results = self._transaction_again_on_conflict(batch)
        except Exception as exc:
            if len(batch) == 1:
                self._commit_alone(batch[0], exc)
                return
            # Isolate: one bad submission must not fail the others.
            for submission in batch:
                try:
                    (result,) = self._transaction([submission])
                except Exception as single_exc:
                    self._commit_alone(submission, single_exc)
                else:
                    self._succeed(submission, result)
            return
        for submission, result in zip(batch, results, strict=True):
            self._succeed(submission, result)

    def _commit_alone(self, submission: _Submission, exc: Exception) -> None:
        """After `submission` failed on its own: fail it on an outage, else salvage it."""
        if is_outage(exc):
            self._fail(submission, exc)
            return
        log.warning(
            "store refused a batch; splitting it",
            error=type(exc).__name__,
            detail=str(exc)[:300],
            events=len(submission.events),
        )
        try:
            result = self._salvage(submission)
        except Exception as salvage_exc:
            self._fail(submission, salvage_exc)
        else:
            self._succeed(submission, result)

    def _salvage(self, submission: _Submission) -> CommitResult:
        """Store every event the store takes, quarantine the others; raises on an outage."""
        inserted: list[Event] = []
        refused: list[tuple[Event, str]] = []
        parts: list[Sequence[Event]] = [submission.events]
        while parts:
            part = parts.pop()
            try:
                inserted.extend(self._store_events(part, submission.received))
            except Exception as exc:
                if is_outage(exc):
                    raise
                if len(part) == 1:
                    refused.append((part[0], f"{type(exc).__name__}: {str(exc)[:200]}"))
                else:
                    middle = len(part) // 2
                    parts += [part[middle:], part[:middle]]
        quarantined = list(submission.quarantined)
        if refused:
            quarantined.append(_refused_item(refused))
        now = self._clock()
        with self._session_factory() as session, session.begin():
            self._add_quarantined(session, quarantined, now)
            if submission.checkpoint is not None:
                save_checkpoint(session, submission.checkpoint, now=now)
            if submission.also is not None:
                submission.also(session)
        return CommitResult(
            inserted=tuple(inserted),
            duplicates=len(submission.events) - len(inserted) - len(refused),
            quarantined=sum(q.count for q in quarantined),
            quarantine_rows=tuple(quarantined),
        )

    def _store_events(
        self, events: Sequence[Event], received: Mapping[str, datetime] | None
    ) -> list[Event]:
        now = self._clock()
        with self._session_factory() as session, session.begin():
            inserted = insert_events(session, events, received_at=now, received=received)
            apply_events(session, sorted(inserted, key=lambda e: e.occurred_at))
            learn_manifests(session, inserted, now=now)
        return inserted

    def _add_quarantined(
        self, session: Session, quarantined: Sequence[Quarantined], now: datetime
    ) -> None:
        expired = add_quarantined(
            session, list(quarantined), received_at=now, max_rows=self._quarantine_max_rows
        )
        if expired:
            self._metrics.quarantine_expired.inc(expired)

    def _transaction_again_on_conflict(self, batch: list[_Submission]) -> list[CommitResult]:
        """The group's transaction, run again (at once: the other writer holds the rows and
        commits) when PostgreSQL broke it off for a conflicting one (monitor.store.transaction)."""
        for _ in range(ATTEMPTS - 1):
            try:
                return self._transaction(batch)
            except Exception as exc:
                if not is_conflict(exc):
                    raise
                log.info("store conflict; committing the group again", detail=str(exc)[:200])
        return self._transaction(batch)

    def _transaction(self, batch: list[_Submission]) -> list[CommitResult]:
        started = time.perf_counter()
        now = self._clock()
        results: list[CommitResult] = []
        with self._session_factory() as session, session.begin():
            # The group's events go in together (one insert, one roll-up, one lookup of rebuilt
            # events), so the statements per commit do not grow with the requests sharing it.
            # Tag state is applied over the group in event-time order (its updates are
            # monotonic in event time), as the events of one submission always were.
            received = {k: v for s in batch if s.received for k, v in s.received.items()}
            inserted = insert_events(
                session, [e for s in batch for e in s.events], received_at=now, received=received
            )
            apply_events(session, sorted(inserted, key=lambda e: e.occurred_at))
            learn_manifests(session, inserted, now=now)
            unclaimed = {e.event_id for e in inserted}
            for submission in batch:
                # An event id sent twice in the group is stored once, for the first sender.
                mine: list[Event] = []
                for event in submission.events:
                    if event.event_id in unclaimed:
                        unclaimed.discard(event.event_id)
                        mine.append(event)
                self._add_quarantined(session, submission.quarantined, now)
                if submission.checkpoint is not None:
                    save_checkpoint(session, submission.checkpoint, now=now)
                if submission.also is not None:
                    submission.also(session)
                results.append(
                    CommitResult(
                        inserted=tuple(mine),
                        duplicates=len(submission.events) - len(mine),
                        quarantined=sum(q.count for q in submission.quarantined),
                        quarantine_rows=tuple(submission.quarantined),
                    )
                )
        self._metrics.commit_seconds.observe(time.perf_counter() - started)
        self._metrics.commit_batch_events.observe(sum(len(s.events) for s in batch))
        return results

    def _succeed(self, submission: _Submission, result: CommitResult) -> None:
        for event in result.inserted:
            self._metrics.events.labels(
                source=event.source.value,
                action=event.action.value,
                target_kind=event.target_kind.value if event.target_kind else "none",
            ).inc()
            method = (event.http_method or "").upper()
            if (
                event.action is Action.PULL
                and event.target_kind is TargetKind.MANIFEST
                and method in PULL_METHODS
            ):
                self._metrics.pulls.labels(client=event.client.value, http_method=method).inc()
            elif event.action is Action.AUTH_FAILURE:
                self._metrics.auth_failures.inc()
            elif event.action is Action.ACCESS_DENIED:
                self._metrics.access_denied.inc()
        if result.duplicates:
            self._metrics.duplicates.labels(source=submission.events[0].source.value).inc(
                result.duplicates
            )
        for item in result.quarantine_rows:
            self._metrics.quarantined.labels(source=item.source, reason=item.reason).inc(item.count)
        submission.future.set_result(result)

    def _fail(self, submission: _Submission, exc: Exception) -> None:
        self._metrics.store_errors.labels(operation="commit").inc()
        log.error("store commit failed", error=type(exc).__name__, detail=str(exc)[:500])
        submission.future.set_exception(
            StoreUnavailable("the store could not commit", details={"error": type(exc).__name__})
        )


def _refused_item(refused: list[tuple[Event, str]]) -> Quarantined:
    """One quarantine row for the events the store refused (NDJSON of the events)."""
    lines: list[bytes] = []
    for event, _why in refused:
        try:
            lines.append(orjson.dumps(event.to_dict()))
        except orjson.JSONEncodeError:
            lines.append(repr(event).encode("utf-8", "backslashreplace"))
    first = refused[0]
    return Quarantined(
        source=first[0].source.value,
        reason="store_refused",
        message=f"the store refused {len(refused)} event(s); first: {first[1]}",
        body=b"\n".join(lines),
        count=len(refused),
    )
