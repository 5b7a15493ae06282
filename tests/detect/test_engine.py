from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from monitor.alerts import Alert, Mode
from monitor.detect.config import default_detect_config, parse_detect_config
from monitor.detect.engine import Detector, replay
from monitor.detect.roles import Roles, parse_roles
from monitor.detect.state import DetectorState, state_from_json, state_to_json
from monitor.events import Action, Event, Source, TargetKind
from tests.detect.fixture_events import notification_events, scenario_events, shifted
from tests.fixture_events import BASE_TIME, make_event

# alice pushes and copies into these namespaces; bob only reads. Developers may not delete.
SCENARIO_ROLES = parse_roles(
    {
        "accounts": {
            "alice": {"role": "developer", "repositories": ["library/*", "team/*", "mirror/*"]},
            "bob": {"role": "viewer", "repositories": ["*"]},
        }
    }
)


def summary(findings: list[Alert]) -> list[tuple[object, ...]]:
    return sorted(
        (f.rule, f.mode.value, f.severity.value, tuple(f.subject.items()), f.count)
        for f in findings
    )


def normal_traffic() -> list[Event]:
    """A weekday's ordinary client traffic, inside business hours, from known addresses."""
    docker_ua = "docker/27.3.1 go/go1.22.7 git-commit/abc kernel/6.1 os/linux arch/amd64"
    containerd_ua = "containerd/v1.7.22"
    podman_ua = "containers/5.2.2 (github.com/containers/image)"
    events: list[Event] = []
    t = 0
    # docker push of an image whose base layers already exist: blob HEADs are pull events
    for kind, action, method in [
        (TargetKind.BLOB, Action.PULL, "HEAD"),
        (TargetKind.BLOB, Action.PULL, "HEAD"),
        (TargetKind.BLOB, Action.PUSH, "PUT"),
        (TargetKind.MANIFEST, Action.PUSH, "PUT"),
    ]:
        t += 1
        events.append(
            make_event(
                seconds=t,
                target_kind=kind,
                action=action,
                http_method=method,
                tag="v2" if kind is TargetKind.MANIFEST else None,
                digest="sha256:" + "b" * 64,
                user_agent=docker_ua,
            )
        )
    # containerd (kubelet) pulls on three nodes of the same account: HEAD by tag, GET by digest
    for node in range(3):
        for method in ("HEAD", "GET"):
            t += 1
            events.append(
                make_event(
                    seconds=t,
                    actor="deploy",
                    http_method=method,
                    remote_ip=f"127.0.0.{10 + node}",
                    tag="v2",
                    user_agent=containerd_ua,
                )
            )
        for _ in range(2):
            t += 1
            events.append(
                make_event(
                    seconds=t,
                    actor="deploy",
                    target_kind=TargetKind.BLOB,
                    remote_ip=f"127.0.0.{10 + node}",
                    size=30_000_000,
                    user_agent=containerd_ua,
                )
            )
    # podman pull by bob, then the real skopeo capture (pushes and pulls by alice and bob)
    t += 1
    events.append(make_event(seconds=t, actor="bob", user_agent=podman_ua, tag="v2"))
    capture = [e for e in notification_events() if e.action is not Action.DELETE]
    offset = BASE_TIME + timedelta(minutes=5) - capture[0].occurred_at
    return events + shifted(capture, offset)


NORMAL_ROLES = parse_roles(
    {
        "accounts": {
            "alice": {"role": "developer", "repositories": ["library/*", "team/*", "mirror/*"]},
            "bob": {"role": "viewer"},
            "deploy": {"role": "viewer"},
        }
    }
)


# What the shared capture raises with the default rules and SCENARIO_ROLES:
# (rule, mode, severity, subject, count).
SCENARIO_ALERTS = [
    (
        "delete_outside_cleanup",
        "alert",
        "warning",
        (("actor", "alice"), ("repository", "library/hello")),
        3,
    ),
    ("off_hours_write", "shadow", "info", (("actor", "alice"),), 21),
    (
        "out_of_role",
        "alert",
        "critical",
        (("actor", "alice"), ("repository", "library/hello"), ("action", "delete")),
        3,
    ),
]


