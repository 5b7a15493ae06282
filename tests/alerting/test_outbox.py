from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.alerting.notifier import Delivery, Notifier
from monitor.alerting.outbox import DeliveryReport, Kind, RetryPolicy, deliver_due
from monitor.alerting.recording import RecordingNotifier
from monitor.alerting.slack import BotNotifier, WebhookNotifier
from monitor.alerting.throttle import Budget
from monitor.alerts import Alert, AlertState, Digest
from tests.alerting.factories import T0, make_alert
from tests.alerting.memory_outbox import MemoryOutbox
from tests.slack_server import CHANNEL, TOKEN, SlackServer


def alert(i: int, **overrides: object) -> Alert:
    fields: dict[str, object] = {"fingerprint": f"fp{i}", "summary": f"alert {i}"}
    fields.update(overrides)
    return make_alert(**fields)


def no_jitter() -> float:
    return 0.0


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def drain(
    outbox: MemoryOutbox, notifier: Notifier, *, start_after: float = 0, ticks: int = 100
) -> list[DeliveryReport]:
    """The delivery loop: a pass every second, none before `not_before`, until done (bounded)."""
    reports: list[DeliveryReport] = []
    not_before = T0 + seconds(start_after)
    for i in range(ticks):
        if "pending" not in outbox.statuses():
            break
        now = T0 + seconds(start_after + i)
        if now < not_before:
            continue
        report = deliver_due(outbox, notifier, now, jitter=no_jitter)
        reports.append(report)
        not_before = report.not_before or now
    return reports


def delivered_summaries(slack: SlackServer) -> Counter[str]:
    """How often each `alert N` summary was delivered to Slack."""
    texts = [r.text for r in slack.delivered()]
    return Counter(t.split(": ", 1)[1].split(" (count", 1)[0] for t in texts if ": " in t)


class TestRetryPolicy:
    @pytest.mark.parametrize(
        ("attempts", "jitter", "expected"),
        [
            (0, 0.0, 1.0),
            (1, 0.0, 1.0),
            (2, 0.0, 2.0),
            (3, 0.5, 6.0),
            (3, 1.0, 8.0),
            (20, 0.0, 150.0),
            (20, 1.0, 300.0),
            (10_000, 1.0, 300.0),
        ],
    )
    def test_exponential_jittered_and_capped(
        self, attempts: int, jitter: float, expected: float
    ) -> None:
        """The delay doubles per attempt, jitter takes up to half off, within 1 s .. 5 min."""
        assert expected == RetryPolicy().delay(attempts, jitter)

    @given(st.integers(min_value=0, max_value=10**9), st.floats(min_value=0, max_value=1))
    def test_always_within_bounds(self, attempts: int, jitter: float) -> None:
        """Whatever the attempt and jitter, the delay stays between base and cap."""
        delay = RetryPolicy().delay(attempts, jitter)
        expected = (True, True)
        assert expected == (delay >= 1.0, delay <= 300.0)


