"""What a send returns and the `Notifier` seam every delivery goes through; no I/O.

`monitor.alerting.slack` implements it over slack-sdk; `monitor.alerting.recording` records
calls for tests. The outbox (and the store that keeps it) needs only these types.
"""

from __future__ import annotations

import dataclasses
from enum import StrEnum
from typing import Protocol

from monitor.alerts import Alert, Digest


@dataclasses.dataclass(frozen=True, slots=True)
class DeliveryRef:
    """Where a message landed: enough to thread under it or update it."""

    channel: str
    ts: str


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRY_AFTER = "retry_after"
    RETRYABLE = "retryable"
    PERMANENT = "permanent"


@dataclasses.dataclass(frozen=True, slots=True)
class Delivery:
    """The result of one send: `ref` when delivered (None for webhooks), or why not."""

    outcome: Outcome
    ref: DeliveryRef | None = None
    retry_after: float | None = None
    error: str | None = None

    @classmethod
    def delivered(cls, ref: DeliveryRef | None) -> Delivery:
        return cls(Outcome.DELIVERED, ref=ref)

    @classmethod
    def rate_limited(cls, retry_after: float, error: str = "ratelimited") -> Delivery:
        return cls(Outcome.RETRY_AFTER, retry_after=retry_after, error=error)

    @classmethod
    def retryable(cls, error: str) -> Delivery:
        return cls(Outcome.RETRYABLE, error=error)

    @classmethod
    def permanent(cls, error: str) -> Delivery:
        return cls(Outcome.PERMANENT, error=error)


class Notifier(Protocol):
    """Sends alert messages somewhere; never raises for a failed delivery."""

    def send_new(self, alert: Alert) -> Delivery:
        """Post the first message of an alert."""
        ...

    def send_repeat(self, alert: Alert, first: DeliveryRef | None) -> Delivery:
        """Say the alert fired again: in the thread of `first` when possible."""
        ...

    def send_resolved(self, alert: Alert, first: DeliveryRef | None) -> Delivery:
        """Show the alert resolved: rewrite `first` when possible, else post a message."""
        ...

    def send_digest(self, digest: Digest) -> Delivery:
        """Post one message summarising the alerts the hourly budget held back."""
        ...
