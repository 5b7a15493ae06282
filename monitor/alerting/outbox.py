"""The delivery loop over a durable outbox: every alert is stored first, then delivered.

`deliver_due` is one pass: it turns ended budget hours into digest rows, then takes the due
rows in order and sends each through a `Notifier`. A row is marked done right after its send,
so nothing is delivered twice; a failed send is rescheduled (429: after Retry-After; 5xx or
network: exponential backoff with jitter) or, when Slack says it can never work, kept as
failed. A Slack outage therefore delays alerts and loses none.

The SQL implementation of `Outbox` lives with the store; tests use an in-memory one.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from monitor.alerting.notifier import Delivery, DeliveryRef, Notifier, Outcome
from monitor.alerting.throttle import Budget, Suppressed, decide, plan_digests
from monitor.alerts import Alert, Digest


class Kind(StrEnum):
    NEW = "new"
    REPEAT = "repeat"
    RESOLVE = "resolve"
    DIGEST = "digest"


@dataclasses.dataclass(frozen=True, slots=True)
class OutboxRow:
    """A message waiting to be sent.

    `payload` is a `Digest` for digest rows and an `Alert` otherwise. `first` is the delivery
    ref of the first message delivered for the same fingerprint (None when there is none yet,
    or for webhooks).
    """

    id: int
    kind: Kind
    payload: Alert | Digest
    attempts: int
    next_attempt_at: datetime
    first: DeliveryRef | None = None

    @property
    def fingerprint(self) -> str:
        return self.payload.fingerprint

    @property
    def rule(self) -> str:
        return self.payload.rule


class Outbox(Protocol):
    """Durable storage of outgoing messages; calls apply at once (same transaction)."""

    def due(self, now: datetime, limit: int) -> Sequence[OutboxRow]:
        """Pending rows with `next_attempt_at <= now`, oldest id first, at most `limit`.

        A row is left out while an older pending row has the same fingerprint, so the messages
        of one alert go out in order (a repeat never overtakes its first message).
        """
        ...

    def sent_at(self, rule: str, since: datetime) -> Sequence[datetime]:
        """When messages counted against `rule`'s budget were delivered, at or after `since`."""
        ...

    def mark_done(
        self, row_id: int, *, ref: DeliveryRef | None, at: datetime, budgeted: bool
    ) -> None:
        """Delivered at `at`; keep `ref` for threading; `budgeted` counts it in `sent_at`."""
        ...

    def reschedule(self, row_id: int, *, next_attempt_at: datetime, error: str) -> None:
        """Not delivered this time: one more attempt, try again at `next_attempt_at`."""
        ...

    def mark_failed(self, row_id: int, *, error: str, at: datetime) -> None:
        """Slack refused it for good; keep the row, visible, with the reason."""
        ...

    def suppress(self, row_id: int, *, window_start: datetime) -> None:
        """Held back by the budget of the hour starting at `window_start`, for its digest."""
        ...

    def undigested(self) -> Sequence[tuple[int, Suppressed]]:
        """Suppressed rows (id, what) not yet covered by a digest."""
        ...

    def add_digest(self, digest: Digest, *, covers: Sequence[int], now: datetime) -> None:
        """Queue a digest row due at `now` and mark the `covers` rows as digested."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff for retryable failures: base * 2**attempts, jittered, within [base, cap]."""

    base_seconds: float = 1.0
    cap_seconds: float = 300.0

    def __post_init__(self) -> None:
        if not 0 < self.base_seconds <= self.cap_seconds:
            raise ValueError("need 0 < base_seconds <= cap_seconds")

    def delay(self, attempts: int, jitter: float) -> float:
        """Seconds to wait after the `attempts`-th failure (0-based); `jitter` is in [0, 1)."""
        exponent = min(max(attempts, 0), 32)
        raw = min(self.cap_seconds, self.base_seconds * 2.0**exponent)
        return max(self.base_seconds, raw * (0.5 + 0.5 * jitter))


@dataclasses.dataclass(slots=True)
class DeliveryReport:
    """What one pass did; the counters feed the metrics."""

    delivered: int = 0
    retried: int = 0
    rate_limited: int = 0
    failed: int = 0
    suppressed: int = 0
    digests_queued: int = 0
    not_before: datetime | None = None
    errors: list[str] = dataclasses.field(default_factory=list)


def _send(row: OutboxRow, first: DeliveryRef | None, notifier: Notifier) -> Delivery:
    payload = row.payload
    if isinstance(payload, Digest):
        return notifier.send_digest(payload)
    if row.kind is Kind.REPEAT:
        return notifier.send_repeat(payload, first)
    if row.kind is Kind.RESOLVE:
        return notifier.send_resolved(payload, first)
    return notifier.send_new(payload)


def _budgeted(row: OutboxRow, first: DeliveryRef | None) -> bool:
    """A message that lands in the channel counts; a digest or an in-place update does not."""
    if row.kind is Kind.DIGEST:
        return False
    return not (row.kind is Kind.RESOLVE and first is not None)


def queue_digests(outbox: Outbox, now: datetime) -> int:
    """Queue one digest per rule and ended hour for the suppressed rows; returns how many."""
    pending = outbox.undigested()
    digests = plan_digests([item for _, item in pending], now)
    for digest in digests:
        covers = [
            row_id
            for row_id, item in pending
            if item.alert.rule == digest.rule and item.window_start == digest.window_start
        ]
        outbox.add_digest(digest, covers=covers, now=now)
    return len(digests)


def deliver_due(
    outbox: Outbox,
    notifier: Notifier,
    now: datetime,
    *,
    budget: Budget | None = None,
    policy: RetryPolicy | None = None,
    limit: int = 100,
    jitter: Callable[[], float] = random.random,
) -> DeliveryReport:
    """One delivery pass at `now`; see the module docstring.

    The pass stops at the first 429 (`not_before` says when Slack accepts more) and at the
    first retryable failure (Slack is likely down); the remaining rows stay due.
    """
    budget = budget if budget is not None else Budget()
    policy = policy if policy is not None else RetryPolicy()
    report = DeliveryReport()
    report.digests_queued = queue_digests(outbox, now)
    firsts: dict[str, DeliveryRef] = {}
    for row in outbox.due(now, limit):
        first = row.first if row.first is not None else firsts.get(row.fingerprint)
        budgeted = _budgeted(row, first)
        if budgeted:
            decision = decide(
                outbox.sent_at(row.rule, now - timedelta(hours=1)), now, budget.for_rule(row.rule)
            )
            if not decision.send:
                outbox.suppress(row.id, window_start=decision.window_start)
                report.suppressed += 1
                continue
        delivery = _send(row, first, notifier)
        if delivery.outcome is Outcome.DELIVERED:
            outbox.mark_done(row.id, ref=delivery.ref, at=now, budgeted=budgeted)
            report.delivered += 1
            if first is None and delivery.ref is not None:
                firsts[row.fingerprint] = delivery.ref
            continue
        error = delivery.error or delivery.outcome.value
        report.errors.append(f"{row.kind.value} {row.fingerprint}: {error}")
        if delivery.outcome is Outcome.PERMANENT:
            outbox.mark_failed(row.id, error=error, at=now)
            report.failed += 1
            continue
        if delivery.outcome is Outcome.RETRY_AFTER:
            wait = delivery.retry_after if delivery.retry_after is not None else 1.0
            report.rate_limited += 1
            report.not_before = now + timedelta(seconds=wait)
        else:
            wait = policy.delay(row.attempts, jitter())
        outbox.reschedule(row.id, next_attempt_at=now + timedelta(seconds=wait), error=error)
        report.retried += 1
        break
    return report