class TestDeliverDue:
    def test_due_rows_are_sent_in_order_and_marked_done(self) -> None:
        """Due rows go out oldest first; a row due later is left alone."""
        outbox, notifier = MemoryOutbox(), RecordingNotifier()
        for i in range(3):
            outbox.add(Kind.NEW, alert(i), T0)
        outbox.add(Kind.NEW, alert(9), T0 + seconds(60))
        report = deliver_due(outbox, notifier, T0)
        expected = (3, ["fp0", "fp1", "fp2"], ["done", "done", "done", "pending"])
        assert expected == (
            report.delivered,
            [c.payload.fingerprint for c in notifier.calls],
            outbox.statuses(),
        )

    def test_repeat_and_resolve_use_the_first_message(self) -> None:
        """Repeats thread under, and the resolve updates, the ref of the first delivery."""
        outbox, notifier = MemoryOutbox(), RecordingNotifier()
        outbox.add(Kind.NEW, alert(1), T0)
        outbox.add(Kind.REPEAT, alert(1, count=2), T0)
        outbox.add(Kind.RESOLVE, alert(1, state=AlertState.RESOLVED), T0)
        drain(outbox, notifier)
        first = notifier.calls[0].delivery.ref
        expected = (["new", "repeat", "resolve"], [None, first, first])
        assert expected == ([c.kind for c in notifier.calls], [c.first for c in notifier.calls])

    def test_a_repeat_never_overtakes_its_first_message(self) -> None:
        """While the first message is being retried, the repeat of the same alert waits."""
        outbox = MemoryOutbox()
        notifier = RecordingNotifier([Delivery.retryable("HTTP 500: x")])
        outbox.add(Kind.NEW, alert(1), T0)
        outbox.add(Kind.REPEAT, alert(1, count=2), T0)
        outbox.add(Kind.NEW, alert(2), T0)
        first_pass = deliver_due(outbox, notifier, T0, jitter=no_jitter)
        second_pass = deliver_due(outbox, notifier, T0 + seconds(0.5), jitter=no_jitter)
        third_pass = deliver_due(outbox, notifier, T0 + seconds(1), jitter=no_jitter)
        fourth_pass = deliver_due(outbox, notifier, T0 + seconds(1), jitter=no_jitter)
        expected = (
            [(0, 1), (1, 0), (1, 0), (1, 0)],
            [("new", "fp1"), ("new", "fp2"), ("new", "fp1"), ("repeat", "fp1")],
        )
        assert expected == (
            [(r.delivered, r.retried) for r in (first_pass, second_pass, third_pass, fourth_pass)],
            [(c.kind, c.payload.fingerprint) for c in notifier.calls],
        )

    def test_rate_limit_reschedules_after_retry_after_and_stops_the_pass(self) -> None:
        """A 429 moves the row to now + Retry-After and leaves the other rows for later."""
        outbox = MemoryOutbox()
        notifier = RecordingNotifier([Delivery.rate_limited(30.0)])
        outbox.add(Kind.NEW, alert(1), T0)
        outbox.add(Kind.NEW, alert(2), T0)
        report = deliver_due(outbox, notifier, T0)
        expected = (1, 1, 0, T0 + seconds(30), T0 + seconds(30), 1, 1)
        assert expected == (
            report.rate_limited,
            report.retried,
            report.delivered,
            report.not_before,
            outbox.row(1).next_attempt_at,
            outbox.row(1).attempts,
            len(notifier.calls),
        )

    def test_retryable_failures_back_off_exponentially(self) -> None:
        """Each retryable failure doubles the wait (with jitter 0: 1 s, 1 s, 2 s, 4 s)."""
        outbox = MemoryOutbox()
        notifier = RecordingNotifier([Delivery.retryable("down")] * 4)
        outbox.add(Kind.NEW, alert(1), T0)
        waits = []
        now = T0
        for _ in range(4):
            deliver_due(outbox, notifier, now, jitter=no_jitter)
            waits.append((outbox.row(1).next_attempt_at - now).total_seconds())
            now = outbox.row(1).next_attempt_at
        deliver_due(outbox, notifier, now, jitter=no_jitter)
        expected = ([1.0, 1.0, 2.0, 4.0], "done", 5)
        assert expected == (waits, outbox.row(1).status, len(notifier.calls))

    def test_permanent_failure_is_kept_and_the_pass_goes_on(self) -> None:
        """A permanent failure marks the row failed (kept, with the reason) and others still go."""
        outbox = MemoryOutbox()
        notifier = RecordingNotifier([Delivery.permanent("channel_not_found")])
        outbox.add(Kind.NEW, alert(1), T0)
        outbox.add(Kind.NEW, alert(2), T0)
        report = deliver_due(outbox, notifier, T0)
        expected = ((1, 1), ["failed", "done"], "channel_not_found")
        assert expected == (
            (report.failed, report.delivered),
            outbox.statuses(),
            outbox.row(1).error,
        )

    def test_budget_suppresses_and_the_digest_follows_the_hour(self) -> None:
        """Beyond the hourly budget alerts are suppressed; after the hour one digest lists them."""
        outbox, notifier = MemoryOutbox(), RecordingNotifier()
        for i in range(5):
            outbox.add(Kind.NEW, alert(i), T0)
        report = deliver_due(outbox, notifier, T0, budget=Budget(per_hour=2))
        next_hour = T0.replace(minute=0, second=0) + timedelta(hours=1)
        later = deliver_due(outbox, notifier, next_hour, budget=Budget(per_hour=2))
        digest = notifier.calls[-1].payload
        assert isinstance(digest, Digest)
        expected = ((2, 3), (1, 1), ["fp2", "fp3", "fp4"], ["done"] * 2 + ["digested"] * 3)
        assert expected == (
            (report.delivered, report.suppressed),
            (later.digests_queued, later.delivered),
            [a.fingerprint for a in digest.alerts],
            outbox.statuses()[:5],
        )

    def test_updating_a_message_costs_no_budget(self) -> None:
        """A resolve that updates the first message is sent even when the budget is spent."""
        outbox, notifier = MemoryOutbox(), RecordingNotifier()
        outbox.add(Kind.NEW, alert(1), T0)
        deliver_due(outbox, notifier, T0, budget=Budget(per_hour=1))
        outbox.add(Kind.RESOLVE, alert(1, state=AlertState.RESOLVED), T0)
        outbox.add(Kind.NEW, alert(2), T0)
        report = deliver_due(outbox, notifier, T0, budget=Budget(per_hour=1))
        expected = (1, 1, ["new", "resolve"])
        assert expected == (report.delivered, report.suppressed, [c.kind for c in notifier.calls])


