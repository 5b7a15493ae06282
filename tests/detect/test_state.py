from __future__ import annotations

import copy
import dataclasses
import json
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.detect.config import default_detect_config
from monitor.detect.engine import Detector
from monitor.detect.roles import Roles
from monitor.detect.state import (
    Baseline,
    DetectorState,
    Incident,
    add_count,
    add_distinct,
    add_volume,
    bound,
    copy_state,
    state_from_json,
    state_to_json,
)
from monitor.errors import ParseError
from monitor.events import Action, Source
from tests.detect.fixture_events import scenario_events
from tests.fixture_events import BASE_TIME, make_event

S = 1_000_000


class TestStateJson:
    def test_round_trip_after_the_scenario(self):
        """The state after the capture survives JSON unchanged."""
        detector = Detector(default_detect_config(), Roles())
        _, state = detector.process(scenario_events(), DetectorState(), BASE_TIME)
        assert state == state_from_json(state_to_json(state))

    def test_json_is_what_asdict_gave(self):
        """The document is byte for byte the one written from `dataclasses.asdict`, so states
        saved by earlier versions and by this one compare and load the same."""
        detector = Detector(default_detect_config(), Roles())
        _, state = detector.process(scenario_events(), DetectorState(), BASE_TIME)
        assert state.tags  # the capture pushes protected tags
        document = {"version": 2, **dataclasses.asdict(state)}
        expected = json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        assert expected == state_to_json(state)

    def test_protected_tags_are_kept_by_repository(self):
        """Version 2 saves the protected tags by repository, so a manifest deleted by digest is
        looked for among its repository's tags only; version 1 saved them flat, and loads."""
        flat = {"team/app:v1": "sha256:aa", "team/app:v2": "sha256:bb", "other:1.0": "sha256:aa"}
        by_repository = {
            "team/app": {"v1": "sha256:aa", "v2": "sha256:bb"},
            "other": {"1.0": "sha256:aa"},
        }
        version_1 = (
            state_to_json(DetectorState())
            .replace('"version":2', '"version":1')
            .replace('"tags":{}', f'"tags":{json.dumps(flat)}')
        )

        state = state_from_json(version_1)

        assert state.tags == by_repository
        assert json.loads(state_to_json(state))["tags"] == by_repository
        assert state == state_from_json(state_to_json(state))

    def test_a_copy_is_equal_and_independent(self):
        """copy_state equals a deep copy, and changing every container of the copy leaves the
        state as it was."""
        detector = Detector(default_detect_config(), Roles())
        _, state = detector.process(scenario_events(), DetectorState(), BASE_TIME)
        saved = state_to_json(state)
        copied = copy_state(state)
        assert copy.deepcopy(state) == copied
        for entries in copied.counts.values():
            entries.append((0, "x"))
        for distinct in copied.distinct.values():
            distinct["x"] = (0, "x")
        for volume in copied.volumes.values():
            volume["x"] = 1
        copied.tags["x"] = {"x": "x"}
        for tags in copied.tags.values():
            tags["x"] = "x"
        for baseline in copied.baselines.values():
            baseline.addresses["x"] = 0
        for incident in copied.incidents.values():
            incident.evidence.append("x")
        assert (True, saved) == (bool(state.incidents and state.baselines), state_to_json(state))

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "[]",
            '{"version": 99}',
            '{"version": true}',
            '{"version": 1}',
            '{"version":1,"counts":{"k":[["x","y"]]},"distinct":{},"volumes":{},'
            '"baselines":{},"tags":{},"incidents":{}}',
            '{"version":1,"counts":{},"distinct":{},"volumes":{},'
            '"baselines":{},"tags":{"v1":"sha256:aa"},"incidents":{}}',
            '{"version":1,"counts":{},"distinct":{},"volumes":{},'
            '"baselines":{},"tags":{"app:v1":7},"incidents":{}}',
            '{"version":2,"counts":{},"distinct":{},"volumes":{},'
            '"baselines":{},"tags":{"app:v1":"sha256:aa"},"incidents":{}}',
            '{"version":2,"counts":{},"distinct":{},"volumes":{},'
            '"baselines":{},"tags":{"app":{"v1":7}},"incidents":{}}',
        ],
        ids=[
            "empty",
            "list",
            "version",
            "version-bool",
            "missing-keys",
            "bad-entry",
            "v1-tag-key",
            "v1-tag-digest",
            "v2-flat-tags",
            "v2-tag-digest",
        ],
    )
    def test_invalid(self, text):
        """Anything but a saved state is a ParseError."""
        with pytest.raises(ParseError):
            state_from_json(text)

    @settings(max_examples=50, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.integers(0, 7200),
                st.sampled_from(["auth", "pull", "delete", "request"]),
                st.sampled_from(["alice", "bob", "mallory", None]),
                st.sampled_from(["127.0.0.1", "127.0.0.2", "::1"]),
                st.sampled_from(["team/app", "library/hello", "x/y"]),
            ),
            max_size=40,
        ),
        st.integers(0, 40),
    )
    def test_restart_anywhere_finds_the_same(self, rows, split):
        """For any events and any split point, a JSON restart in between changes nothing."""
        actions = {
            "auth": Action.AUTH_FAILURE,
            "pull": Action.PULL,
            "delete": Action.DELETE,
            "request": Action.REQUEST,
        }
        events = [
            make_event(
                seconds=seconds,
                action=actions[kind],
                actor=actor,
                remote_ip=ip,
                repository=repo,
                route="tags" if kind == "request" else None,
                request_uri=f"/v2/{repo}/tags/list?{seconds}",
                source=Source.LOG if kind in ("auth", "request") else Source.NOTIFICATION,
            )
            for seconds, kind, actor, ip, repo in sorted(rows, key=lambda row: row[0])
        ]
        detector = Detector(default_detect_config(), Roles())
        first, second = events[:split], events[split:]
        middle = first[-1].occurred_at if first else BASE_TIME
        end = BASE_TIME + timedelta(hours=3)
        _, state = detector.process(first, DetectorState(), middle)
        expected, after = detector.process(second, state, end)
        actual, restored_after = detector.process(
            second, state_from_json(state_to_json(state)), end
        )
        assert (expected, after) == (actual, restored_after)


