"""An in-memory `Notifier` that records every call, for tests (like `structlog.testing`).

Outcomes can be scripted: each call takes the next `Delivery` from `outcomes`; when none is
left, the call is delivered with a fresh `DeliveryRef` (channel `C0RECORDING`, increasing ts).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable

from monitor.alerting.notifier import Delivery, DeliveryRef, Outcome
from monitor.alerts import Alert, Digest

RECORDING_CHANNEL = "C0RECORDING"


@dataclasses.dataclass(frozen=True, slots=True)
class RecordedCall:
    """One call: its kind (new, repeat, resolve, digest), the payload, refs in and out."""

    kind: str
    payload: Alert | Digest
    first: DeliveryRef | None
    delivery: Delivery


class RecordingNotifier:
    """Records calls in `calls`; answers with scripted outcomes, then delivers."""

    def __init__(self, outcomes: Iterable[Delivery] = (), *, threads: bool = True) -> None:
        self.calls: list[RecordedCall] = []
        self._outcomes = deque(outcomes)
        self._threads = threads
        self._seq = 0

    def script(self, *outcomes: Delivery) -> None:
        """Answer the next calls with `outcomes`, in order."""
        self._outcomes.extend(outcomes)

    @property
    def delivered(self) -> list[RecordedCall]:
        return [c for c in self.calls if c.delivery.outcome is Outcome.DELIVERED]

    def _answer(self, kind: str, payload: Alert | Digest, first: DeliveryRef | None) -> Delivery:
        if self._outcomes:
            delivery = self._outcomes.popleft()
        elif not self._threads:
            delivery = Delivery.delivered(None)
        elif kind == "resolve" and first is not None:
            delivery = Delivery.delivered(first)
        else:
            self._seq += 1
            delivery = Delivery.delivered(
                DeliveryRef(channel=RECORDING_CHANNEL, ts=f"1700000000.{self._seq:06d}")
            )
        self.calls.append(RecordedCall(kind, payload, first, delivery))
        return delivery

    def send_new(self, alert: Alert) -> Delivery:
        return self._answer("new", alert, None)

    def send_repeat(self, alert: Alert, first: DeliveryRef | None) -> Delivery:
        return self._answer("repeat", alert, first)

    def send_resolved(self, alert: Alert, first: DeliveryRef | None) -> Delivery:
        return self._answer("resolve", alert, first)

    def send_digest(self, digest: Digest) -> Delivery:
        return self._answer("digest", digest, None)
