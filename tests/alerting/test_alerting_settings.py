from __future__ import annotations

import pytest

from monitor.errors import ConfigError
from monitor.settings import Secret, load_settings

PREFIX = "REGISTRY_MONITOR_ALERTING_"


class TestAlertingSettings:
    def test_defaults_send_nowhere_with_a_budget_of_twenty(self) -> None:
        """With nothing configured there is no Slack target and the budget is 20 per hour."""
        alerting = load_settings({}).alerting
        expected = (None, None, 20, 1.0, 300.0)
        assert expected == (
            alerting.slack_webhook_url,
            alerting.slack_bot_token,
            alerting.budget_per_hour,
            alerting.retry_min_seconds,
            alerting.retry_max_seconds,
        )

    def test_bot_token_and_channel_come_from_the_environment(self) -> None:
        """The token is a Secret; the channel and API URL are plain settings."""
        environ = {f"{PREFIX}SLACK_BOT_TOKEN": "xoxb-1", f"{PREFIX}SLACK_CHANNEL": "C1"}
        alerting = load_settings(environ).alerting
        expected = (Secret("xoxb-1"), "C1", "https://slack.com/api/")
        assert expected == (
            alerting.slack_bot_token,
            alerting.slack_channel,
            alerting.slack_api_url,
        )

    @pytest.mark.parametrize(
        ("environ", "key"),
        [
            ({f"{PREFIX}SLACK_BOT_TOKEN": "xoxb-1"}, "alerting.slack_channel"),
            ({f"{PREFIX}BUDGET_PER_HOUR": "-1"}, "alerting.budget_per_hour"),
            (
                {f"{PREFIX}RETRY_MIN_SECONDS": "10", f"{PREFIX}RETRY_MAX_SECONDS": "5"},
                "alerting.retry_min_seconds",
            ),
        ],
    )
    def test_invalid_combinations_name_the_key(self, environ: dict[str, str], key: str) -> None:
        """A bot token without channel, a negative budget or inverted backoff bounds fail."""
        with pytest.raises(ConfigError) as info:
            load_settings(environ)
        assert key == info.value.key
