"""Every rule ignores the monitor's own requests and scanners' by default (README, Detection)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from monitor.detect.config import DEFAULTS, default_detect_config, parse_detect_config
from monitor.detect.engine import Detector, replay
from monitor.detect.roles import Roles, parse_roles
from monitor.detect.state import DetectorState
from monitor.events import Action, Event, Source, TargetKind, classify_client
from tests.fixture_events import make_event

MONITOR_AGENT = "registry-monitor/0.1.0"
SCANNER_AGENT = "Trivy/0.50.0"
NIGHT = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)  # a Sunday, 03:00 UTC: outside business hours
ROLES = parse_roles({"accounts": {"alice": {"role": "viewer", "repositories": ["*"]}}})
D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def failure(seconds: float, actor: str = "mallory") -> Event:
    return make_event(
        source=Source.LOG,
        action=Action.AUTH_FAILURE,
        target_kind=None,
        repository=None,
        digest=None,
        actor=actor,
        seconds=seconds,
    )


def push(seconds: float, **kwargs: object) -> Event:
    return make_event(action=Action.PUSH, http_method="PUT", seconds=seconds, **kwargs)


def delete(seconds: float, **kwargs: object) -> Event:
    return make_event(action=Action.DELETE, http_method="DELETE", seconds=seconds, **kwargs)


def listing(seconds: float, repository: str) -> Event:
    return make_event(
        source=Source.LOG,
        action=Action.REQUEST,
        target_kind=None,
        digest=None,
        route="tags",
        request_uri=f"/v2/{repository}/tags/list",
        http_status=200,
        seconds=seconds,
    )


# For each rule: events by a docker client that make it fire with the default settings.
TRIGGERS: dict[str, Callable[[], list[Event]]] = {
    "brute_force_account": lambda: [failure(i) for i in range(5)],
    "brute_force_address": lambda: [failure(i) for i in range(5)],
    "password_spray": lambda: [failure(i, actor=f"user{i}") for i in range(5)],
    "success_after_failures": lambda: [*(failure(i) for i in range(5)), make_event(seconds=9)],
    "enumeration": lambda: [listing(i, f"team/repo{i}") for i in range(10)],
    "mass_pull": lambda: [make_event(seconds=i, repository=f"team/app{i}") for i in range(10)],
    "new_source": lambda: [
        make_event(),
        make_event(seconds=86_400 * 8, remote_ip="127.0.0.2"),
    ],
    "out_of_role": lambda: [push(0)],
    "off_hours_write": lambda: [push(0, occurred_at=NIGHT)],
    "tag_moved": lambda: [push(0, tag="v1", digest=D1), push(1, tag="v1", digest=D2)],
    "delete_outside_cleanup": lambda: [delete(0)],
    "source_not_allowed": lambda: [make_event()],  # 127.0.0.1, outside NETWORKS
}
# the declared networks source_not_allowed needs to fire at all
NETWORKS = {"rules": {"source_not_allowed": {"networks": ["10.0.0.0/8"]}}}


def as_client(events: list[Event], user_agent: str) -> list[Event]:
    return [
        dataclasses.replace(e, user_agent=user_agent, client=classify_client(user_agent))
        for e in events
    ]


def fired(rule: str, events: list[Event]) -> list[str]:
    detector = Detector(parse_detect_config(NETWORKS), ROLES)
    return [f.rule for f in replay(detector, events) if f.rule == rule]


class TestEveryRuleIgnoresQuietClients:
    def test_every_rule_has_a_trigger(self) -> None:
        """The table below covers every rule the detector knows."""
        assert sorted(DEFAULTS) == sorted(TRIGGERS)

    @pytest.mark.parametrize("rule", sorted(DEFAULTS))
    def test_a_docker_client_makes_it_fire(self, rule: str) -> None:
        """The trigger is real: from a docker client the rule fires."""
        assert [rule] == sorted(set(fired(rule, TRIGGERS[rule]())))

    @pytest.mark.parametrize("rule", sorted(DEFAULTS))
    @pytest.mark.parametrize("agent", [MONITOR_AGENT, SCANNER_AGENT], ids=["monitor", "scanner"])
    def test_the_same_events_from_a_quiet_client_raise_nothing(self, rule: str, agent: str) -> None:
        """The same events sent by the monitor itself or a scanner raise nothing."""
        assert [] == fired(rule, as_client(TRIGGERS[rule](), agent))

    def test_a_rule_of_its_own_allow_list_can_watch_them(self) -> None:
        """A rule's own `allow` replaces the default, so a rule can watch scanners too."""
        config = parse_detect_config({"rules": {"success_after_failures": {"allow": {}}}})
        events = as_client(TRIGGERS["success_after_failures"](), SCANNER_AGENT)
        findings = replay(Detector(config, Roles()), events)
        assert ["success_after_failures"] == sorted({f.rule for f in findings})


class TestCleanupAfterFailedLogins:
    def test_cleanup_apply_and_restore_raise_nothing(self) -> None:
        """Failed logins from an address, then the monitor's cleanup apply (deletes) and
        restore (pushes) from that address at night: the monitor's events add no alert."""
        start = NIGHT - timedelta(minutes=5)
        failures = [
            dataclasses.replace(failure(0), occurred_at=start + timedelta(seconds=i))
            for i in range(5)
        ]
        cleanup = [
            make_event(
                action=action,
                http_method=method,
                target_kind=TargetKind.MANIFEST,
                repository="team/app",
                tag=None,
                digest=D1,
                actor="cleanup",
                user_agent=MONITOR_AGENT,
                client=classify_client(MONITOR_AGENT),
                occurred_at=NIGHT + timedelta(seconds=second),
            )
            for second, action, method in ((0, Action.DELETE, "DELETE"), (60, Action.PUSH, "PUT"))
        ]
        detector = Detector(default_detect_config(), ROLES)
        before, state = detector.process(failures, DetectorState(), NIGHT)
        after, _ = detector.process(cleanup, state, NIGHT + timedelta(minutes=2))
        assert (["brute_force_account", "brute_force_address"], []) == (
            sorted({f.rule for f in before}),
            [f.rule for f in after],
        )
