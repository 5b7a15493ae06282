from __future__ import annotations

import json

import pytest
from slack_sdk import WebClient

from monitor.alerting.notifier import Delivery, DeliveryRef, Outcome
from monitor.alerting.render import render_alert, render_resolved
from monitor.alerting.slack import (
    BotNotifier,
    WebhookNotifier,
    classify_http,
    parse_retry_after,
)
from monitor.alerts import Digest
from tests.alerting.factories import T0, make_alert
from tests.slack_server import CHANNEL, TOKEN, Fault, SlackServer


def bot(slack: SlackServer, token: str = TOKEN, channel: str = CHANNEL) -> BotNotifier:
    return BotNotifier(token, channel, base_url=slack.api_url, timeout=5)


def webhook(slack: SlackServer, url: str | None = None) -> WebhookNotifier:
    return WebhookNotifier(url or slack.webhook_url, timeout=5)


class TestParseRetryAfter:
    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            ("30", 30.0),
            ("1", 1.0),
            ("0", 1.0),
            (None, 1.0),
            ("soon", 1.0),
            ("nan", 1.0),
            ("99999", 3600.0),
            ("-4", 1.0),
        ],
    )
    def test_seconds_within_bounds(self, header: str | None, expected: float) -> None:
        """Retry-After is whole seconds; missing or odd values mean one second, capped at 1 h."""
        assert expected == parse_retry_after(header)


class TestClassifyHttp:
    @pytest.mark.parametrize(
        ("status", "headers", "expected"),
        [
            (429, {"retry-after": "7"}, Delivery.rate_limited(7.0, "x")),
            (500, {}, Delivery.retryable("HTTP 500: x")),
            (503, {}, Delivery.retryable("HTTP 503: x")),
            (408, {}, Delivery.retryable("HTTP 408: x")),
            (400, {}, Delivery.permanent("HTTP 400: x")),
            (403, {}, Delivery.permanent("HTTP 403: x")),
            (404, {}, Delivery.permanent("HTTP 404: x")),
        ],
    )
    def test_table(self, status: int, headers: dict[str, str], expected: Delivery) -> None:
        """429 waits Retry-After, 5xx and 408 retry, other 4xx are permanent."""
        assert expected == classify_http(status, headers, "x")


class TestBotNotifier:
    def test_new_alert_is_posted_with_blocks_and_returns_channel_and_ts(
        self, slack: SlackServer
    ) -> None:
        """chat.postMessage gets text, blocks, no unfurling and the bearer token."""
        alert = make_alert(subject={"repository": "<!channel>"})
        delivery = bot(slack).send_new(alert)
        (request,) = slack.requests
        message = render_alert(alert)
        expected = (
            Delivery.delivered(DeliveryRef(CHANNEL, "1700000000.000001")),
            "chat.postMessage",
            f"Bearer {TOKEN}",
            (message.text, message.blocks_list(), False, False),
        )
        assert expected == (
            delivery,
            request.api_method,
            request.headers["Authorization"],
            (
                request.payload["text"],
                request.payload["blocks"],
                request.payload["unfurl_links"],
                request.payload["unfurl_media"],
            ),
        )

    def test_repeat_goes_into_the_thread_of_the_first_message(self, slack: SlackServer) -> None:
        """A repeat is posted with thread_ts of the first message."""
        notifier = bot(slack)
        first = notifier.send_new(make_alert()).ref
        assert first is not None
        notifier.send_repeat(make_alert(count=2), first)
        expected = (first.ts, first.channel)
        reply = slack.requests[-1].payload
        assert expected == (reply["thread_ts"], reply["channel"])

    def test_resolve_updates_the_first_message(self, slack: SlackServer) -> None:
        """chat.update rewrites the first message with the resolved rendering."""
        notifier = bot(slack)
        alert = make_alert()
        first = notifier.send_new(alert).ref
        assert first is not None
        delivery = notifier.send_resolved(alert, first)
        stored = slack.messages[(first.channel, first.ts)]
        expected = (Delivery.delivered(first), "chat.update", render_resolved(alert).text)
        assert expected == (delivery, slack.requests[-1].api_method, stored.text)

    def test_resolve_without_a_first_message_posts_one(self, slack: SlackServer) -> None:
        """With nothing to update, the resolved rendering is posted as a message."""
        delivery = bot(slack).send_resolved(make_alert(), None)
        expected = (Outcome.DELIVERED, "chat.postMessage")
        assert expected == (delivery.outcome, slack.requests[-1].api_method)

    def test_digest_is_posted(self, slack: SlackServer) -> None:
        """A digest is one chat.postMessage."""
        delivery = bot(slack).send_digest(Digest("r", T0, T0, (make_alert(),)))
        expected = (Outcome.DELIVERED, "[DIGEST] 1 suppressed alert for r")
        assert expected == (delivery.outcome, slack.requests[-1].text)

    @pytest.mark.parametrize(
        ("fault", "expected"),
        [
            (
                Fault(429, '{"ok":false,"error":"ratelimited"}', (("Retry-After", "30"),)),
                Delivery.rate_limited(30.0),
            ),
            (Fault(500, "oops"), Outcome.RETRYABLE),
            (Fault(502, ""), Outcome.RETRYABLE),
            (Fault(404, "nope"), Outcome.PERMANENT),
        ],
    )
    def test_http_failures_are_classified(
        self, slack: SlackServer, fault: Fault, expected: Delivery | Outcome
    ) -> None:
        """429 carries Retry-After seconds; 5xx is retryable; other 4xx permanent."""
        slack.fail_next(fault)
        delivery = bot(slack).send_new(make_alert())
        actual = delivery if isinstance(expected, Delivery) else delivery.outcome
        requests_seen = 1  # slack-sdk did not retry on its own
        assert (expected, requests_seen) == (actual, len(slack.requests))

    @pytest.mark.parametrize(
        ("token", "channel", "expected"),
        [
            ("xoxb-wrong", CHANNEL, Delivery.permanent("invalid_auth")),
            (TOKEN, "C0NOWHERE", Delivery.permanent("channel_not_found")),
        ],
    )
    def test_api_errors_are_permanent(
        self, slack: SlackServer, token: str, channel: str, expected: Delivery
    ) -> None:
        """invalid_auth and channel_not_found will never work: permanent."""
        assert expected == bot(slack, token, channel).send_new(make_alert())

    def test_update_of_an_unknown_message_is_permanent(self, slack: SlackServer) -> None:
        """message_not_found on chat.update is permanent."""
        ghost = DeliveryRef(CHANNEL, "1.000000")
        expected = Delivery.permanent("message_not_found")
        assert expected == bot(slack).send_resolved(make_alert(), ghost)

    def test_server_down_is_retryable(self, slack: SlackServer) -> None:
        """A refused connection is retryable and slack-sdk does not retry it inside the call."""
        slack.down()
        delivery = bot(slack).send_new(make_alert())
        slack.up()
        expected = (Outcome.RETRYABLE, 0)
        assert expected == (delivery.outcome, len(slack.requests))


