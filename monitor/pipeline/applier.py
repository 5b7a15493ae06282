"""Notification bodies from the intake inbox → events in the store.

`POST /v1/notifications` answers once the body is durable in the inbox (monitor/store/inbox.py);
this thread parses the waiting bodies, a batch at a time, and hands their events and the
unusable parts (quarantined, one row per body) to the store writer with the inbox's record
of what was applied, in one transaction. A batch the store cannot take now stays in the
inbox and is tried again; nothing the inbox accepted is dropped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from monitor.clock import Clock
from monitor.errors import StoreUnavailable
from monitor.events import Event
from monitor.ingest.boundary import Window
from monitor.ingest.notification import describe_rejected, parse_envelope
from monitor.observability.metrics import Metrics
from monitor.store.inbox import Inbox, InboxItem
from monitor.store.quarantine import Quarantined
from monitor.store.writer import StoreWriter

log = structlog.get_logger("monitor.pipeline.applier")

BATCH_BODIES = 256
# After a wake-up, bodies are gathered this long (unless a batch is full) so that one
# transaction applies many: at one registry's serial pace a body per commit would cost the
# process as much CPU as the answer saved.
GATHER_SECONDS = 0.05
RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0)  # while the store refuses to commit


def parse_bodies(
    items: Sequence[InboxItem], *, skew: timedelta, max_events: int
) -> tuple[list[Event], list[Quarantined], dict[str, datetime]]:
    """The events of `items`, one quarantine row per body with unusable parts, and when each
    event was received (its body's time, against which its own times were judged)."""
    events: list[Event] = []
    quarantined: list[Quarantined] = []
    received: dict[str, datetime] = {}
    for item in items:
        envelope = parse_envelope(
            item.body,
            item.content_type,
            window=Window(item.received_at, skew),
            max_events=max_events,
        )
        events.extend(envelope.events)
        received.update((event.event_id, item.received_at) for event in envelope.events)
        if envelope.rejected:
            reason, message = describe_rejected(envelope)
            quarantined.append(
                Quarantined(
                    source="notification",
                    reason=reason,
                    message=message,
                    body=item.body,
                    content_type=item.content_type,
                    remote_ip=item.remote_ip,
                    count=envelope.rejected_count,
                    received_at=item.received_at,
                )
            )
    return events, quarantined, received


class Applier(Protocol):
    """What the service starts, wakes and stops: `IntakeApplier` (a thread of this process) or
    `ApplierProcess` (the same, in a process of its own; monitor/pipeline/applier_process.py)."""

    def runs(self, job: str) -> bool:
        """Whether its process also runs the job of this name (`detect`, `follow-logs`,
        `reconcile-events`, `expire-events`), which `serve` then leaves out of its own job
        table."""

    def start(self) -> None: ...

    def stop(self, timeout: float = 10.0) -> None:
        """Applies what is waiting (within `timeout`; the rest stays in the inbox), then ends."""

    def wake(self) -> None:
        """Bodies were appended (called on the event loop: never blocks)."""

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every body appended so far is applied; False if `timeout` passed first."""


class IntakeApplier:
    """Applies the inbox on its own thread; `wake()` after an append, `start()`/`stop()`.

    `on_applied(items)` runs on that thread after each batch is committed."""

    def runs(self, job: str) -> bool:
        """False: `serve` runs every job on threads of its own beside this one."""
        return False

    def __init__(
        self,
        inbox: Inbox,
        writer: StoreWriter,
        *,
        metrics: Metrics,
        clock: Clock,
        skew: timedelta,
        max_events: int,
        batch_bodies: int = BATCH_BODIES,
        gather_seconds: float = GATHER_SECONDS,
        on_applied: Callable[[list[InboxItem]], None] | None = None,
    ) -> None:
        self._inbox = inbox
        self._writer = writer
        self._metrics = metrics
        self._clock = clock
        self._skew = skew
        self._max_events = max_events
        self._batch_bodies = batch_bodies
        self._gather_seconds = gather_seconds
        self._on_applied = on_applied
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._idle = threading.Condition()
        self._busy = False
        self._behind = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="intake-applier", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Applies what is waiting (within `timeout`; the rest stays in the inbox), then ends."""
        if self._thread is not None:
            self.drain(timeout)
            self._stopping.set()
            self._wake.set()
            self._thread.join(timeout)
            self._thread = None

    def wake(self) -> None:
        self._wake.set()

    def behind(self) -> bool:
        """True from a fetch that left bodies waiting (more than a batch takes) until a batch
        takes all that waits: what expiry gives way to (`housekeeping.rest_giving_way`)."""
        return self._behind

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every body appended so far is applied; False if `timeout` passed first."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._idle:
            while self._busy or self._inbox.backlog() > 0:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None:
                    return False
                self._idle.wait(min(left, 0.05))
        return True

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            # A pass at least every second: bodies left by a stopped replica, or from before a
            # restart, are applied without a wake-up.
            if self._wake.wait(1.0) and self._waiting(self._batch_bodies) < self._batch_bodies:
                self._stopping.wait(self._gather_seconds)
            self._wake.clear()
            with self._idle:
                self._busy = True
            try:
                applied_all = self._apply_waiting()
            except Exception as exc:  # the thread must outlive any one failure; bodies stay
                self._metrics.store_errors.labels(operation="apply").inc()
                log.exception("intake apply failed", error=type(exc).__name__)
                applied_all = False
            finally:
                with self._idle:
                    self._busy = False
                    self._idle.notify_all()
            failures = 0 if applied_all else failures + 1
            if failures:
                self._stopping.wait(RETRY_SECONDS[min(failures, len(RETRY_SECONDS)) - 1])
                self._wake.set()

    def _waiting(self, limit: int) -> int:
        """Bodies waiting, up to `limit` (on this thread: the inbox's reading connection is
        its own); 0 when the inbox cannot say (the pass that follows counts the failure)."""
        try:
            return self._inbox.waiting(limit, self._clock())
        except Exception:
            return 0

    def _apply_waiting(self) -> bool:
        """Applies batches while more waited than each took, until one took all that waited
        (True) or the store fails (False). What arrived while that last batch was applied
        waits for the next gathering: fetched at once, it made a batch of the few bodies of
        that moment, and at one registry's serial pace the process spent as much CPU on
        batches of a few bodies as `serve` on answering them."""
        while not self._stopping.is_set():
            now = self._clock()
            try:
                batch = self._inbox.fetch(self._batch_bodies, now)
            except Exception as exc:
                self._metrics.store_errors.labels(operation="inbox").inc()
                log.error("intake inbox read failed", error=type(exc).__name__, detail=str(exc))
                return False
            self._behind = batch.more
            if not batch.items:
                return True
            try:
                self._apply(batch.items, now)
            except StoreUnavailable:
                return False  # the writer has logged and counted it; the bodies stay
            if not batch.more:
                return True
        return True

    def _apply(self, items: list[InboxItem], now: datetime) -> None:
        events, quarantined, received = parse_bodies(
            items, skew=self._skew, max_events=self._max_events
        )
        result = self._writer.submit(
            events,
            quarantined,
            also=lambda session: self._inbox.record_applied(session, items, now),
            received=received,
        ).result()
        self._inbox.applied(items)
        done = self._clock()
        for item in items:
            self._metrics.intake_apply_delay.observe(
                max((done - item.received_at).total_seconds(), 0.0)
            )
        if result.quarantined:
            log.warning(
                "notification quarantined",
                reasons=sorted({q.reason for q in result.quarantine_rows}),
                quarantined=result.quarantined,
                bodies=len(quarantined),
                accepted=len(result.inserted),
            )
        if self._on_applied is not None:
            self._on_applied(items)
