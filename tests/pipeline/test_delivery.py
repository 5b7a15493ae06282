from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from monitor.events import Action, TargetKind
from monitor.pipeline.delivery import deliver_once
from monitor.pipeline.detection import detect_once
from monitor.runtime import Services
from tests.fixture_events import make_event
from tests.pipeline.support import (
    START,
    Clock,
    failures,
    outbox_rows,
    start_services,
    stop_services,
    store,
)
from tests.slack_server import CHANNEL, TOKEN, SlackServer, running


@pytest.fixture
def slack() -> Iterator[SlackServer]:
    yield from running()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def bot(db_url: str, tmp_path: Path, clock: Clock, slack: SlackServer) -> Iterator[Services]:
    """Services delivering with a bot token to the fake Slack."""
    services = start_services(
        db_url,
        tmp_path,
        clock,
        from_settings=True,
        REGISTRY_MONITOR_ALERTING_SLACK_BOT_TOKEN=TOKEN,
        REGISTRY_MONITOR_ALERTING_SLACK_CHANNEL=CHANNEL,
        REGISTRY_MONITOR_ALERTING_SLACK_API_URL=slack.api_url,
        REGISTRY_MONITOR_ALERTING_TIMEOUT_SECONDS="5",
    )
    try:
        yield services
    finally:
        stop_services(services)


def brute_force(services: Services, clock: Clock) -> None:
    """Five failed logins, detected: two alerts queued."""
    store(services, failures(5, start=START - timedelta(seconds=30)))
    clock.advance(3)
    detect_once(services)


def posted(slack: SlackServer) -> list[tuple[str, str | None]]:
    """(API method, thread_ts) of the requests Slack accepted."""
    return [(r.api_method, r.payload.get("thread_ts")) for r in slack.delivered()]


class TestDelivery:
    def test_rate_limited_then_delivered_once_each(self, bot, clock, slack):
        """A 429 with Retry-After holds the pass; after the wait each alert goes out once."""
        brute_force(bot, clock)
        slack.rate_limit_next(retry_after=2)
        not_before = deliver_once(bot)
        during = posted(slack)
        clock.advance(2)
        deliver_once(bot)
        expected: tuple[object, ...] = (
            START + timedelta(seconds=5),
            [],
            [("chat.postMessage", None), ("chat.postMessage", None)],
            ["done", "done"],
        )
        actual = (not_before, during, posted(slack), [s for _, _, s in outbox_rows(bot)])
        assert expected == actual

    def test_server_error_then_delivered_once_each(self, bot, clock, slack):
        """A 500 reschedules the row with backoff; later passes deliver each alert once."""
        brute_force(bot, clock)
        slack.error_next(500)
        deliver_once(bot)
        first = posted(slack)
        clock.advance(10)
        deliver_once(bot)
        expected: tuple[object, ...] = (
            [],
            [("chat.postMessage", None), ("chat.postMessage", None)],
        )
        assert expected == (first, posted(slack))

    def test_repeats_thread_and_resolve_updates_the_first_message(self, bot, clock, slack):
        """With a bot token a repeat goes into the first message's thread and the resolve
        rewrites that message."""
        store(bot, failures(5, start=START - timedelta(seconds=30), actor="eve"))
        clock.advance(3)
        detect_once(bot)
        deliver_once(bot)
        store(bot, failures(1, start=START - timedelta(seconds=5), actor="eve"))
        clock.advance(3)
        detect_once(bot)
        deliver_once(bot)
        clock.advance(11 * 60)
        detect_once(bot)
        deliver_once(bot)
        calls = posted(slack)
        requests = slack.delivered()
        roots = sorted(ts for (_, ts), msg in slack.messages.items() if msg.thread_ts is None)
        threads = sorted(str(thread) for _, thread in calls if thread)
        updates = sorted(str(r.payload["ts"]) for r in requests if r.api_method == "chat.update")
        expected = (6, 2, roots, roots)
        assert expected == (len(calls), len(roots), threads, updates)

    def test_channel_mention_in_a_repository_is_escaped_end_to_end(self, bot, clock, slack):
        """A delete in a repository named `<!channel>` reaches Slack as `&lt;!channel&gt;`."""
        store(
            bot,
            [
                make_event(
                    event_id="delete-channel",
                    occurred_at=START - timedelta(seconds=20),
                    action=Action.DELETE,
                    target_kind=TargetKind.MANIFEST,
                    repository="<!channel>",
                    http_method="DELETE",
                )
            ],
        )
        clock.advance(3)
        detect_once(bot)
        deliver_once(bot)
        bodies = [json.dumps(r.payload, ensure_ascii=False) for r in slack.delivered()]
        expected = (2, [True, True], [False, False])
        actual = (
            len(bodies),
            ["&lt;!channel&gt;" in body for body in bodies],
            ["<!channel>" in body for body in bodies],
        )
        assert expected == actual
