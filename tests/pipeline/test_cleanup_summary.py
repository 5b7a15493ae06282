"""A cleanup apply's summary reaches Slack through the outbox, escaped, exactly once."""

from __future__ import annotations

from datetime import UTC, datetime

from monitor.alerting.recording import RecordingNotifier
from monitor.alerting.render import render_alert
from monitor.pipeline.cleanup_summary import RULE, outbox_sender
from monitor.pipeline.delivery import deliver_pass
from monitor.runtime import Services

NOW = datetime(2026, 11, 27, 5, 0, tzinfo=UTC)


class TestCleanupSummary:
    def test_queued_then_delivered_once_and_escaped(self, services: Services) -> None:
        """The summary waits in the outbox and is sent once; client text cannot ping anyone."""
        send = outbox_sender(services.session_factory, lambda: NOW)
        send("*Cleanup plan p1*: 1 tags deleted\n• deleted `<!channel>:v1`")
        notifier = RecordingNotifier()
        deliver_pass(services.session_factory, notifier, now=NOW)
        deliver_pass(services.session_factory, notifier, now=NOW)
        (call,) = notifier.delivered
        assert RULE == call.payload.rule
        message = render_alert(call.payload)  # type: ignore[arg-type]
        assert "<!channel>" not in str(message.blocks) + message.text
        assert "&lt;!channel&gt;" in str(message.blocks)
