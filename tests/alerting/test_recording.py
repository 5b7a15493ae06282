from __future__ import annotations

from monitor.alerting.notifier import Delivery, DeliveryRef
from monitor.alerting.recording import RECORDING_CHANNEL, RecordingNotifier
from monitor.alerts import Digest
from tests.alerting.factories import T0, make_alert


class TestRecordingNotifier:
    def test_records_calls_and_hands_out_refs(self) -> None:
        """Each call is recorded; new messages get fresh refs and a resolve keeps the first."""
        notifier = RecordingNotifier()
        alert = make_alert()
        first = notifier.send_new(alert).ref
        notifier.send_repeat(alert, first)
        resolved = notifier.send_resolved(alert, first)
        notifier.send_digest(Digest("r", T0, T0, (alert,)))
        expected = (
            DeliveryRef(RECORDING_CHANNEL, "1700000000.000001"),
            ["new", "repeat", "resolve", "digest"],
            Delivery.delivered(first),
        )
        assert expected == (first, [c.kind for c in notifier.calls], resolved)

    def test_scripted_outcomes_come_first(self) -> None:
        """Scripted outcomes answer the next calls in order, then delivery resumes."""
        notifier = RecordingNotifier([Delivery.retryable("down")])
        notifier.script(Delivery.permanent("invalid_auth"))
        outcomes = [notifier.send_new(make_alert()).outcome.value for _ in range(3)]
        expected = (["retryable", "permanent", "delivered"], 1)
        assert expected == (outcomes, len(notifier.delivered))

    def test_webhook_like_mode_returns_no_refs(self) -> None:
        """With threads=False it behaves like a webhook: delivered, without a ref."""
        expected = Delivery.delivered(None)
        assert expected == RecordingNotifier(threads=False).send_new(make_alert())
