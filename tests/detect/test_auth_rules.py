from __future__ import annotations

from datetime import timedelta

import pytest

from monitor.detect.config import default_detect_config
from monitor.detect.engine import Detector
from monitor.detect.roles import Roles
from monitor.detect.state import DetectorState
from monitor.events import Action, Event, Source
from tests.detect.fixture_events import log_events, log_events_31, scenario_events
from tests.detect.rule_runs import run_findings, run_rule
from tests.fixture_events import make_event


def failure(seconds: float, actor: str | None = "mallory", ip: str = "127.0.0.1") -> Event:
    return make_event(
        source=Source.LOG,
        action=Action.AUTH_FAILURE,
        target_kind=None,
        repository=None,
        digest=None,
        actor=actor,
        remote_ip=ip,
        seconds=seconds,
    )


def failures(count: int, step: float = 1.0, **kwargs) -> list[Event]:
    return [failure(i * step, **kwargs) for i in range(count)]


MALLORY = (("actor", "mallory"),)
LOOPBACK = (("remote_ip", "127.0.0.1"),)


class TestBruteForce:
    @pytest.mark.parametrize(
        ("rule", "events", "expected"),
        [
            ("brute_force_account", log_events(), []),
            ("brute_force_address", log_events(), []),
            ("brute_force_account", failures(4), []),
            ("brute_force_account", failures(5), [("warning", MALLORY, 1)]),
            ("brute_force_account", failures(7), [("warning", MALLORY, 3)]),
            ("brute_force_account", failures(5, step=200), []),
            ("brute_force_account", failures(5, actor=None), []),
            (
                "brute_force_account",
                [failure(i, ip=f"127.0.0.{i + 1}") for i in range(5)],
                [("warning", MALLORY, 1)],
            ),
            ("brute_force_address", failures(5, actor=None), [("warning", LOOPBACK, 1)]),
            (
                "brute_force_address",
                [failure(i, actor=f"user{i}") for i in range(5)],
                [("warning", LOOPBACK, 1)],
            ),
        ],
        ids=[
            "fixture-account",
            "fixture-address",
            "four",
            "five",
            "seven-repeats",
            "spread-over-16m",
            "no-account-name",
            "one-account-many-addresses",
            "address-anonymous",
            "address-many-accounts",
        ],
    )
    def test_table(self, rule, events, expected):
        """Five failed logins in ten minutes for one group fire; fewer or slower do not."""
        assert expected == run_rule(rule, events)

    def test_allow_listed_address_is_ignored(self):
        """Failures from an allow-listed CIDR are not counted."""
        options = {"allow": {"cidrs": ["127.0.0.0/8"]}}
        expected: list[object] = []
        assert expected == run_rule("brute_force_address", failures(10, actor=None), options)


class TestPasswordSpray:
    @pytest.mark.parametrize(
        ("events", "expected"),
        [
            (log_events(), []),
            (failures(20), []),
            ([failure(i, actor=f"user{i}") for i in range(4)], []),
            ([failure(i, actor=f"user{i}") for i in range(5)], [("warning", LOOPBACK, 1)]),
            ([failure(i * 200, actor=f"user{i}") for i in range(5)], []),
            (
                [*failures(3, actor=None), failure(4, actor="bob"), failure(5, actor="carol")],
                [("warning", LOOPBACK, 1)],
            ),
            (log_events_31(), []),
        ],
        ids=[
            "fixture",
            "one-account",
            "four-accounts",
            "five-accounts",
            "slow",
            "unnamed-count-as-accounts",
            "fixture-3.1",
        ],
    )
    def test_table(self, events, expected):
        """Five distinct account names failing from one address in ten minutes fire; a failure
        whose user 3.1 did not log (an unknown account) counts as an account of its own."""
        assert expected == run_rule("password_spray", events)

    def test_the_summary_says_how_many_accounts_were_not_named(self):
        """The alert tells the named accounts from the failures 3.1 logged without a user."""
        events = [*failures(3, actor=None), failure(4, actor="bob"), failure(5, actor="carol")]
        [finding] = run_findings("password_spray", events)
        expected = (
            "failed logins for 5 different accounts (3 not named by the registry) in 10m "
            "from remote_ip 127.0.0.1"
        )
        assert expected == finding.summary


