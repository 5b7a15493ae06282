from __future__ import annotations

import json
from typing import Any

from monitor.cli import main
from monitor.pipeline.detection import detect_once
from tests.pipeline.support import (
    Clock,
    alert_rows,
    post_scenario,
    roles_file,
    start_services,
    stop_services,
)
from tests.slack_server import CHANNEL, TOKEN, SlackServer


class TestAlertsAndReplayCommands:
    def test_alerts_and_replay_agree_with_the_live_path(self, db_url, tmp_path, capsys):
        """`alerts --json` lists what the live job stored; `detect replay` prints the same
        alerts and sends nothing, even with Slack configured."""
        clock = Clock()
        services = start_services(db_url, tmp_path, clock)
        post_scenario(services)
        clock.advance(5)
        detect_once(services)
        live = alert_rows(services)
        stop_services(services)
        with SlackServer() as slack:
            environ = {
                "REGISTRY_MONITOR_DATABASE_URL": db_url,
                "REGISTRY_MONITOR_DETECT_ROLES_FILE": str(roles_file(tmp_path)),
                "REGISTRY_MONITOR_ALERTING_SLACK_BOT_TOKEN": TOKEN,
                "REGISTRY_MONITOR_ALERTING_SLACK_CHANNEL": CHANNEL,
                "REGISTRY_MONITOR_ALERTING_SLACK_API_URL": slack.api_url,
                "REGISTRY_MONITOR_LOGGING_LEVEL": "error",
            }
            capsys.readouterr()
            codes = [main(["alerts", "--json"], environ)]
            listed = json.loads(capsys.readouterr().out)["items"]
            codes.append(
                main(
                    [
                        "detect",
                        "replay",
                        "--since",
                        "2026-11-27T04:00:00Z",
                        "--until",
                        "2026-11-27T06:00:00Z",
                        "--json",
                    ],
                    environ,
                )
            )
            replayed = json.loads(capsys.readouterr().out)
            requests = len(slack.requests)

        def rows(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
            return sorted(
                (i["rule"], i["mode"], i["severity"], tuple(i["subject"].items()), i["count"])
                for i in items
            )

        expected = ([0, 0], live, live, 54, 0)
        actual = (codes, rows(listed), rows(replayed["findings"]), replayed["events"], requests)
        assert expected == actual

    def test_alerts_table_filters_by_rule(self, db_url, tmp_path, capsys):
        """`alerts --rule R` prints a table of that rule's alerts only."""
        clock = Clock()
        services = start_services(db_url, tmp_path, clock)
        post_scenario(services)
        clock.advance(5)
        detect_once(services)
        stop_services(services)
        capsys.readouterr()
        environ = {"REGISTRY_MONITOR_DATABASE_URL": db_url}
        code = main(["alerts", "--rule", "out_of_role", "--state", "firing"], environ)
        lines = capsys.readouterr().out.strip().splitlines()
        expected = (0, 2, True)
        assert expected == (code, len(lines), "out_of_role" in lines[1])