class TestDeliveryEndToEnd:
    """The outbox loop against the local fake Slack, with slack-sdk doing the HTTP."""

    def bot(self, slack: SlackServer, token: str = TOKEN) -> BotNotifier:
        return BotNotifier(token, CHANNEL, base_url=slack.api_url, timeout=5)

    def test_rate_limited_then_delivered_after_retry_after(self, slack: SlackServer) -> None:
        """After a 429 with Retry-After: 3 the loop sends nothing for 3 s; then all, once."""
        outbox = MemoryOutbox()
        for i in range(3):
            outbox.add(Kind.NEW, alert(i), T0)
        slack.rate_limit_next(retry_after=3)
        reports = drain(outbox, self.bot(slack))
        expected = (
            [0, 3],
            [T0 + seconds(3), None],
            Counter({"alert 0": 1, "alert 1": 1, "alert 2": 1}),
            4,
        )
        assert expected == (
            [r.delivered for r in reports],
            [r.not_before for r in reports],
            delivered_summaries(slack),
            len(slack.requests),
        )

    def test_server_error_then_delivered(self, slack: SlackServer) -> None:
        """Two 500s delay the first alert; every alert is still delivered exactly once."""
        outbox = MemoryOutbox()
        for i in range(3):
            outbox.add(Kind.NEW, alert(i), T0)
        slack.error_next(500)
        slack.error_next(503)
        reports = drain(outbox, self.bot(slack))
        expected = (2, 3, Counter({"alert 0": 1, "alert 1": 1, "alert 2": 1}), 5)
        assert expected == (
            sum(r.retried for r in reports),
            sum(r.delivered for r in reports),
            delivered_summaries(slack),
            len(slack.requests),
        )

    def test_slack_down_for_a_while_loses_nothing(self, slack: SlackServer) -> None:
        """While Slack refuses connections alerts wait; when it is back each goes out once."""
        outbox = MemoryOutbox()
        notifier = self.bot(slack)
        slack.down()
        for i in range(4):
            outbox.add(Kind.NEW, alert(i), T0)
        during = [
            deliver_due(outbox, notifier, T0 + seconds(s), jitter=no_jitter) for s in range(5)
        ]
        slack.up()
        after = drain(outbox, notifier, start_after=60)
        expected = (0, 4, Counter({f"alert {i}": 1 for i in range(4)}), ["done"] * 4)
        assert expected == (
            sum(r.delivered for r in during),
            sum(r.delivered for r in after),
            delivered_summaries(slack),
            outbox.statuses(),
        )

    def test_bot_threads_repeats_and_updates_on_resolve(self, slack: SlackServer) -> None:
        """With a bot token, repeats are thread replies and the resolve rewrites the root."""
        outbox = MemoryOutbox()
        outbox.add(Kind.NEW, alert(1), T0)
        outbox.add(Kind.REPEAT, alert(1, count=2), T0)
        outbox.add(Kind.REPEAT, alert(1, count=3), T0)
        outbox.add(Kind.RESOLVE, alert(1, count=3, state=AlertState.RESOLVED), T0)
        drain(outbox, self.bot(slack))
        root = slack.messages[(CHANNEL, "1700000000.000001")]
        replies = [m for m in slack.messages.values() if m.thread_ts is not None]
        expected = (
            ["chat.postMessage", "chat.postMessage", "chat.postMessage", "chat.update"],
            [root.ts, root.ts],
            "[RESOLVED] auth_brute_force: alert 1 (count 3)",
            ["done"] * 4,
        )
        assert expected == (
            [r.api_method for r in slack.requests],
            [m.thread_ts for m in replies],
            root.text,
            outbox.statuses(),
        )

    def test_webhook_sends_every_message_as_a_new_one(self, slack: SlackServer) -> None:
        """With a webhook, the repeat and the resolve are new messages, in order, once each."""
        outbox = MemoryOutbox()
        outbox.add(Kind.NEW, alert(1), T0)
        outbox.add(Kind.REPEAT, alert(1, count=2), T0)
        outbox.add(Kind.RESOLVE, alert(1, count=2, state=AlertState.RESOLVED), T0)
        drain(outbox, WebhookNotifier(slack.webhook_url, timeout=5))
        expected = (
            [
                "[WARNING] auth_brute_force: alert 1 (count 1)",
                "Repeat [WARNING] auth_brute_force: alert 1 (count 2)",
                "[RESOLVED] auth_brute_force: alert 1 (count 2)",
            ],
            ["done"] * 3,
        )
        assert expected == ([r.text for r in slack.requests], outbox.statuses())

    def test_permanent_error_is_kept_as_failed(self, slack: SlackServer) -> None:
        """invalid_auth fails each row once, keeps it as failed and never retries it."""
        outbox = MemoryOutbox()
        outbox.add(Kind.NEW, alert(1), T0)
        outbox.add(Kind.NEW, alert(2), T0)
        reports = drain(outbox, self.bot(slack, token="xoxb-revoked"))
        expected = (2, ["failed", "failed"], ["invalid_auth", "invalid_auth"], 2)
        assert expected == (
            sum(r.failed for r in reports),
            outbox.statuses(),
            [row.error for row in outbox.rows],
            len(slack.requests),
        )
