from __future__ import annotations

from typing import ClassVar

import pytest

from monitor.events import Action, Event, Source, TargetKind
from tests.detect.fixture_events import log_events, notification_events
from tests.detect.rule_runs import run_rule
from tests.fixture_events import make_event

LOOPBACK = (("remote_ip", "127.0.0.1"),)
ALICE = (("actor", "alice"),)


def request(seconds: float, route: str, uri: str, status: int = 200, **kwargs) -> Event:
    return make_event(
        source=Source.LOG,
        action=Action.REQUEST,
        target_kind=None,
        digest=None,
        route=route,
        request_uri=uri,
        http_status=status,
        seconds=seconds,
        **kwargs,
    )


def tag_listings(count: int, step: float = 1.0, **kwargs) -> list[Event]:
    return [request(i * step, "tags", f"/v2/repo{i}/tags/list", **kwargs) for i in range(count)]


def pulls(count: int, step: float = 1.0, **kwargs) -> list[Event]:
    return [make_event(seconds=i * step, repository=f"team/app{i}", **kwargs) for i in range(count)]


class TestEnumeration:
    @pytest.mark.parametrize(
        ("events", "expected"),
        [
            (log_events(), []),
            (tag_listings(9), []),
            (tag_listings(10), [("warning", LOOPBACK, 1)]),
            ([request(i, "tags", "/v2/library/hello/tags/list") for i in range(30)], []),
            (
                [request(i, "manifest", f"/v2/x/manifests/t{i}", 404) for i in range(10)],
                [("warning", LOOPBACK, 1)],
            ),
            ([request(i, "manifest", f"/v2/x/manifests/t{i}", 200) for i in range(10)], []),
            ([request(i, "blob", f"/v2/x/blobs/sha256:{i}", 404) for i in range(30)], []),
            (
                [request(i, "catalog", f"/v2/_catalog?n=100&last=r{i}") for i in range(10)],
                [("warning", LOOPBACK, 1)],
            ),
            (tag_listings(10, step=40), []),
            (tag_listings(10, user_agent="registry-monitor/0.1.0"), []),
            (tag_listings(10, user_agent="Trivy/0.50.0"), []),
        ],
        ids=[
            "fixture",
            "nine",
            "ten",
            "same-listing",
            "manifest-404s",
            "manifest-200s",
            "blob-404s",
            "catalog-pages",
            "slow",
            "monitor-client",
            "scanner-client",
        ],
    )
    def test_table(self, events, expected):
        """Ten distinct listings or missing manifests from one address in 5m fire."""
        assert expected == run_rule("enumeration", events)


class TestMassPull:
    @pytest.mark.parametrize(
        ("events", "options", "expected"),
        [
            (notification_events(), {}, []),
            (pulls(9), {}, []),
            (pulls(10), {}, [("warning", ALICE, 1)]),
            (pulls(25), {}, [("critical", ALICE, 16)]),
            (pulls(10, http_method="HEAD"), {}, []),
            (
                pulls(10, http_method="HEAD"),
                {"count_manifest_heads": True},
                [("warning", ALICE, 1)],
            ),
            (pulls(10, target_kind=TargetKind.BLOB), {}, []),
            ([make_event(seconds=i) for i in range(50)], {}, []),
            (pulls(10, step=60), {}, []),
            (pulls(10, user_agent="registry-monitor/0.1.0"), {}, []),
            (pulls(10, actor=None), {}, []),
            (
                pulls(10, actor=None),
                {"group_by": ["remote_ip"]},
                [("warning", (("remote_ip", "127.0.0.1"),), 1)],
            ),
            (
                pulls(3, target_kind=TargetKind.BLOB, size=400),
                {"max_bytes": 1000},
                [("warning", ALICE, 1)],
            ),
            (
                pulls(3, target_kind=TargetKind.BLOB, size=400, http_method="HEAD"),
                {"max_bytes": 1000},
                [],
            ),
        ],
        ids=[
            "fixture",
            "nine-repos",
            "ten-repos",
            "critical-tier",
            "manifest-heads",
            "manifest-heads-counted",
            "blobs-only",
            "one-repo-many-times",
            "slow",
            "monitor-client",
            "anonymous",
            "anonymous-by-address",
            "bytes",
            "blob-heads",
        ],
    )
    def test_table(self, events, options, expected):
        """Manifest GETs of ten distinct repositories (or max_bytes of GETs) in 6m fire."""
        assert expected == run_rule("mass_pull", events, options)