class TestWindows:
    def test_count_window_slides_and_caps(self):
        """Old occurrences fall out of the window and the list never exceeds its cap."""
        state = DetectorState()
        for i in range(10):
            add_count(state, "r|k", i * S, f"e{i}", 5 * S, cap=3)
        assert state.counts["r|k"] == [(7 * S, "e7"), (8 * S, "e8"), (9 * S, "e9")]

    def test_count_window_ignores_the_same_event_twice(self):
        """A redelivered event is counted once."""
        state = DetectorState()
        add_count(state, "r|k", S, "e1", 5 * S, cap=10)
        expected = [(S, "e1")]
        assert expected == add_count(state, "r|k", S, "e1", 5 * S, cap=10)

    def test_distinct_window_keeps_latest_per_value(self):
        """Each value appears once, with its latest time; old values slide out."""
        state = DetectorState()
        add_distinct(state, "r|k", "a", 0, "e0", 10 * S, cap=5)
        add_distinct(state, "r|k", "b", 5 * S, "e1", 10 * S, cap=5)
        add_distinct(state, "r|k", "a", 8 * S, "e2", 10 * S, cap=5)
        add_distinct(state, "r|k", "c", 16 * S, "e3", 10 * S, cap=5)
        assert state.distinct["r|k"] == {"a": (8 * S, "e2"), "c": (16 * S, "e3")}

    def test_volume_window_sums_recent_buckets(self):
        """Bytes older than the window stop counting."""
        state = DetectorState()
        add_volume(state, "r|k", 100, 0, 60 * S)
        add_volume(state, "r|k", 50, 30 * S, 60 * S)
        assert (
            add_volume(state, "r|k", 0, 59 * S, 60 * S),
            add_volume(state, "r|k", 10, 120 * S, 60 * S),
        ) == (150, 10)

    @settings(max_examples=50, deadline=None)
    @given(st.lists(st.integers(0, 10_000), max_size=200), st.integers(1, 20))
    def test_count_window_is_bounded(self, times, cap):
        """However many occurrences arrive, at most `cap` are kept."""
        state = DetectorState()
        for i, at in enumerate(times):
            add_count(state, "r|k", at * S, f"e{i}", 100 * S, cap=cap)
        assert len(state.counts.get("r|k", [])) <= cap

    def test_sweep_drops_quiet_state(self):
        """Windows and incidents long past their window and cooldown are dropped."""
        detector = Detector(default_detect_config(), Roles())
        failures = [
            make_event(source=Source.LOG, action=Action.AUTH_FAILURE, actor="m", seconds=i)
            for i in range(6)
        ]
        _, state = detector.process(failures, DetectorState(), BASE_TIME + timedelta(seconds=6))
        _, later = detector.process([], state, BASE_TIME + timedelta(days=2))
        assert (bool(state.counts), later.counts, later.incidents) == (True, {}, {})


