"""The state as the store keeps it (version 3): a core document, and one part per account
learned and per repository with protected tags."""

from __future__ import annotations

import pytest

from monitor.detect.config import default_detect_config
from monitor.detect.engine import Detector
from monitor.detect.roles import Roles
from monitor.detect.saved_state import (
    BASELINE,
    TAGS,
    part_key,
    saved_form,
    state_from_saved,
)
from monitor.detect.state import Baseline, DetectorState, copy_state, state_to_json
from monitor.errors import ParseError
from tests.detect.fixture_events import scenario_events
from tests.fixture_events import BASE_TIME


@pytest.fixture(scope="module")
def scenario_state() -> DetectorState:
    detector = Detector(default_detect_config(), Roles())
    _, state = detector.process(scenario_events(), DetectorState(), BASE_TIME)
    assert state.baselines and state.tags and state.incidents
    return state


class TestSavedForm:
    def test_round_trip_after_the_scenario(self, scenario_state):
        core, parts = saved_form(scenario_state)
        assert (scenario_state, True) == state_from_saved(core, parts.values())

    def test_one_part_per_account_and_per_repository_with_protected_tags(self, scenario_state):
        _, parts = saved_form(scenario_state)
        assert {part_key(BASELINE, a) for a in scenario_state.baselines} | {
            part_key(TAGS, r) for r in scenario_state.tags
        } == set(parts)

    def test_the_core_holds_neither_addresses_nor_tags(self, scenario_state):
        core, _ = saved_form(scenario_state)
        assert '"baselines"' not in core and '"tags"' not in core
        assert '"version":3' in core

    def test_a_change_to_one_account_changes_its_part_alone(self, scenario_state):
        changed = copy_state(scenario_state)
        actor = sorted(changed.baselines)[0]
        changed.baselines[actor].see("10.99.0.1", 1)
        _, before = saved_form(scenario_state)
        _, after = saved_form(changed)
        assert [part_key(BASELINE, actor)] == [k for k in after if after[k] != before[k]]

    def test_a_key_has_one_length_whatever_the_name(self):
        state = DetectorState(baselines={"x" * 10_000: Baseline(since=1, addresses={"a": 1})})
        (key,) = saved_form(state)[1]
        assert len(key) == len(part_key(BASELINE, "bob")) == len(BASELINE) + 33

    def test_a_version_2_document_is_read_and_its_parts_ignored(self, scenario_state):
        stray = saved_form(DetectorState(baselines={"z": Baseline(1, {"a": 1})}))[1].values()
        assert (scenario_state, False) == state_from_saved(state_to_json(scenario_state), stray)

    @pytest.mark.parametrize(
        ("core", "parts"),
        [
            ('{"version":4}', []),
            ('{"version":true}', []),
            ("[]", []),
            ('{"version":3,"counts":{},"distinct":{},"volumes":{},"incidents":{}}', ["[1]"]),
            (
                '{"version":3,"counts":{},"distinct":{},"volumes":{},"incidents":{}}',
                ['{"actor":7,"since":1,"addresses":{}}'],
            ),
            ('{"version":3,"counts":{},"distinct":{},"volumes":{},"incidents":{}}', ["{"]),
            ('{"version":3}', []),
        ],
        ids=["version", "version-bool", "list", "part-list", "actor-number", "part-json", "core"],
    )
    def test_invalid(self, core, parts):
        with pytest.raises(ParseError):
            state_from_saved(core, parts)