class TestUnnamedFailuresOn31:
    def test_the_31_capture_counts_by_address(self):
        """The 3.1 capture's four failed logins (three of an unknown user, unnamed) reach
        brute_force_address's threshold of four from 127.0.0.1."""
        options = {"threshold": 4}
        expected = [("warning", LOOPBACK, 1)]
        assert expected == run_rule("brute_force_address", log_events_31(), options)


class TestSuccessAfterFailures:
    @pytest.mark.parametrize(
        ("events", "expected"),
        [
            (scenario_events(), []),
            (
                [*failures(5), make_event(actor="mallory", seconds=10)],
                [("critical", MALLORY, 1), ("critical", LOOPBACK, 1)],
            ),
            (
                [
                    *failures(5, ip="127.0.0.9"),
                    make_event(actor="mallory", remote_ip="127.0.0.2", seconds=10),
                ],
                [("critical", MALLORY, 1)],
            ),
            (
                [
                    *failures(5, ip="127.0.0.9"),
                    make_event(actor="bob", remote_ip="127.0.0.9", seconds=10),
                ],
                [("critical", (("remote_ip", "127.0.0.9"),), 1)],
            ),
            ([*failures(4), make_event(actor="mallory", seconds=10)], []),
            ([*failures(5), make_event(actor="mallory", seconds=700)], []),
            ([make_event(actor="mallory", seconds=-10), *failures(5)], []),
        ],
        ids=[
            "fixture",
            "same-account-and-address",
            "same-account",
            "same-address",
            "below-burst",
            "after-window",
            "success-first",
        ],
    )
    def test_table(self, events, expected):
        """A success by the account or from the address of a failure burst fires."""
        assert expected == run_rule("success_after_failures", events)

    def test_group_by_restricts_correlation(self):
        """With group_by [actor] only the same account correlates."""
        success = make_event(actor="bob", remote_ip="127.0.0.9", seconds=10)
        events = [*failures(5, ip="127.0.0.9"), success]
        expected: list[object] = []
        assert expected == run_rule("success_after_failures", events, {"group_by": ["actor"]})

    def test_fixture_shifted_failures_followed_by_push(self):
        """Two extra failures for mallory make the fixture's 127.0.0.1 burst reach 5 (with
        bob's), so alice's push from the same address right after fires by address."""
        first_failure = log_events()[0].occurred_at
        shifted = [
            make_event(
                source=Source.LOG,
                action=Action.AUTH_FAILURE,
                target_kind=None,
                repository=None,
                digest=None,
                actor="mallory",
                occurred_at=first_failure - timedelta(seconds=i + 1),
            )
            for i in range(2)
        ]
        found = run_rule("success_after_failures", scenario_events() + shifted)
        assert [(s, g, 1) for s, g, _ in found] == [("critical", LOOPBACK, 1)]


class TestFlood:
    def test_a_brute_force_still_fires_through_a_flood_of_new_accounts_and_addresses(self):
        """Between an account's 4th and 5th failed login, 600 failures each from a new account
        and a new address, judged in passes of 100: a detector that keeps at most 50 windows of
        each kind drops the flood's single-entry windows, keeps the account's 4, and its 5th
        failure fires."""
        detector = Detector(default_detect_config(), Roles(), max_windows=50)
        flood = [
            failure(4 + i / 1000, actor=f"user{i}", ip=f"10.{i // 250}.{i % 250}.1")
            for i in range(600)
        ]
        state, sizes = DetectorState(), []
        for batch in ([*failures(4)], *(flood[n : n + 100] for n in range(0, 600, 100))):
            _, state = detector.process(batch, state, batch[-1].occurred_at)
            sizes.append(max(len(state.counts), len(state.distinct), len(state.incidents)))
        alerts, _ = detector.process([failure(10)], state, failure(10).occurred_at)
        assert max(sizes) <= 50
        assert {("brute_force_account", MALLORY), ("brute_force_address", LOOPBACK)} == {
            (a.rule, tuple(a.subject.items())) for a in alerts
        }