class TestWebhookNotifier:
    def test_every_kind_is_a_new_message_without_a_ref(self, slack: SlackServer) -> None:
        """A webhook cannot thread or update: all four calls post, and no ref comes back."""
        notifier = webhook(slack)
        ref = DeliveryRef(CHANNEL, "1.0")
        alert = make_alert()
        deliveries = [
            notifier.send_new(alert),
            notifier.send_repeat(alert, ref),
            notifier.send_resolved(alert, ref),
            notifier.send_digest(Digest("r", T0, T0, (alert,))),
        ]
        expected = (
            [Delivery.delivered(None)] * 4,
            ["[WARNING] ", "Repeat [WARNING] ", "[RESOLVED] ", "[DIGEST] "],
            [False] * 4,
        )
        assert expected == (
            deliveries,
            [
                r.text.split("auth_brute_force", 1)[0].split("1 suppressed")[0]
                for r in slack.requests
            ],
            ["thread_ts" in r.payload for r in slack.requests],
        )

    def test_body_is_json_with_text_and_blocks(self, slack: SlackServer) -> None:
        """The webhook body is JSON carrying text, blocks and no unfurling."""
        alert = make_alert()
        webhook(slack).send_new(alert)
        (request,) = slack.requests
        expected = {
            "text": render_alert(alert).text,
            "blocks": render_alert(alert).blocks_list(),
            "unfurl_links": False,
            "unfurl_media": False,
        }
        assert expected == json.loads(json.dumps(request.payload))

    @pytest.mark.parametrize(
        ("fault", "expected"),
        [
            (
                Fault(429, "rate_limited", (("Retry-After", "5"),)),
                Delivery.rate_limited(5.0, "rate_limited"),
            ),
            (Fault(500, "rollup_error"), Delivery.retryable("HTTP 500: rollup_error")),
            (
                Fault(410, "channel_is_archived"),
                Delivery.permanent("HTTP 410: channel_is_archived"),
            ),
            (Fault(403, "action_prohibited"), Delivery.permanent("HTTP 403: action_prohibited")),
        ],
    )
    def test_failures_are_classified(
        self, slack: SlackServer, fault: Fault, expected: Delivery
    ) -> None:
        """Webhook answers are classified like Web API ones, with the body as the reason."""
        slack.fail_next(fault)
        assert expected == webhook(slack).send_new(make_alert())

    def test_unknown_webhook_is_permanent(self, slack: SlackServer) -> None:
        """A revoked webhook (404 no_service) is permanent."""
        expected = Delivery.permanent("HTTP 404: no_service")
        assert expected == webhook(slack, slack.url + "/services/T/B/gone").send_new(make_alert())

    def test_server_down_is_retryable(self, slack: SlackServer) -> None:
        """A refused connection is retryable."""
        slack.down()
        expected = Outcome.RETRYABLE
        assert expected == webhook(slack).send_new(make_alert()).outcome


class TestFakeSlackServer:
    def test_accepts_form_encoded_web_api_calls(self, slack: SlackServer) -> None:
        """The fake reads form bodies (with the token as a field) as well as JSON."""
        client = WebClient(base_url=slack.api_url, retry_handlers=[])
        response = client.api_call(
            "chat.postMessage", data={"token": TOKEN, "channel": CHANNEL, "text": "hi"}
        )
        expected = (True, CHANNEL, "hi", "application/x-www-form-urlencoded")
        assert expected == (
            response["ok"],
            response["channel"],
            slack.requests[0].payload["text"],
            slack.requests[0].headers["Content-Type"],
        )