SEEN = st.lists(
    st.tuples(
        st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "::1"]), st.integers(0, 5)
    ),
    max_size=40,
)


class TestBaseline:
    @settings(max_examples=300, deadline=None)
    @given(seen=SEEN, limit=st.integers(1, 4), saved_after=st.integers(0, 40))
    def test_the_oldest_and_newest_are_found_without_a_walk(
        self, seen: list[tuple[str, int]], limit: int, saved_after: int
    ) -> None:
        """Addresses seen in any order (late ones, ties), a limit kept by dropping the oldest,
        and a save and load on the way: the addresses kept and the newest time are those of
        the walk over all addresses (the lesser address goes first of two seen at once)."""
        baseline = Baseline(since=0, addresses={})
        reference: dict[str, int] = {}
        for step, (address, moment) in enumerate(seen):
            if step == saved_after:
                state = DetectorState(baselines={"alice": baseline})
                baseline = state_from_json(state_to_json(state)).baselines["alice"]
            baseline.see(address, moment)
            reference[address] = max(moment, reference.get(address, moment))
            if len(baseline.addresses) > limit:
                baseline.drop_oldest()
                del reference[min(reference.items(), key=lambda item: (item[1], item[0]))[0]]
            assert reference == baseline.addresses
            assert max(reference.values()) == baseline.newest()


class TestBound:
    def test_the_windows_with_fewest_entries_go_first_then_the_least_recent(self):
        """Over the cap, a window close to its threshold outlives newer single entries."""
        state = DetectorState(
            counts={
                'brute_force_account|["mallory"]': [(1 * S, "e1"), (2 * S, "e2")],
                'brute_force_account|["u1"]': [(9 * S, "e3")],
                'brute_force_account|["u2"]': [(5 * S, "e4")],
            }
        )
        kept = copy_state(state)
        assert (0, kept) == (bound(kept, 3), state)
        assert 1 == bound(state, 2)
        assert {'brute_force_account|["mallory"]', 'brute_force_account|["u1"]'} == set(
            state.counts
        )

    def test_each_kind_is_capped_on_its_own(self):
        def incident(count: int, last: int) -> Incident:
            return Incident("r", 0, 0, last * S, count, "warning", [])

        state = DetectorState(
            counts={f"c|{i}": [(i * S, f"e{i}")] for i in range(4)},
            distinct={f"d|{i}": {"v": (i * S, f"e{i}")} for i in range(4)},
            volumes={f"v|{i}": {str(i * S): 1} for i in range(4)},
            incidents={"a": incident(3, 1), "b": incident(1, 9), "c": incident(1, 2)},
            baselines={f"user{i}": Baseline(since=0, addresses={"10.0.0.1": 0}) for i in range(4)},
        )
        assert 2 + 2 + 2 + 1 == bound(state, 2)
        assert (["c|3", "c|2"], ["d|3", "d|2"], ["v|3", "v|2"], {"a", "b"}, 4) == (
            sorted(state.counts, reverse=True),
            sorted(state.distinct, reverse=True),
            sorted(state.volumes, reverse=True),
            set(state.incidents),
            len(state.baselines),
        )
