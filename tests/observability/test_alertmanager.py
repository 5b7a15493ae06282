"""The shipped Alertmanager config, run by the real Alertmanager, delivers to a Slack webhook."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.harness import wait_for_port, wait_until
from tests.paths import REPO
from tests.registry_harness import ToolMissing, free_port
from tests.slack_server import SlackServer, running

CONFIG = REPO / "dashboards" / "alertmanager" / "alertmanager.yml"
SECRET_PATH = "/run/secrets/slack-webhook-url"


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ToolMissing(f"{name} is required (Debian: apt-get install prometheus-alertmanager)")
    return found


def rule(name: str) -> dict[str, Any]:
    groups = yaml.safe_load((REPO / "dashboards" / "prometheus" / "rules.yml").read_text())[
        "groups"
    ]
    for group in groups:
        for entry in group["rules"]:
            if entry.get("alert") == name:
                return dict(entry)
    raise KeyError(name)


@pytest.fixture
def slack() -> Iterator[SlackServer]:
    yield from running()


@pytest.fixture
def alertmanager(tmp_path: Path, slack: SlackServer) -> Iterator[str]:
    """The real Alertmanager with the repo's config; only the secret's path is changed."""
    secret = tmp_path / "slack-webhook-url"
    secret.write_text(slack.webhook_url + "\n")
    config = tmp_path / "alertmanager.yml"
    text = CONFIG.read_text()
    assert SECRET_PATH in text
    config.write_text(text.replace(SECRET_PATH, str(secret)))
    port = free_port()
    log = (tmp_path / "alertmanager.log").open("wb")
    process = subprocess.Popen(
        [
            binary("prometheus-alertmanager"),
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        wait_for_port(port, timeout=20, process=process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)
        log.close()


class TestAlertmanager:
    def test_amtool_accepts_the_config(self) -> None:
        """`amtool check-config` accepts the shipped config."""
        result = subprocess.run(
            [binary("amtool"), "check-config", str(CONFIG)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert 0 == result.returncode, result.stdout + result.stderr

    def test_a_firing_rule_reaches_slack_and_info_does_not(
        self, alertmanager: str, slack: SlackServer
    ) -> None:
        """A critical alert shaped by rules.yml is posted to Slack with its summary and runbook;
        an info alert goes to the null receiver."""
        store = rule("RegistryMonitorStoreErrors")
        # Started before the config's group_wait (30 s): Alertmanager sends without waiting.
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
        alerts = [
            {
                "labels": {"alertname": store["alert"], "operation": "commit", **store["labels"]},
                "annotations": {
                    "summary": store["annotations"]["summary"],
                    "description": "Store operation commit has failed for 5 minutes.",
                    "runbook_url": store["annotations"]["runbook_url"],
                },
                "startsAt": started,
            },
            {
                "labels": {"alertname": "SomethingInformational", "severity": "info"},
                "annotations": {"summary": "informational only"},
                "startsAt": started,
            },
        ]
        assert (
            200 == httpx.post(f"{alertmanager}/api/v2/alerts", json=alerts, timeout=10).status_code
        )
        wait_until(lambda: bool(slack.delivered()), timeout=60, what="a message to Slack")
        # The info alert is routed to the receiver without integrations: it can never be sent.
        routed = httpx.get(f"{alertmanager}/api/v2/alerts", timeout=10).json()
        assert {"RegistryMonitorStoreErrors": ["slack"], "SomethingInformational": ["null"]} == {
            a["labels"]["alertname"]: [r["name"] for r in a["receivers"]] for a in routed
        }
        (message,) = slack.delivered()
        body = json.dumps(message.payload)
        assert "RegistryMonitorStoreErrors" in body
        assert store["annotations"]["summary"] in body
        assert "README.md#registrymonitorstoreerrors" in body
        assert "informational only" not in body