class TestDetector:
    def test_scenario_with_default_rules(self):
        """The shared capture with default rules raises alice's delete (outside cleanup and
        outside her developer role) and a shadow off-hours note; mallory's 3 and bob's 1 failed
        logins, bob's 6 listings and 404s stay below their thresholds."""
        detector = Detector(default_detect_config(), SCENARIO_ROLES)
        expected = SCENARIO_ALERTS
        assert expected == summary(replay(detector, scenario_events()))

    def test_scenario_without_roles(self):
        """Without a roles file the role rule stays silent."""
        detector = Detector(default_detect_config(), Roles())
        rules = sorted(f.rule for f in replay(detector, scenario_events()))
        assert rules == ["delete_outside_cleanup", "off_hours_write"]

    def test_normal_client_traffic_raises_nothing(self):
        """Docker, containerd, podman and skopeo traffic in business hours raises no finding."""
        detector = Detector(default_detect_config(), NORMAL_ROLES)
        expected: list[object] = []
        assert expected == replay(detector, normal_traffic())

    @pytest.mark.parametrize("split", [1, 10, 25, 40, 60])
    def test_restart_in_the_middle_of_a_window(self, split):
        """Processing A, saving the state as JSON, restarting and processing B finds the same
        as processing A then B without a restart."""
        detector = Detector(default_detect_config(), SCENARIO_ROLES)
        events = scenario_events() + burst_of_failures(seconds=0, count=6, start_at=events_end())
        first, second = events[:split], events[split:]
        end_a = first[-1].occurred_at
        end_b = events[-1].occurred_at
        _, state = detector.process(first, DetectorState(), end_a)
        expected, _ = detector.process(second, state, end_b)
        restored = state_from_json(state_to_json(state))
        actual, _ = Detector(default_detect_config(), SCENARIO_ROLES).process(
            second, restored, end_b
        )
        assert expected == actual

    def test_process_leaves_the_given_state_alone(self):
        """process returns a new state and does not change the one passed in."""
        detector = Detector(default_detect_config(), SCENARIO_ROLES)
        state = DetectorState()
        detector.process(scenario_events(), state, BASE_TIME + timedelta(days=3))
        assert DetectorState() == state

    def test_off_rules_do_not_run(self):
        """A rule with mode off neither runs nor keeps state."""
        config = parse_detect_config(
            {
                "rules": {
                    "delete_outside_cleanup": {"mode": "off"},
                    "off_hours_write": {"mode": "off"},
                    "tag_moved": {"mode": "off"},
                }
            }
        )
        detector = Detector(config, Roles())
        findings, state = detector.process(scenario_events(), DetectorState(), BASE_TIME)
        assert (findings, state.tags) == ([], {})

    def test_shadow_findings_are_flagged(self):
        """A rule in shadow mode returns findings marked shadow."""
        config = parse_detect_config({"rules": {"delete_outside_cleanup": {"mode": "shadow"}}})
        findings = replay(Detector(config, Roles()), scenario_events())
        deletes = [f for f in findings if f.rule == "delete_outside_cleanup"]
        assert [(f.mode, f.shadow) for f in deletes] == [(Mode.SHADOW, True)]

    def test_cooldown_counts_repeats_onto_one_incident(self):
        """Inside the cooldown a firing fingerprint comes back as a repeat with a higher count;
        after the cooldown it fires anew."""
        detector = Detector(default_detect_config(), Roles())
        burst = burst_of_failures(seconds=0, count=5)
        found1, state = detector.process(burst, DetectorState(), BASE_TIME + timedelta(minutes=1))
        more = burst_of_failures(seconds=120, count=1)
        found2, state = detector.process(more, state, BASE_TIME + timedelta(minutes=3))
        late = burst_of_failures(seconds=1200, count=5)
        found3, _ = detector.process(late, state, BASE_TIME + timedelta(minutes=30))
        account = [
            [(f.count, f.repeat) for f in found if f.rule == "brute_force_account"]
            for found in (found1, found2, found3)
        ]
        assert account == [[(1, False)], [(2, True)], [(1, False)]]

    def test_future_events_are_clamped_to_now(self):
        """An event stamped after `now` is treated as happening at `now`."""
        detector = Detector(default_detect_config(), Roles())
        event = make_event(action=Action.DELETE, seconds=86_400)
        findings, _ = detector.process([event], DetectorState(), BASE_TIME)
        assert [f.last_seen_at for f in findings] == [BASE_TIME]

    def test_global_allow_list_applies_to_every_rule(self):
        """An address in the global allow-list is ignored by every rule."""
        config = parse_detect_config({"allow": {"cidrs": ["127.0.0.0/8"]}})
        expected: list[object] = []
        assert expected == replay(Detector(config, SCENARIO_ROLES), scenario_events())


class TestReplay:
    def test_empty(self):
        """Replaying nothing finds nothing."""
        expected: list[object] = []
        assert expected == replay(Detector(default_detect_config(), Roles()), [])

    def test_order_does_not_matter(self):
        """Replay sorts events by time, so a shuffled input finds the same."""
        detector = Detector(default_detect_config(), SCENARIO_ROLES)
        events = scenario_events()
        assert replay(detector, events) == replay(detector, list(reversed(events)))


def events_end() -> datetime:
    return scenario_events()[-1].occurred_at + timedelta(seconds=1)


def burst_of_failures(*, seconds: int, count: int, start_at=BASE_TIME, actor="mallory"):
    return [
        make_event(
            source=Source.LOG,
            action=Action.AUTH_FAILURE,
            target_kind=None,
            repository=None,
            digest=None,
            actor=actor,
            occurred_at=start_at + timedelta(seconds=seconds + i),
        )
        for i in range(count)
    ]
