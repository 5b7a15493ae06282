from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from monitor.alerts import Mode, Severity
from monitor.detect.config import (
    DEFAULTS,
    BusinessHours,
    default_detect_config,
    load_detect_config,
    parse_detect_config,
)
from monitor.detect.values import parse_duration
from monitor.errors import ConfigError
from monitor.events import Client
from tests.fixture_events import make_event


class TestParseDetectConfig:
    def test_defaults_cover_every_rule(self):
        """Every rule has a configuration when nothing is given."""
        assert set(DEFAULTS) == set(default_detect_config().rules)

    def test_overrides(self):
        """Given keys override the defaults, the rest keep theirs."""
        config = parse_detect_config(
            {
                "rules": {
                    "brute_force_account": {
                        "threshold": 8,
                        "window": "1h",
                        "mode": "shadow",
                        "severity": "critical",
                    }
                }
            }
        )
        rule = config.rules["brute_force_account"]
        expected = (8, timedelta(hours=1), Mode.SHADOW, Severity.CRITICAL, timedelta(minutes=10))
        assert expected == (rule.threshold, rule.window, rule.mode, rule.severity, rule.cooldown)

    def test_global_allow_merges_into_rules(self):
        """The global allow-list joins each rule's own."""
        config = parse_detect_config({"allow": {"users": ["ci"]}})
        rule = config.rules["mass_pull"]
        assert (frozenset({"ci"}), frozenset({Client.MONITOR, Client.SCANNER})) == (
            rule.allow.users,
            rule.allow.clients,
        )

    @pytest.mark.parametrize(
        ("document", "key"),
        [
            ({"rulez": {}}, "rulez"),
            ({"rules": {"nope": {}}}, "rules.nope"),
            ({"rules": {"mass_pull": {"threshold": 0}}}, "rules.mass_pull.threshold"),
            ({"rules": {"mass_pull": {"threshold": True}}}, "rules.mass_pull.threshold"),
            ({"rules": {"mass_pull": {"window": "soon"}}}, "rules.mass_pull.window"),
            ({"rules": {"mass_pull": {"window": 0}}}, "rules.mass_pull.window"),
            ({"rules": {"mass_pull": {"cooldown": -1}}}, "rules.mass_pull.cooldown"),
            ({"rules": {"mass_pull": {"severity": "high"}}}, "rules.mass_pull.severity"),
            ({"rules": {"mass_pull": {"mode": "on"}}}, "rules.mass_pull.mode"),
            ({"rules": {"mass_pull": {"group_by": ["path"]}}}, "rules.mass_pull.group_by"),
            ({"rules": {"mass_pull": {"colour": 1}}}, "rules.mass_pull.colour"),
            ({"rules": {"mass_pull": {"max_bytes": "lots"}}}, "rules.mass_pull.max_bytes"),
            (
                {"rules": {"mass_pull": {"count_manifest_heads": 1}}},
                "rules.mass_pull.count_manifest_heads",
            ),
            ({"rules": {"tag_moved": {"patterns": [1]}}}, "rules.tag_moved.patterns"),
            (
                {"rules": {"success_after_failures": {"group_by": ["tag"]}}},
                "rules.success_after_failures.group_by",
            ),
            ({"allow": {"cidrs": ["10.0.0.0/33"]}}, "allow.cidrs"),
            ({"allow": {"clients": ["curl"]}}, "allow.clients"),
            ({"allow": {"ips": []}}, "allow.ips"),
            (
                {"rules": {"enumeration": {"allow": {"cidrs": "x"}}}},
                "rules.enumeration.allow.cidrs",
            ),
            ({"business_hours": {"timezone": "Mars/Olympus"}}, "business_hours.timezone"),
            ({"business_hours": {"weekdays": ["funday"]}}, "business_hours.weekdays"),
            ({"business_hours": {"start": "9am"}}, "business_hours.start"),
            ({"business_hours": {"start": "09:00", "end": "09:00"}}, "business_hours.end"),
            ({"business_hours": {"lunch": "12:00"}}, "business_hours.lunch"),
            ({"rules": []}, "rules"),
        ],
    )
    def test_errors_name_the_key(self, document, key):
        """Invalid configuration raises ConfigError naming the offending key."""
        with pytest.raises(ConfigError) as caught:
            parse_detect_config(document)
        assert key == caught.value.key

    def test_load_from_file(self, tmp_path: Path):
        """A YAML file is read and validated; YAML's sexagesimal 09:00 is understood."""
        path = tmp_path / "rules.yml"
        path.write_text("business_hours:\n  start: 08:30\nrules:\n  enumeration: {threshold: 3}\n")
        config = load_detect_config(path)
        assert (time(8, 30), 3) == (
            config.business_hours.start,
            config.rules["enumeration"].threshold,
        )

    def test_load_errors(self, tmp_path: Path):
        """A missing or broken file is a ConfigError on detect.rules_file."""
        broken = tmp_path / "broken.yml"
        broken.write_text("rules: [\n")
        keys = []
        for path in (tmp_path / "missing.yml", broken):
            with pytest.raises(ConfigError) as caught:
                load_detect_config(path)
            keys.append(caught.value.key)
        assert keys == ["detect.rules_file", "detect.rules_file"]

    def test_no_file_means_defaults(self):
        """No rules file gives the defaults."""
        assert default_detect_config() == load_detect_config(None)


