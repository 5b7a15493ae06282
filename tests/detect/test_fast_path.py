"""The detector's fast path against a straightforward reference computation.

The engine shows an event only to the rules that look at its action and matches each distinct
allow-list once per event; the windows skip rebuilding what they would keep whole; new_source
drops its oldest address instead of sorting them all; a replay is judged in batches. The
reference below does none of that: every rule over every event, each rule's allow-list matched
on its own, windows rebuilt from scratch, addresses sorted. On any generated history both find
the same alerts and end in the same state.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.alerts import Alert, Mode
from monitor.detect.config import DetectConfig, parse_detect_config
from monitor.detect.engine import Detector, replay, replay_in_order
from monitor.detect.findings import Hit, coalesce, record_hit
from monitor.detect.roles import Roles, parse_roles
from monitor.detect.rulebase import EVENT_FIELDS, RuleContext, RuleSpec, group_of
from monitor.detect.rules import RULES
from monitor.detect.state import (
    Baseline,
    DetectorState,
    add_distinct,
    add_volume,
    span_us,
    state_to_json,
    sweep,
    to_us,
)
from monitor.events import Action, Client, Event, Source, TargetKind, utc
from tests.detect.fixture_events import scenario_events
from tests.fixture_events import BASE_TIME, make_event

S = 1_000_000

CONFIG = parse_detect_config(
    {
        "allow": {"users": ["ci"]},
        "business_hours": {"start": "10:05", "end": "18:00"},
        "rules": {
            "brute_force_account": {"threshold": 2},
            "brute_force_address": {"threshold": 2, "allow": {"clients": ["docker"]}},
            "password_spray": {"threshold": 2},
            "success_after_failures": {"threshold": 2},
            "enumeration": {"threshold": 2, "allow": {"cidrs": ["127.0.0.2/32"]}},
            "mass_pull": {"threshold": 2, "critical_threshold": 3, "max_bytes": 1000},
            "new_source": {
                "mode": "alert",
                "learning_period": "2m",
                "forget_after": "10m",
                "max_addresses": 2,
            },
            "source_not_allowed": {"networks": ["127.0.0.0/31"]},
            "delete_outside_cleanup": {"cleanup_accounts": ["bob"]},
        },
    }
)
ROLES = parse_roles(
    {
        "accounts": {
            "alice": {"role": "developer", "repositories": ["team/*"]},
            "bob": {"role": "viewer"},
        }
    }
)


def reference_new_source(
    event: Event, state: DetectorState, at: datetime, ctx: RuleContext
) -> list[Hit]:
    """new_source as first written: the newest addresses kept by sorting them all."""
    config = ctx.config
    success = event.source is Source.NOTIFICATION and event.action in {
        Action.PUSH,
        Action.PULL,
        Action.MOUNT,
        Action.DELETE,
    }
    if not success or not event.actor or not event.remote_ip:
        return []
    moment = to_us(at)
    forget = span_us(config.option("forget_after"))
    baseline = state.baselines.get(event.actor)
    if baseline is not None and max(baseline.addresses.values(), default=0) <= moment - forget:
        baseline = None
    if baseline is None:
        state.baselines[event.actor] = Baseline(since=moment, addresses={event.remote_ip: moment})
        return []
    last_seen = baseline.addresses.get(event.remote_ip)
    known = last_seen is not None and last_seen > moment - forget
    baseline.addresses[event.remote_ip] = max(moment, baseline.addresses.get(event.remote_ip, 0))
    limit = config.option("max_addresses")
    if len(baseline.addresses) > limit:
        newest = sorted(baseline.addresses.items(), key=lambda item: (item[1], item[0]))[-limit:]
        baseline.addresses = dict(newest)
    if known or moment - baseline.since < span_us(config.option("learning_period")):
        return []
    group = group_of(event, config.group_by, required=False) or ()
    summary = (
        f"{event.actor} made a {event.action.value} from {event.remote_ip}, "
        "an address not seen for this account before"
    )
    return [Hit(group, summary, (event.event_id,), first_seen_at=at, last_seen_at=at)]


REFERENCE_RULES = tuple(
    RuleSpec(spec.name, reference_new_source) if spec.name == "new_source" else spec
    for spec in RULES
)


def reference_process(
    config: DetectConfig, roles: Roles, events: list[Event], state: DetectorState, now: datetime
) -> tuple[list[Alert], DetectorState]:
    """Every enabled rule over every event, each matching its own allow-list."""
    current = copy.deepcopy(state)
    rules = [
        (spec, RuleContext(config.rules[spec.name], roles, config.business_hours))
        for spec in REFERENCE_RULES
        if config.rules[spec.name].mode is not Mode.OFF
    ]
    alerts: list[Alert] = []
    for event in sorted(events, key=lambda e: e.occurred_at):
        at = min(utc(event.occurred_at), now)
        for spec, ctx in rules:
            allowed = ctx.config.allow.matches(event)
            if allowed and not spec.sees_allowed:
                continue
            hits = spec.evaluate(event, current, at, ctx)
            if not allowed:
                alerts.extend(record_hit(current, ctx.config, hit) for hit in hits)
    windows = {spec.name: span_us(ctx.config.window) for spec, ctx in rules}
    cooldowns = {spec.name: span_us(ctx.config.cooldown) for spec, ctx in rules}
    forget = span_us(config.rules["new_source"].option("forget_after"))
    sweep(current, to_us(now), windows, cooldowns, forget)
    return coalesce(alerts), current


KINDS = {
    # what the registry reports: (source, action, target kind, HTTP method, status, route)
    "failure": (Source.LOG, Action.AUTH_FAILURE, None, "GET", 401, None),
    "denied": (Source.LOG, Action.ACCESS_DENIED, None, "GET", 403, None),
    "listing": (Source.LOG, Action.REQUEST, None, "GET", 200, "tags"),
    "catalog": (Source.LOG, Action.REQUEST, None, "GET", 200, "catalog"),
    "missing": (Source.LOG, Action.REQUEST, None, "GET", 404, "manifest"),
    "pull": (Source.NOTIFICATION, Action.PULL, TargetKind.MANIFEST, "GET", 200, None),
    "head": (Source.NOTIFICATION, Action.PULL, TargetKind.MANIFEST, "HEAD", 200, None),
    "blob": (Source.NOTIFICATION, Action.PULL, TargetKind.BLOB, "GET", 200, None),
    "push": (Source.NOTIFICATION, Action.PUSH, TargetKind.MANIFEST, "PUT", 201, None),
    "mount": (Source.NOTIFICATION, Action.MOUNT, TargetKind.BLOB, "POST", 201, None),
    "delete": (Source.NOTIFICATION, Action.DELETE, TargetKind.MANIFEST, "DELETE", 202, None),
    "untagged": (Source.NOTIFICATION, Action.DELETE, TargetKind.TAG, "DELETE", 202, None),
    "log pull": (Source.LOG, Action.PULL, TargetKind.MANIFEST, "GET", 200, None),
}


def _event(
    seconds: int,
    kind: str,
    repository: str,
    tag: str | None,
    digest: str,
    actor: str | None,
    ip: str | None,
    client: Client,
) -> Event:
    source, action, target, method, status, route = KINDS[kind]
    return make_event(
        seconds=seconds,
        source=source,
        action=action,
        target_kind=target,
        repository=repository,
        tag=None if kind == "delete" else tag,
        digest=digest,
        size=600 if target is TargetKind.BLOB else 100,
        actor=actor,
        remote_ip=ip,
        client=client,
        http_method=method,
        http_status=status,
        route=route,
        request_uri=None if route is None else f"/v2/{repository}/{route}/{tag}",
    )


EVENTS = st.lists(
    st.builds(
        _event,
        st.integers(0, 900),
        st.sampled_from(sorted(KINDS)),
        st.sampled_from(["team/app", "team/db", "library/x"]),
        st.sampled_from(["v1", "v2", "latest", None]),
        st.sampled_from(["sha256:" + "1" * 64, "sha256:" + "2" * 64]),
        st.sampled_from(["alice", "bob", "bob", "mallory", "ci", None]),
        st.sampled_from(["127.0.0.1", "127.0.0.2", "127.0.0.5", "127.0.0.9", "::1", None]),
        st.sampled_from([Client.DOCKER, Client.CONTAINERD, Client.CONTAINERD, Client.MONITOR]),
    ),
    min_size=10,
    max_size=120,
)


def outcome(found: list[Alert], state: DetectorState) -> tuple[list[Alert], str]:
    return found, state_to_json(state)


class TestAgainstTheReference:
    @settings(max_examples=150, deadline=None)
    @given(EVENTS, st.integers(0, 120))
    def test_same_alerts_and_state(self, events: list[Event], split: int) -> None:
        """In two passes (the state carried over), the engine finds what the reference finds
        and keeps the same state."""
        detector = Detector(CONFIG, ROLES)
        ordered = sorted(events, key=lambda e: e.occurred_at)
        first, second = ordered[:split], ordered[split:]
        middle = first[-1].occurred_at if first else BASE_TIME
        end = ordered[-1].occurred_at if ordered else BASE_TIME
        found1, state1 = detector.process(first, DetectorState(), middle)
        found2, state2 = detector.process(second, state1, end)
        ref1, ref_state1 = reference_process(CONFIG, ROLES, first, DetectorState(), middle)
        ref2, ref_state2 = reference_process(CONFIG, ROLES, second, ref_state1, end)
        expected = (outcome(ref1, ref_state1), outcome(ref2, ref_state2))
        assert expected == (outcome(found1, state1), outcome(found2, state2))

    @settings(max_examples=100, deadline=None)
    @given(EVENTS, st.integers(1, 20))
    def test_replay_in_batches_finds_what_one_replay_finds(
        self, events: list[Event], size: int
    ) -> None:
        """Judging the time-ordered history in batches of any size finds the same alerts as
        judging it whole."""
        detector = Detector(CONFIG, ROLES)
        ordered = sorted(events, key=lambda e: e.occurred_at)
        end = BASE_TIME + timedelta(hours=4)
        batches = [ordered[i : i + size] for i in range(0, len(ordered), size)]
        expected = (replay(detector, ordered, now=end), len(ordered))
        assert expected == replay_in_order(detector, batches, now=end)


class TestRuleActions:
    @settings(max_examples=100, deadline=None)
    @given(EVENTS)
    def test_rules_ignore_the_actions_they_do_not_list(self, events: list[Event]) -> None:
        """A rule given an event whose action is not in its `actions` returns no hit and
        leaves the state as it was (what lets the engine skip the call)."""
        state = DetectorState()
        detector = Detector(CONFIG, ROLES)
        _, state = detector.process(events, state, BASE_TIME + timedelta(hours=4))
        changed: list[tuple[str, str]] = []
        for spec in RULES:
            ctx = RuleContext(CONFIG.rules[spec.name], ROLES, CONFIG.business_hours)
            for event in events:
                if event.action in spec.actions:
                    continue
                before = state_to_json(state)
                hits = spec.evaluate(event, state, event.occurred_at, ctx)
                if hits or state_to_json(state) != before:
                    changed.append((spec.name, event.action.value))
        assert [] == changed


def reference_distinct(
    values: dict[str, tuple[int, str]], value: str, at: int, event_id: str, window: int, cap: int
) -> tuple[dict[str, tuple[int, str]], list[tuple[int, str]]]:
    """add_distinct as first written: the kept values rebuilt on every call."""
    values = dict(values)
    previous = values.get(value)
    if previous is None or previous[0] <= at:
        values[value] = (at, event_id)
    newest = max(entry[0] for entry in values.values())
    kept = sorted(
        ((entry, name) for name, entry in values.items() if entry[0] >= newest - window),
        reverse=True,
    )[:cap]
    values = {name: entry for entry, name in kept}
    return values, sorted(e for e in values.values() if at - window <= e[0] <= at)


def reference_volume(
    buckets: dict[str, int], amount: int, at: int, window: int
) -> tuple[dict[str, int], int]:
    """add_volume as first written."""
    buckets = dict(buckets)
    width = max(window // 12, S)
    start = at - at % width
    buckets[str(start)] = buckets.get(str(start), 0) + amount
    newest = max(int(s) for s in buckets)
    for name in [s for s in buckets if int(s) + width <= newest - window]:
        del buckets[name]
    total = sum(v for s, v in buckets.items() if at - window < int(s) + width and int(s) <= at)
    return buckets, total


class TestWindowsAgainstTheReference:
    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(st.tuples(st.sampled_from("abcdefg"), st.integers(0, 600)), max_size=60),
        st.integers(1, 5),
    )
    def test_distinct(self, steps: list[tuple[str, int]], cap: int) -> None:
        """Out-of-order times and any cap: the same values kept and the same entries."""
        state = DetectorState()
        reference: dict[str, tuple[int, str]] = {}
        for i, (value, at) in enumerate(steps):
            got = add_distinct(state, "k", value, at * S, f"e{i}", 100 * S, cap)
            reference, expected = reference_distinct(
                reference, value, at * S, f"e{i}", 100 * S, cap
            )
            assert (expected, reference) == (got, state.distinct["k"])

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 900)), max_size=60))
    def test_volume(self, steps: list[tuple[int, int]]) -> None:
        """Out-of-order times: the same buckets kept and the same totals."""
        state = DetectorState()
        reference: dict[str, int] = {}
        for amount, at in steps:
            got = add_volume(state, "k", amount, at * S, 360 * S)
            reference, expected = reference_volume(reference, amount, at * S, 360 * S)
            assert (expected, reference) == (got, state.volumes["k"])


class TestFieldsRead:
    @settings(max_examples=50, deadline=None)
    @given(EVENTS)
    def test_the_fields_detection_loads_decide_everything(self, generated: list[Event]) -> None:
        """Over the shared capture (notifications and the log's failures and listings) and a
        generated history, events cut down to EVENT_FIELDS find the same alerts and state
        as the full events: the store may load only those."""
        detector = Detector(CONFIG, ROLES)
        events = scenario_events() + generated
        end = max(e.occurred_at for e in events)
        cut = [Event(**{name: getattr(e, name) for name in EVENT_FIELDS}) for e in events]
        full = detector.process(events, DetectorState(), end)
        assert outcome(*full) == outcome(*detector.process(cut, DetectorState(), end))
