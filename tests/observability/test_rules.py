"""dashboards/prometheus: the alert rules pass promtool, follow the mixin conventions, and
each alert has a promtool test firing and one not firing, and a runbook section."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import yaml

from tests.observability.stack import PROMTOOL_BINARY, RULE_TESTS, RULES
from tests.paths import REPO
from tests.registry_harness import require_tools

RUNBOOK = "https://github.com/registry-monitor/registry-monitor/blob/main/README.md#"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    require_tools(PROMTOOL_BINARY)
    return subprocess.run(
        [PROMTOOL_BINARY, *args],
        cwd=RULES.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def alerts() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


def anchors() -> set[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in text.splitlines()
        if line.startswith("#")
    }


class TestPromtool:
    def test_check_rules(self) -> None:
        """`promtool check rules` accepts rules.yml."""
        result = promtool("check", "rules", RULES.name)
        assert (0, "") == (result.returncode, result.stderr)

    def test_unit_tests_pass(self) -> None:
        """`promtool test rules` passes every case of rules.test.yml."""
        result = promtool("test", "rules", RULE_TESTS.name)
        assert 0 == result.returncode, result.stdout + result.stderr


class TestConventions:
    def test_labels_and_annotations(self) -> None:
        """Every alert has a severity label and summary, description and runbook_url."""
        shapes = {
            rule["alert"]: (
                rule["labels"]["severity"] in {"critical", "warning", "info"},
                sorted(rule["annotations"]),
                rule["alert"].startswith(("RegistryMonitor", "Registry")),
                rule["annotations"]["summary"].endswith("."),
            )
            for rule in alerts()
        }
        expected = {
            name: (True, ["description", "runbook_url", "summary"], True, True) for name in shapes
        }
        assert expected == shapes

    def test_runbook_urls_point_at_their_section(self) -> None:
        """Each runbook_url is README.md with the alert's own, existing anchor."""
        urls = {rule["alert"]: rule["annotations"]["runbook_url"] for rule in alerts()}
        expected = {name: RUNBOOK + name.lower() for name in urls}
        assert expected == urls
        assert set() == {name.lower() for name in urls} - anchors()

    def test_each_alert_is_tested_firing_and_silent(self) -> None:
        """rules.test.yml has, for every alert, a case where it fires and one where it does not."""
        cases: dict[str, set[bool]] = {}
        for test in yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]:
            for case in test["alert_rule_test"]:
                cases.setdefault(case["alertname"], set()).add(bool(case["exp_alerts"]))
        assert {rule["alert"]: {True, False} for rule in alerts()} == cases