class TestParseDuration:
    @pytest.mark.parametrize(
        ("text", "seconds"),
        [
            (30, 30),
            (1.5, 1.5),
            ("45", 45),
            ("30s", 30),
            ("10m", 600),
            ("2h", 7200),
            ("7d", 604800),
            (" 5 m ", 300),
        ],
    )
    def test_table(self, text, seconds):
        """Numbers are seconds; s, m, h and d are units."""
        assert timedelta(seconds=seconds) == parse_duration("k", text)


class TestBusinessHours:
    @pytest.mark.parametrize(
        ("hours", "moment", "inside"),
        [
            (BusinessHours(), datetime(2026, 11, 25, 9, 0, tzinfo=UTC), True),
            (BusinessHours(), datetime(2026, 11, 25, 18, 0, tzinfo=UTC), False),
            (BusinessHours(), datetime(2026, 11, 28, 12, 0, tzinfo=UTC), False),
            (
                BusinessHours(timezone="Europe/Berlin"),
                datetime(2026, 11, 25, 8, 30, tzinfo=UTC),
                True,
            ),
            (
                BusinessHours(timezone="Europe/Berlin"),
                datetime(2026, 7, 1, 16, 30, tzinfo=UTC),
                False,
            ),
            (
                BusinessHours(start=time(22), end=time(6)),
                datetime(2026, 11, 25, 23, tzinfo=UTC),
                True,
            ),
            (
                BusinessHours(start=time(22), end=time(6)),
                datetime(2026, 11, 25, 12, tzinfo=UTC),
                False,
            ),
        ],
        ids=[
            "start",
            "end",
            "saturday",
            "berlin-winter",
            "berlin-summer",
            "night-shift",
            "night-shift-noon",
        ],
    )
    def test_contains(self, hours, moment, inside):
        """Hours are local to the zone, start inclusive, end exclusive, may span midnight."""
        assert inside == hours.contains(moment)


class TestAllowList:
    @pytest.mark.parametrize(
        ("event", "matches"),
        [
            (make_event(remote_ip="10.1.2.3"), True),
            (make_event(remote_ip="127.0.0.1"), False),
            (make_event(remote_ip="not-an-ip"), False),
            (make_event(actor="ci"), True),
            (make_event(user_agent="Trivy/0.50"), True),
        ],
        ids=["cidr", "outside", "bad-address", "user", "client"],
    )
    def test_matches(self, event, matches):
        """An event matches by address, user or client class."""
        config = parse_detect_config(
            {"allow": {"cidrs": ["10.0.0.0/8"], "users": ["ci"], "clients": ["scanner"]}}
        )
        assert matches == config.allow.matches(event)

    def test_severity_ranks(self):
        """Severity ranks order info < warning < critical."""
        assert [s.rank for s in (Severity.INFO, Severity.WARNING, Severity.CRITICAL)] == [0, 1, 2]