class TestNewSource:
    LEARN: ClassVar[dict[str, str]] = {"mode": "alert"}

    @pytest.mark.parametrize(
        ("events", "expected"),
        [
            (notification_events(), []),
            (
                [make_event(), make_event(seconds=86_400 * 8, remote_ip="127.0.0.2")],
                [("info", (("actor", "alice"), ("remote_ip", "127.0.0.2")), 1)],
            ),
            ([make_event(), make_event(seconds=86_400 * 3, remote_ip="127.0.0.2")], []),
            (
                [
                    make_event(),
                    make_event(seconds=86_400 * 3, remote_ip="127.0.0.2"),
                    make_event(seconds=86_400 * 8, remote_ip="127.0.0.2"),
                ],
                [],
            ),
            (
                [
                    make_event(),
                    make_event(seconds=86_400 * 8),
                    make_event(seconds=86_400 * 40, remote_ip="127.0.0.2"),
                    make_event(seconds=86_400 * 41),
                ],
                [],
            ),
            ([make_event(), make_event(seconds=86_400 * 8, actor=None, remote_ip="127.0.0.2")], []),
        ],
        ids=[
            "fixture",
            "after-learning",
            "during-learning",
            "learned",
            "forgotten-relearns",
            "anonymous",
        ],
    )
    def test_table(self, events, expected):
        """After a 7-day learning period a new address for an account fires once."""
        assert expected == run_rule("new_source", events, self.LEARN)

    def test_forgotten_address_is_new_again(self):
        """An address unseen for longer than forget_after is new again."""
        events = [
            make_event(),
            make_event(seconds=86_400 * 8, remote_ip="127.0.0.2"),
            *(make_event(seconds=86_400 * day) for day in (10, 20, 30, 40)),
            make_event(seconds=86_400 * 50, remote_ip="127.0.0.2"),
        ]
        subject = (("actor", "alice"), ("remote_ip", "127.0.0.2"))
        expected = [("info", subject, 1), ("info", subject, 1)]
        assert expected == run_rule("new_source", events, {"mode": "alert"})


class TestSourceNotAllowed:
    @pytest.mark.parametrize(
        ("networks", "expected"),
        [
            ([], []),
            (["127.0.0.0/8"], []),
            (["10.0.0.0/8", "127.0.0.1/32"], []),
            (["10.0.0.0/8"], [("critical", LOOPBACK, 54)]),
            (["::1/128"], [("critical", LOOPBACK, 54)]),
        ],
        ids=["undeclared", "inside", "inside-one-of-two", "outside", "outside-ipv6-only"],
    )
    def test_capture(self, networks, expected):
        """Every event of the capture comes from 127.0.0.1: it fires only when 127.0.0.1 is
        outside the declared networks, as one critical alert per address counting all 54."""
        events = notification_events() + log_events()

        assert expected == run_rule("source_not_allowed", events, {"networks": networks})

    def test_failed_logins_count(self):
        """A failed login from outside is access too, with or without a user."""
        failure = make_event(
            source=Source.LOG, action=Action.AUTH_FAILURE, target_kind=None, remote_ip="203.0.113.9"
        )

        assert [("critical", (("remote_ip", "203.0.113.9"),), 1)] == run_rule(
            "source_not_allowed", [failure], {"networks": ["10.0.0.0/8"]}
        )

    def test_setting_adds_networks_and_bad_cidr_is_refused(self):
        """`detect.allow_cidrs` declares the networks; a bad CIDR names the setting."""
        from monitor.detect.config import parse_detect_config
        from monitor.errors import ConfigError

        config = parse_detect_config(None, allow_cidrs=["10.0.0.0/8"])
        assert ("10.0.0.0/8",) == tuple(
            str(n) for n in config.rules["source_not_allowed"].option("networks")
        )
        with pytest.raises(ConfigError) as bad:
            parse_detect_config(None, allow_cidrs=["10.0.0.300/8"])
        assert "detect.allow_cidrs" == bad.value.key
        with pytest.raises(ConfigError) as bad_rule:
            parse_detect_config({"rules": {"source_not_allowed": {"networks": ["nope"]}}})
        assert "rules.source_not_allowed.networks" == bad_rule.value.key
